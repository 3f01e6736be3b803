//! Profile rules (DESIGN §3), in one place. `prod` refuses each relaxation below with an
//! error; `dev` allows it with a warning that is logged at every start:
//!
//! - HS256 (`auth.jwt.hs256_secret`, or `"HS256"` in `auth.jwt.allowed_algs`);
//! - a plain-HTTP `auth.jwt.jwks_url` (in dev only on a loopback host; never elsewhere);
//! - `auth.modes` containing `"none"` (anonymous access beyond `public = true` routes);
//! - an empty `server.trusted_hosts` (any Host accepted);
//! - a routable `server.listen` without `server.tls`, unless `server.trusted_proxies` is
//!   set (TLS then ends at a trusted ingress);
//! - an API key written into a configuration file (any string value carrying
//!   [`crate::API_KEY_PREFIX`] followed by key material; keys belong in the credential
//!   store, referenced secrets in `env:`/`file:`).

use std::net::IpAddr;

use crate::cx::{Cx, Tbl};
use crate::model::{Profile, ServerConfig};
use crate::raw::{AuthMode, LaterSections};
use crate::tree::{Item, Node};

/// The item at `path` below `top`, if present.
fn locate<'a>(top: &Tbl<'a>, path: &[&str]) -> Option<&'a Item> {
    let (first, rest) = path.split_first()?;
    let mut cur = top.get(first)?;
    for k in rest {
        let Node::Table(t) = &cur.node else {
            return None;
        };
        cur = t.get(*k)?;
    }
    Some(cur)
}

/// The closest existing item along `path` (for a rule about a key that is absent).
fn nearest<'a>(top: &Tbl<'a>, path: &[&str]) -> &'a Item {
    let mut best = top.item;
    for n in 1..=path.len() {
        match path.get(..n).and_then(|p| locate(top, p)) {
            Some(i) => best = i,
            None => break,
        }
    }
    best
}

/// Refuses in prod, warns in dev.
fn relax(cx: &mut Cx<'_>, item: &Item, key: &str, what: &str) {
    match cx.profile {
        Profile::Prod => cx.error_code(
            item,
            key,
            "profile",
            format!(
                "{what}: refused in profile \"prod\" (allowed with a warning in profile \"dev\")"
            ),
        ),
        Profile::Dev => cx.warn(format!("dev profile: {key}: {what}")),
    }
}

fn is_loopback_host(uri: &http::Uri) -> bool {
    let Some(host) = uri.host() else {
        return false;
    };
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if h.eq_ignore_ascii_case("localhost") {
        return true;
    }
    h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether `s` holds a rampart API key: the prefix followed by at least 20 key
/// characters.
pub(crate) fn holds_api_key(s: &str) -> bool {
    s.match_indices(crate::API_KEY_PREFIX).any(|(i, p)| {
        let before_ok = s
            .get(..i)
            .and_then(|b| b.chars().next_back())
            .is_none_or(|c| !c.is_ascii_alphanumeric());
        let tail = s.get(i + p.len()..).unwrap_or("");
        before_ok
            && tail
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                .count()
                >= 20
    })
}

/// Every string written in a file (not in the environment) that holds an API key, with
/// its dotted key.
fn api_keys<'a>(item: &'a Item, path: &str, out: &mut Vec<(String, &'a Item)>) {
    match &item.node {
        Node::Str(s) if !item.at.file.starts_with("env:") && holds_api_key(s) => {
            out.push((path.to_owned(), item));
        }
        Node::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                api_keys(x, &format!("{path}[{i}]"), out);
            }
        }
        Node::Table(t) => {
            for (k, x) in t {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                api_keys(x, &p, out);
            }
        }
        _ => {}
    }
}

