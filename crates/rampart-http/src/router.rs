//! Route table: one match per request, shared by every later stage.
//!
//! Templates are prefix matches on whole segments of the normalized path: `/status`
//! matches `/status`, `/status/` and `/status/x`, never `/statusx`. `{name}` matches one
//! segment. The most specific template wins (more segments, then more literal segments,
//! then file order). Only routes with exactly that template compete on method: a request
//! never falls back to a less specific route because the specific one refused its method,
//! since that would let a public catch-all serve a path a stricter route guards.

use std::sync::Arc;

use http::Method;
use rampart_config::RouteConfig;

use crate::metrics::{GatewayMetrics, RouteStats};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(String),
    Param(String),
}

/// A compiled route.
#[derive(Debug)]
pub struct Route {
    pub config: RouteConfig,
    /// The route id as a shared string, cheap to clone into metrics and logs.
    pub id: Arc<str>,
    segs: Vec<Seg>,
    literal_count: usize,
    /// Methods as the `Allow` header lists them (GET implies HEAD).
    allow: Vec<Method>,
    /// Where this route's requests are counted.
    pub stats: Arc<RouteStats>,
}

impl Route {
    fn allows(&self, m: &Method) -> bool {
        self.allow.is_empty() || self.allow.iter().any(|a| a == m)
    }

    /// Names of this template's `{name}` segments, in order.
    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.segs.iter().filter_map(|s| match s {
            Seg::Param(n) => Some(n.as_str()),
            Seg::Lit(_) => None,
        })
    }
}

/// Values captured by `{name}` segments (still percent-encoded as in the normalized path).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

/// For policies tested (or embedded) without a router.
impl FromIterator<(String, String)> for Params {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

/// What routing decided.
#[derive(Debug)]
pub enum RouteOutcome {
    Matched(Arc<Route>, Params),
    NotFound,
    /// The path matched but no route with that template allows the method.
    MethodNotAllowed(Vec<Method>),
}

/// The compiled table. Built once per configuration; cheap to share.
#[derive(Debug, Default)]
pub struct Router {
    routes: Vec<Arc<Route>>,
}

fn compile_template(path: &str) -> Vec<Seg> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(
            |s| match s.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
                Some(name) => Seg::Param(name.to_owned()),
                None => Seg::Lit(s.to_owned()),
            },
        )
        .collect()
}

impl Router {
    pub fn new(routes: &[RouteConfig], metrics: &GatewayMetrics) -> Self {
        let mut compiled: Vec<Arc<Route>> = routes
            .iter()
            .map(|r| {
                let segs = compile_template(&r.path);
                let literal_count = segs.iter().filter(|s| matches!(s, Seg::Lit(_))).count();
                let mut allow = r.methods.clone();
                if allow.contains(&Method::GET) && !allow.contains(&Method::HEAD) {
                    allow.push(Method::HEAD);
                }
                let id: Arc<str> = Arc::from(r.id.as_str());
                Arc::new(Route {
                    stats: metrics.route_stats(&id),
                    id,
                    config: r.clone(),
                    segs,
                    literal_count,
                    allow,
                })
            })
            .collect();
        // Most specific first; stable sort keeps file order among equals.
        compiled.sort_by_key(|r| std::cmp::Reverse((r.segs.len(), r.literal_count)));
        Self { routes: compiled }
    }

    pub fn routes(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.routes.iter()
    }

    /// Matches a normalized path and method.
    pub fn route(&self, path: &str, method: &Method) -> RouteOutcome {
        let mut best: Option<&Arc<Route>> = None;
        let mut allowed: Vec<Method> = Vec::new();
        for r in &self.routes {
            if let Some(b) = best {
                if (r.segs.len(), r.literal_count) != (b.segs.len(), b.literal_count) {
                    break; // sorted: everything after is less specific
                }
                if r.segs != b.segs {
                    continue; // another template of equal rank: the first match keeps it
                }
            } else if !matches_prefix(&r.segs, path) {
                continue;
            }
            if best.is_none() {
                best = Some(r);
            }
            if r.allows(method) {
                let params = capture(&r.segs, path);
                return RouteOutcome::Matched(Arc::clone(r), params);
            }
            for m in &r.allow {
                if !allowed.contains(m) {
                    allowed.push(m.clone());
                }
            }
        }
        match best {
            None => RouteOutcome::NotFound,
            Some(_) => RouteOutcome::MethodNotAllowed(allowed),
        }
    }
}

