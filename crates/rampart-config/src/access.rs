//! A route's browser-facing access settings: `cors = { … }` and `csrf = { … }`.
//!
//! The rules refuse at load time what would make the gateway's answers unsafe or
//! misleading: an origin that browsers never send in that spelling (it would silently
//! never match), the `null` origin (shared by sandboxed iframes, `file:` pages and
//! redirected requests, so allowing it allows everyone), `*` together with credentials
//! (browsers refuse it, and echoing instead would be "reflect any origin"), and a CSRF
//! cookie without the `__Host-` prefix (a sibling subdomain could plant it otherwise).

use crate::cx::Cx;
use crate::model::{CorsConfig, CsrfConfig};
use crate::tree::Item;

const CORS_KEYS: &[&str] = &[
    "allowed_origins",
    "allowed_methods",
    "allowed_headers",
    "expose_headers",
    "allow_credentials",
    "max_age_s",
];

const CSRF_KEYS: &[&str] = &["cookie", "header"];

/// Longest `max_age_s`: what Firefox caps preflight caching at (Chromium caps at 2 h).
pub(crate) const MAX_AGE_S: u64 = 86_400;

/// Checks one serialized origin (`scheme "://" host [ ":" port ]`, RFC 6454 §6.1) as a
/// browser writes it in `Origin`. `Err` says what is wrong.
pub(crate) fn origin(s: &str) -> Result<(), String> {
    if s == "null" {
        return Err(
            "the `null` origin is never allowed: sandboxed iframes, file: pages and redirected \
             requests all send it, so allowing it allows anyone"
                .into(),
        );
    }
    let (scheme, rest) = s.split_once("://").ok_or_else(|| {
        format!("`{s}` is not an origin (expected e.g. \"https://app.example.com\")")
    })?;
    let default_port = match scheme {
        "https" => "443",
        "http" => "80",
        _ => {
            return Err(format!(
                "`{s}`: the scheme must be `https` or `http`, written in lower case"
            ));
        }
    };
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
        return Err(format!(
            "`{s}` is not an origin: no path, query, user info or trailing `/` (browsers send \
             only scheme, host and port)"
        ));
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (inner, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("`{s}`: unterminated IPv6 address"))?;
        if inner.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("`{s}`: `{inner}` is not an IPv6 address"));
        }
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(format!("`{s}` is not an origin")),
        };
        (None, port)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(rest), None),
        }
    };
    if let Some(h) = host {
        let ok = !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !ok {
            return Err(format!(
                "`{s}`: the host must be written as browsers serialize it: lower-case letters, \
                 digits, `-` and `.` (punycode for international names)"
            ));
        }
    }
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.parse::<u16>().is_err() {
            return Err(format!("`{s}`: `{p}` is not a port"));
        }
        if p == default_port || p.starts_with('0') {
            return Err(format!(
                "`{s}`: browsers omit the default port and leading zeros; write the origin \
                 without `:{p}`"
            ));
        }
    }
    Ok(())
}

/// A lower-cased header-name list (`*` refused: it never covers `Authorization` and is
/// literal with credentials, so it would mean different things to different browsers).
fn header_list(cx: &mut Cx<'_>, t: &crate::cx::Tbl<'_>, k: &str) -> Option<Vec<String>> {
    let Some(list) = cx.opt_str_list(t, k) else {
        return t.get(k).is_none().then(Vec::new);
    };
    let mut out = Vec::with_capacity(list.len());
    let mut ok = true;
    for (i, (s, item)) in list.into_iter().enumerate() {
        let lower = s.to_ascii_lowercase();
        if lower == "*" {
            cx.error(
                item,
                &format!("{}[{i}]", t.key(k)),
                "`*` is not accepted here: list the header names",
            );
            ok = false;
        } else if lower.is_empty() || http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
            cx.error(
                item,
                &format!("{}[{i}]", t.key(k)),
                format!("`{s}` is not a valid HTTP header name"),
            );
            ok = false;
        } else if !out.contains(&lower) {
            out.push(lower);
        }
    }
    ok.then_some(out)
}

