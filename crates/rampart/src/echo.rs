//! A small loopback echo upstream for `rampart demo` and the benchmark: answers each
//! request with a JSON description of what arrived (method, target, headers, body size),
//! or with a fixed body when `fixed` is set. It counts body bytes without keeping them.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use rampart_http::problem::push_json_str;
use tokio::net::TcpListener;

pub fn run_blocking(listen: SocketAddr, fixed: bool) -> u8 {
    crate::logging::init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(_) => return 2,
    };
    rt.block_on(async move {
        match TcpListener::bind(listen).await {
            Ok(l) => {
                tracing::info!(addr = %l.local_addr().unwrap_or(listen), "echo upstream listening");
                serve(l, fixed).await;
                0
            }
            Err(e) => {
                tracing::error!(addr = %listen, error = %e, "cannot bind");
                2
            }
        }
    })
}

/// Serves until the task is dropped.
pub async fn serve(listener: TcpListener, fixed: bool) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(req, fixed));
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn handle(req: Request<Incoming>, fixed: bool) -> Result<Response<Full<Bytes>>, Infallible> {
    if fixed {
        let _ = req.into_body().collect().await;
        let mut r = Response::new(Full::new(Bytes::from_static(b"{\"ok\":true}\n")));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return Ok(r);
    }
    let (parts, mut body) = req.into_parts();
    let mut size: u64 = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    size += d.len() as u64;
                }
            }
            Err(_) => break,
        }
    }
    let mut s = String::with_capacity(512);
    s.push_str("{\"method\":");
    push_json_str(&mut s, parts.method.as_str());
    s.push_str(",\"target\":");
    push_json_str(
        &mut s,
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/"),
    );
    s.push_str(",\"headers\":{");
    for (i, (name, value)) in parts.headers.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        push_json_str(&mut s, name.as_str());
        s.push(':');
        push_json_str(&mut s, &String::from_utf8_lossy(value.as_bytes()));
    }
    s.push_str("},\"body_bytes\":");
    s.push_str(&size.to_string());
    s.push_str("}\n");
    let mut r = Response::new(Full::new(Bytes::from(s)));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // Shows that rampart removes these.
    h.insert(header::SERVER, HeaderValue::from_static("echo/1.0"));
    h.insert("x-powered-by", HeaderValue::from_static("demo"));
    Ok(r)
}
