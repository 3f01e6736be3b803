//! A scriptable HTTP/1.1 server on 127.0.0.1 (port 0): each path answers what the test
//! set last, and every request is counted per path.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What a path answers.
#[derive(Debug, Clone)]
pub enum Reply {
    /// 200 with this JSON body.
    Json(String),
    /// 200 with these bytes (garbage, truncated JSON, an oversized body…).
    Raw(Vec<u8>),
    /// This status, empty body.
    Status(u16),
    /// Close the connection without answering (the server looks down).
    Drop,
    /// Wait, then answer.
    Slow(Duration, Box<Reply>),
}

#[derive(Default)]
struct State {
    routes: HashMap<String, Reply>,
    hits: HashMap<String, u64>,
}

/// The server; it stops when dropped.
pub struct TestServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    /// Binds 127.0.0.1:0 and serves until dropped. Unset paths answer 404.
    pub async fn start() -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state: Arc<Mutex<State>> = Arc::default();
        let st = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let st = Arc::clone(&st);
                tokio::spawn(async move {
                    let st2 = Arc::clone(&st);
                    let svc = service_fn(move |req: hyper::Request<Incoming>| {
                        let st = Arc::clone(&st2);
                        async move {
                            let path = req.uri().path().to_owned();
                            let reply = {
                                let mut s = st.lock().unwrap();
                                *s.hits.entry(path.clone()).or_default() += 1;
                                s.routes.get(&path).cloned()
                            };
                            Ok::<_, Infallible>(answer(reply).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        TestServer { addr, state, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn set(&self, path: &str, reply: Reply) {
        self.state
            .lock()
            .unwrap()
            .routes
            .insert(path.to_owned(), reply);
    }

    /// Requests received for `path` so far.
    pub fn hits(&self, path: &str) -> u64 {
        self.state
            .lock()
            .unwrap()
            .hits
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// Requests received for any path.
    pub fn total_hits(&self) -> u64 {
        self.state.lock().unwrap().hits.values().sum()
    }

    /// Serves an OIDC discovery document at `/.well-known/openid-configuration` with
    /// `issuer` = this server's base URL and `jwks_uri` = `jwks_path`.
    pub fn set_discovery(&self, jwks_path: &str) {
        let doc = serde_json::json!({
            "issuer": self.url(""),
            "jwks_uri": self.url(jwks_path),
        });
        self.set(
            "/.well-known/openid-configuration",
            Reply::Json(doc.to_string()),
        );
    }
}

/// A response, or an error that makes hyper close the connection (for `Reply::Drop`).
async fn answer(reply: Option<Reply>) -> hyper::Response<Full<Bytes>> {
    let mut reply = reply.unwrap_or(Reply::Status(404));
    loop {
        match reply {
            Reply::Slow(d, inner) => {
                tokio::time::sleep(d).await;
                reply = *inner;
            }
            Reply::Json(s) => {
                return hyper::Response::builder()
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(s)))
                    .unwrap();
            }
            Reply::Raw(b) => return hyper::Response::new(Full::new(Bytes::from(b))),
            Reply::Status(code) => {
                return hyper::Response::builder()
                    .status(code)
                    .body(Full::new(Bytes::new()))
                    .unwrap();
            }
            Reply::Drop => {
                // Never answer: the connection is closed when the client times out or
                // the server drops; a long sleep models a black hole.
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return hyper::Response::new(Full::new(Bytes::new()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_and_counts() {
        let s = TestServer::start().await;
        s.set("/a", Reply::Json("{}".into()));
        let mut conn = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        conn.write_all(b"GET /a HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        conn.read_to_end(&mut buf).await.unwrap();
        let text = String::from_utf8_lossy(&buf);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.ends_with("{}"));
        assert_eq!(s.hits("/a"), 1);
        assert_eq!(s.hits("/b"), 0);
        assert_eq!(s.total_hits(), 1);
    }
}