/// `cors = { … }` of a route whose `methods` are `route_methods` (empty = any).
pub(crate) fn cors(
    cx: &mut Cx<'_>,
    item: &Item,
    key: &str,
    route_methods: &[http::Method],
) -> Option<CorsConfig> {
    let t = cx.table(item, key, CORS_KEYS)?;
    let mut ok = true;
    let allow_credentials = cx.opt_bool(&t, "allow_credentials").unwrap_or(false);
    let mut allowed_origins = Vec::new();
    let mut any_origin = false;
    match cx.opt_str_list(&t, "allowed_origins") {
        None => {
            if t.get("allowed_origins").is_none() {
                cx.missing(
                    &t,
                    "allowed_origins",
                    "the origins allowed, e.g. [\"https://app.example.com\"]",
                );
            }
            ok = false;
        }
        Some(list) => {
            if list.is_empty()
                && let Some(i) = t.get("allowed_origins")
            {
                cx.error(i, &t.key("allowed_origins"), "list at least one origin");
                ok = false;
            }
            let n = list.len();
            for (i, (s, it)) in list.into_iter().enumerate() {
                let k = format!("{}[{i}]", t.key("allowed_origins"));
                if s == "*" {
                    if allow_credentials {
                        cx.error(
                            it,
                            &k,
                            "`*` with allow_credentials = true is refused: browsers reject it, \
                             and echoing any origin instead would hand credentials to every site; \
                             list the origins",
                        );
                        ok = false;
                    } else if n > 1 {
                        cx.error(it, &k, "`*` allows every origin; list it alone");
                        ok = false;
                    }
                    any_origin = true;
                } else if let Err(m) = origin(&s) {
                    cx.error(it, &k, m);
                    ok = false;
                } else if !allowed_origins.contains(&s) {
                    allowed_origins.push(s);
                }
            }
        }
    }
    let mut allowed_methods = Vec::new();
    if let Some(list) = cx.opt_str_list(&t, "allowed_methods") {
        for (i, (m, it)) in list.into_iter().enumerate() {
            let k = format!("{}[{i}]", t.key("allowed_methods"));
            let up = m.to_ascii_uppercase();
            match http::Method::from_bytes(up.as_bytes()) {
                Ok(method) if !up.is_empty() && up != "*" => {
                    let accepted = route_methods.is_empty()
                        || route_methods.contains(&method)
                        || (method == http::Method::HEAD
                            && route_methods.contains(&http::Method::GET));
                    if !accepted {
                        cx.error(
                            it,
                            &k,
                            format!("the route does not accept `{up}`: add it to the route's methods or remove it here"),
                        );
                        ok = false;
                    } else if !allowed_methods.contains(&method) {
                        allowed_methods.push(method);
                    }
                }
                _ => {
                    cx.error(
                        it,
                        &k,
                        format!(
                            "`{m}` is not an HTTP method (e.g. GET, POST); `*` is not accepted"
                        ),
                    );
                    ok = false;
                }
            }
        }
    } else {
        ok &= t.get("allowed_methods").is_none();
    }
    let allowed_headers = header_list(cx, &t, "allowed_headers");
    let expose_headers = header_list(cx, &t, "expose_headers");
    let max_age_s = cx.opt_u64(&t, "max_age_s", 0, MAX_AGE_S);
    ok &= t.get("max_age_s").is_none() || max_age_s.is_some();
    let (Some(allowed_headers), Some(expose_headers)) = (allowed_headers, expose_headers) else {
        return None;
    };
    ok.then_some(CorsConfig {
        allowed_origins,
        any_origin,
        allowed_methods,
        allowed_headers,
        expose_headers,
        allow_credentials,
        max_age_s,
    })
}

/// A cookie-name token (RFC 6265 §4.1.1 → RFC 2616 token).
fn cookie_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

/// `csrf = { cookie = "__Host-csrf", header = "x-csrf-token" }`.
pub(crate) fn csrf(cx: &mut Cx<'_>, item: &Item, key: &str) -> Option<CsrfConfig> {
    let t = cx.table(item, key, CSRF_KEYS)?;
    let mut ok = true;
    let cookie = match t.get("cookie") {
        None => {
            cx.missing(&t, "cookie", "e.g. \"__Host-csrf\"");
            None
        }
        Some(i) => {
            let s = cx.str_of(i, &t.key("cookie"))?;
            if !s.starts_with("__Host-") {
                cx.error(
                    i,
                    &t.key("cookie"),
                    format!(
                        "`{s}`: the CSRF cookie must be named `__Host-…` so that browsers only \
                         accept it Secure, for this host and Path=/ (no subdomain can plant it)"
                    ),
                );
                ok = false;
            } else if !cookie_name(&s) || s.len() == "__Host-".len() {
                cx.error(
                    i,
                    &t.key("cookie"),
                    format!("`{s}` is not a valid cookie name"),
                );
                ok = false;
            }
            Some(s)
        }
    };
    let header = match t.get("header") {
        None => {
            cx.missing(&t, "header", "e.g. \"x-csrf-token\"");
            None
        }
        Some(i) => {
            let h = crate::cx::header_name(cx, &t, "header");
            if let Some(h) = &h
                && matches!(
                    h.as_str(),
                    "cookie" | "authorization" | "host" | "content-type"
                )
            {
                cx.error(
                    i,
                    &t.key("header"),
                    format!("`{h}` cannot carry the CSRF token: use a header of its own, e.g. x-csrf-token"),
                );
                ok = false;
            }
            h
        }
    };
    match (cookie, header, ok) {
        (Some(cookie), Some(header), true) => Some(CsrfConfig { cookie, header }),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::origin;

    #[test]
    fn origins_as_browsers_serialize_them() {
        for ok in [
            "https://app.example.com",
            "http://localhost:3000",
            "https://127.0.0.1:8443",
            "https://[::1]:8443",
            "https://xn--bcher-kva.example",
        ] {
            assert!(origin(ok).is_ok(), "{ok}");
        }
        for bad in [
            "null",
            "*.example.com",
            "https://app.example.com/",
            "https://app.example.com/x",
            "https://App.Example.com",
            "HTTPS://app.example.com",
            "https://app.example.com:443",
            "http://app.example.com:80",
            "https://app.example.com:0443",
            "https://app.example.com:99999",
            "https://user@app.example.com",
            "ftp://app.example.com",
            "app.example.com",
            "https://",
            "https://[::1",
        ] {
            assert!(origin(bad).is_err(), "{bad}");
        }
    }
}
