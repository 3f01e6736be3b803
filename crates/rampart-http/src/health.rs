//! What stages report to the admin listener besides the request counters: `/healthz`
//! reasons that change at run time (a JWKS that cannot be fetched, a failing audit
//! disk) and extra metric families. Stages implement the traits; the admin listener
//! asks them on every scrape, so nothing here runs on the request path.

/// Severity of a health reason: `warn` makes `/healthz` answer 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Info,
    Warn,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warn => "warn",
        }
    }
}

/// One reason in `/healthz`. `code` is a fixed identifier (also the metric label).
#[derive(Debug, Clone)]
pub struct Reason {
    pub code: String,
    pub severity: Severity,
    pub message: String,
}

impl Reason {
    pub fn new(code: &str, severity: Severity, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            severity,
            message: message.into(),
        }
    }
}

/// A source of run-time health reasons (asked on every `/healthz` and scrape).
pub trait HealthProbe: Send + Sync + 'static {
    fn reasons(&self, out: &mut Vec<Reason>);
}

/// A closure answering at most one reason is a probe too.
impl<F> HealthProbe for F
where
    F: Fn() -> Option<Reason> + Send + Sync + 'static,
{
    fn reasons(&self, out: &mut Vec<Reason>) {
        out.extend(self());
    }
}

/// A source of extra metric families in the Prometheus text format (0.0.4). Label values
/// must come from configuration or fixed sets, never from client input.
pub trait MetricsSource: Send + Sync + 'static {
    fn encode(&self, out: &mut String);
}