pub(crate) fn apply(cx: &mut Cx<'_>, top: &Tbl<'_>, server: &ServerConfig, later: &LaterSections) {
    let mut keys = Vec::new();
    api_keys(top.item, "", &mut keys);
    for (key, item) in keys {
        relax(
            cx,
            item,
            &key,
            "holds an API key written into the configuration file; keys live in the credential store (`rampart apikey create`)",
        );
    }
    let jwt = later.auth.as_ref().and_then(|a| a.jwt.as_ref());
    if let Some(i) = locate(top, &["auth", "jwt", "hs256_secret"]) {
        relax(
            cx,
            i,
            "auth.jwt.hs256_secret",
            "HS256 (a shared-secret JWT key) is set",
        );
    }
    if jwt.is_some_and(|j| {
        j.allowed_algs
            .as_ref()
            .is_some_and(|a| a.iter().any(|x| x == "HS256"))
    }) && let Some(i) = locate(top, &["auth", "jwt", "allowed_algs"])
    {
        relax(cx, i, "auth.jwt.allowed_algs", "HS256 is allowed");
    }
    if let Some(url) = jwt.and_then(|j| j.jwks_url.as_ref())
        && url
            .scheme_str()
            .is_some_and(|s| s.eq_ignore_ascii_case("http"))
        && let Some(i) = locate(top, &["auth", "jwt", "jwks_url"])
    {
        let key = "auth.jwt.jwks_url";
        if cx.profile == Profile::Dev && is_loopback_host(url) {
            cx.warn(format!(
                "dev profile: {key}: keys are fetched over plain HTTP from a loopback host"
            ));
        } else if cx.profile == Profile::Dev {
            cx.error_code(
                        i,
                        key,
                        "profile",
                        "plain-HTTP JWKS is allowed only from a loopback host (and only in profile \"dev\"); use https",
                    );
        } else {
            cx.error_code(
                i,
                key,
                "profile",
                "plain-HTTP JWKS is refused in profile \"prod\"; use https",
            );
        }
    }
    if later.auth.as_ref().is_some_and(|a| {
        a.modes
            .as_ref()
            .is_some_and(|m| m.contains(&AuthMode::None))
    }) && let Some(i) = locate(top, &["auth", "modes"])
    {
        relax(
            cx,
            i,
            "auth.modes",
            "contains \"none\"; only `public = true` routes may be anonymous in prod",
        );
    }
    if server.trusted_hosts.is_empty()
        && locate(top, &["server", "trusted_hosts"])
            .is_none_or(|i| matches!(&i.node, Node::Array(a) if a.is_empty()))
    {
        let i = nearest(top, &["server", "trusted_hosts"]);
        relax(
            cx,
            i,
            "server.trusted_hosts",
            "empty: requests for any Host are accepted",
        );
    }
    let routable = !server.listen.ip().is_loopback();
    if routable
        && server.tls.is_none()
        && server.trusted_proxies.is_empty()
        && locate(top, &["server", "tls"]).is_none()
    {
        let i = nearest(top, &["server", "listen"]);
        relax(
            cx,
            i,
            "server.listen",
            &format!(
                "{} is routable and has no server.tls; add [server.tls] or, when TLS ends at an ingress, \
                 list it in server.trusted_proxies",
                server.listen
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    const BASE: &str = "[server]\nlisten = \"127.0.0.1:8080\"\ntrusted_hosts = [\"a.example\"]\n[upstreams.app]\nurl = \"http://127.0.0.1:3000\"\n";

    #[test]
    fn api_key_in_a_config_file_is_refused_in_prod_and_warned_in_dev() {
        let key = format!("{}{}", crate::API_KEY_PREFIX, "A1b2C3d4E5f6G7h8I9j0K1l2");
        let text = format!(
            "{BASE}[[routes]]\nid = \"r\"\npath = \"/\"\nupstream = \"app\"\nscopes = [\"{key}\"]\n"
        );
        let err = crate::load_from_strs(&[("c.toml", &text)], &[]).unwrap_err();
        let d = err
            .errors
            .iter()
            .find(|d| d.key == "routes[0].scopes[0]")
            .unwrap();
        assert_eq!(d.line, Some(10));
        assert!(d.message.contains("API key"), "{}", d.message);
        assert!(
            !d.message.contains(&key),
            "the key is echoed: {}",
            d.message
        );
        let dev = format!("profile = \"dev\"\n{text}");
        let cfg = crate::load_from_strs(&[("c.toml", &dev)], &[]).unwrap();
        assert!(cfg.warnings.iter().any(|w| w.contains("API key")));
        assert!(cfg.warnings.iter().all(|w| !w.contains(&key)));
    }

    #[test]
    fn api_key_detection() {
        use super::holds_api_key;
        assert!(holds_api_key("rpk_abcdefghijklmnopqrstuvwxyz"));
        assert!(holds_api_key("Bearer rpk_abcdefghijklmnopqrstuvwxyz"));
        assert!(!holds_api_key("rpk_short"));
        assert!(!holds_api_key("xrpk_abcdefghijklmnopqrstuvwxyz"));
        assert!(!holds_api_key("env:RAMPART_API_KEY"));
    }
}