fn path_segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

fn matches_prefix(segs: &[Seg], path: &str) -> bool {
    let mut it = path_segments(path);
    for s in segs {
        let Some(p) = it.next() else { return false };
        if let Seg::Lit(l) = s
            && l != p
        {
            return false;
        }
    }
    true
}

fn capture(segs: &[Seg], path: &str) -> Params {
    let mut out = Vec::new();
    for (s, p) in segs.iter().zip(path_segments(path)) {
        if let Seg::Param(name) = s {
            out.push((name.clone(), p.to_owned()));
        }
    }
    Params(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn route(id: &str, path: &str, methods: &[&str]) -> RouteConfig {
        RouteConfig {
            id: id.into(),
            path: path.into(),
            methods: methods.iter().map(|m| m.parse().unwrap()).collect(),
            upstream: "app".into(),
            public: true,
            max_body_bytes: None,
            tier: None,
            scopes: vec![],
            any_scopes: vec![],
            allow_path_params: false,
            allow_fragment: false,
            allow_wildcard: false,
            cors: None,
            csrf: None,
            identity_assertion: false,
        }
    }

    fn id(o: RouteOutcome) -> String {
        match o {
            RouteOutcome::Matched(r, _) => r.id.to_string(),
            RouteOutcome::NotFound => "404".into(),
            RouteOutcome::MethodNotAllowed(m) => format!("405 {m:?}"),
        }
    }

    #[test]
    fn prefix_on_whole_segments() {
        let r = Router::new(&[route("s", "/status", &[])], &GatewayMetrics::default());
        assert_eq!(id(r.route("/status", &Method::GET)), "s");
        assert_eq!(id(r.route("/status/", &Method::GET)), "s");
        assert_eq!(id(r.route("/status/x", &Method::GET)), "s");
        assert_eq!(id(r.route("/statusx", &Method::GET)), "404");
        assert_eq!(id(r.route("/", &Method::GET)), "404");
    }

    #[test]
    fn most_specific_wins_and_never_falls_back_on_method() {
        let r = Router::new(
            &[
                route("root", "/", &["GET"]),
                route("admin", "/api/admin", &["POST"]),
                route("api", "/api", &["GET"]),
                route("tj", "/tenants/{tenant}/jobs", &["GET"]),
            ],
            &GatewayMetrics::default(),
        );
        assert_eq!(id(r.route("/api/x", &Method::GET)), "api");
        assert_eq!(id(r.route("/api/admin", &Method::POST)), "admin");
        assert_eq!(
            id(r.route("/api/admin", &Method::GET)),
            "405 [POST]",
            "must not fall back to the GET /api route"
        );
        assert_eq!(id(r.route("/other", &Method::GET)), "root");
        match r.route("/tenants/acme/jobs/7", &Method::HEAD) {
            RouteOutcome::Matched(rt, p) => {
                assert_eq!(&*rt.id, "tj");
                assert_eq!(p.get("tenant"), Some("acme"));
            }
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn same_template_routes_share_methods() {
        let r = Router::new(
            &[route("a", "/x", &["GET"]), route("b", "/x", &["POST"])],
            &GatewayMetrics::default(),
        );
        assert_eq!(id(r.route("/x", &Method::POST)), "b");
        assert_eq!(id(r.route("/x", &Method::GET)), "a");
        assert_eq!(id(r.route("/x", &Method::DELETE)), "405 [GET, HEAD, POST]");
    }

    #[test]
    fn literal_beats_param_at_same_depth() {
        let r = Router::new(
            &[route("p", "/t/{id}", &[]), route("l", "/t/me", &[])],
            &GatewayMetrics::default(),
        );
        assert_eq!(id(r.route("/t/me", &Method::GET)), "l");
        assert_eq!(id(r.route("/t/you", &Method::GET)), "p");
    }
}
