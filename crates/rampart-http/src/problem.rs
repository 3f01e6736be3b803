//! The one place where a refusal becomes an HTTP response: RFC 9457 problem documents
//! (`application/problem+json`) with a stable `type`, the status, a fixed `detail` chosen
//! here (never echoing client input, secrets or internal addresses) and the `request_id`.

use std::fmt::Write as _;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};

use crate::body::{RespBody, full};
use crate::path::PathError;
use crate::{Decision, Outcome, RequestId};

/// Every way the gateway refuses or fails a request. The variant decides the status code,
/// the problem type and the reason code that metrics and the access log carry.
#[derive(Debug, Clone)]
pub enum Reject {
    /// Host header missing, duplicated, malformed or not in `server.trusted_hosts`.
    BadHost,
    /// Host header and request-target authority disagree.
    HostMismatch,
    /// The path is ambiguous (see [`PathError`]).
    Path(PathError),
    /// `#fragment` in the request target on a route that does not allow it.
    Fragment,
    /// `;` path parameter on a route that does not allow it.
    PathParam,
    /// `*` where a template segment is expected, on a route that does not allow it.
    Wildcard,
    /// Request target is not origin-form (or an absolute-form the gateway refuses).
    BadTarget,
    NotFound,
    MethodNotAllowed(Vec<Method>),
    /// Request header section larger than `server.max_header_bytes`.
    HeadersTooLarge,
    /// The HTTP/1 head gate refused the request head before it was parsed (see
    /// [`Malformed`]); the connection is closed after the answer.
    Protocol(Malformed),
    /// The client went silent inside its request body for longer than
    /// `server.client_body_idle_timeout_ms`.
    ClientBodyTimeout,
    /// The client's request body framing is broken (a malformed chunk).
    BadRequestBody,
    /// The client went away before its request was complete (nginx's 499; the answer
    /// is for the access log and metrics, nobody is left to read it).
    ClientAbort,
    /// Body larger than the route's limit.
    PayloadTooLarge,
    /// No authentication mode accepted the request. The client sees one generic detail;
    /// the precise reason goes to logs, metrics and the audit record only.
    Unauthenticated(AuthFailure),
    /// Authentication cannot decide right now (no JWKS loaded yet, the credential store
    /// is unreachable): 503 with `Retry-After`, never a 401 that would blame the caller.
    AuthUnavailable(&'static str),
    /// The caller's rate limit (identity or tenant budget) is spent: 429 with
    /// `Retry-After` in delta-seconds.
    TooManyRequests {
        retry_after_s: u64,
    },
    /// The rate limiter's backend cannot decide and `on_backend_error = "deny"`.
    RateLimitUnavailable,
    /// The caller is authenticated but the route's policy (scopes, tenant) refuses it.
    /// The client sees one generic detail; the fixed reason code (`missing_scope`,
    /// `tenant_mismatch`, `no_tenant`, ...) goes to logs, metrics and the audit record.
    Forbidden(&'static str),
    /// Upstream could not be reached (connect error, reset before a response).
    BadGateway,
    /// The request did not complete within `server.request_timeout_ms`.
    GatewayTimeout,
    /// Every connection the upstream's `max_connections` allows is busy and none freed
    /// up within its `queue_timeout_ms`: 503 with `Retry-After`.
    UpstreamBusy,
    /// The gateway is draining or over capacity.
    Unavailable,
    /// The audit record of this request could not be made durable and
    /// `audit.on_failure = "deny"`.
    AuditUnavailable,
    /// A bug: logged with the request id, answered with a bare 500.
    Internal,
}

/// Why the HTTP/1 head gate refused a request head (RFC 9112): each maps to one status
/// and one reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// The request line or a header field does not parse: 400 `malformed_request`.
    Request,
    /// More header fields than `server.max_header_count`: 431 `too_many_headers`.
    TooManyHeaders,
    /// A head larger than the gate's cap: 431 `head_too_large`.
    HeadTooLarge,
    /// A request target longer than the gate's cap: 414 `uri_too_long`.
    UriTooLong,
    /// Invalid or conflicting `Content-Length`, both `Content-Length` and
    /// `Transfer-Encoding`, `chunked` not last or repeated, `Transfer-Encoding` on
    /// HTTP/1.0: 400 `bad_framing` (RFC 9112 §6.1, §6.3).
    Framing,
    /// A transfer coding other than `chunked` (`gzip, chunked`): 501
    /// `unsupported_transfer_coding` (RFC 9112 §6.1).
    TransferCoding,
    /// The head did not arrive within `server.header_read_timeout_ms`: 408
    /// `header_read_timeout`.
    HeadTimeout,
}

impl Malformed {
    pub fn status(self) -> StatusCode {
        match self {
            Self::Request | Self::Framing => StatusCode::BAD_REQUEST,
            Self::TooManyHeaders | Self::HeadTooLarge => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            Self::UriTooLong => StatusCode::URI_TOO_LONG,
            Self::TransferCoding => StatusCode::NOT_IMPLEMENTED,
            Self::HeadTimeout => StatusCode::REQUEST_TIMEOUT,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Self::Request => "malformed_request",
            Self::TooManyHeaders => "too_many_headers",
            Self::HeadTooLarge => "head_too_large",
            Self::UriTooLong => "uri_too_long",
            Self::Framing => "bad_framing",
            Self::TransferCoding => "unsupported_transfer_coding",
            Self::HeadTimeout => "header_read_timeout",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::Request => "Malformed request",
            Self::TooManyHeaders | Self::HeadTooLarge => "Request headers too large",
            Self::UriTooLong => "Request target too long",
            Self::Framing => "Bad message framing",
            Self::TransferCoding => "Transfer coding not implemented",
            Self::HeadTimeout => "Request timeout",
        }
    }

    fn detail(self) -> &'static str {
        match self {
            Self::Request => "The request line or a header field is malformed.",
            Self::TooManyHeaders => "The request has more header fields than allowed.",
            Self::HeadTooLarge => "The request head exceeds the limit.",
            Self::UriTooLong => "The request target exceeds the limit.",
            Self::Framing => "The request body framing is invalid or ambiguous.",
            Self::TransferCoding => "Only the chunked transfer coding is supported.",
            Self::HeadTimeout => "The request head did not arrive in time.",
        }
    }
}

/// What the 401's `WWW-Authenticate` says (RFC 6750 §3, RFC 9421 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// No credential was presented: `Bearer realm="rampart"`.
    Bearer,
    /// A bearer token was presented and refused: `Bearer error="invalid_token"`.
    InvalidToken,
    /// An API key was presented and refused.
    ApiKey,
    /// An HTTP message signature (RFC 9421) was refused: `Accept-Signature` names the
    /// components a signature must cover (with `content-digest` when the request has a
    /// body).
    Signature { body: bool },
    /// No credential was presented and signed requests are accepted (RFC 9421 §5.1: the
    /// client is asked to sign, `Accept-Signature` naming the components); `bearer` when
    /// other modes are accepted too (`Bearer realm` offered beside `Signature realm`).
    MissingSignature { body: bool, bearer: bool },
}

impl Challenge {
    pub fn header_value(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Self::Bearer => "Bearer realm=\"rampart\"",
            Self::InvalidToken => "Bearer error=\"invalid_token\"",
            Self::ApiKey => "ApiKey realm=\"rampart\"",
            Self::Signature { .. } | Self::MissingSignature { bearer: false, .. } => {
                "Signature realm=\"rampart\""
            }
            Self::MissingSignature { bearer: true, .. } => {
                "Bearer realm=\"rampart\", Signature realm=\"rampart\""
            }
        })
    }

    /// The `WWW-Authenticate` value of the admin listener (realm `rampart-admin`).
    pub fn admin_header_value(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Self::Signature { .. } | Self::MissingSignature { bearer: false, .. } => {
                "Signature realm=\"rampart-admin\""
            }
            Self::MissingSignature { bearer: true, .. } => {
                "Bearer realm=\"rampart-admin\", Signature realm=\"rampart-admin\""
            }
            Self::Bearer | Self::InvalidToken | Self::ApiKey => "Bearer realm=\"rampart-admin\"",
        })
    }

    /// The `Accept-Signature` field (RFC 9421 §5.1) a signature refusal carries.
    pub fn accept_signature(self) -> Option<HeaderValue> {
        match self {
            Self::Signature { body: false } | Self::MissingSignature { body: false, .. } => Some(
                HeaderValue::from_static("sig=(\"@method\" \"@target-uri\");created;nonce"),
            ),
            Self::Signature { body: true } | Self::MissingSignature { body: true, .. } => {
                Some(HeaderValue::from_static(
                    "sig=(\"@method\" \"@target-uri\" \"content-digest\");created;nonce",
                ))
            }
            _ => None,
        }
    }
}

/// Why authentication refused a request (for operators; the client sees one generic
/// detail whatever the reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthFailure {
    /// Fixed code (`expired`, `bad_signature`, `revoked`, …): a metric label, never
    /// client input.
    pub reason: &'static str,
    pub challenge: Challenge,
}

impl Reject {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadHost
            | Self::HostMismatch
            | Self::Path(_)
            | Self::Fragment
            | Self::PathParam
            | Self::Wildcard
            | Self::BadTarget => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::Protocol(m) => m.status(),
            Self::ClientBodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::BadRequestBody => StatusCode::BAD_REQUEST,
            Self::ClientAbort => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::AuthUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::RateLimitUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::BadGateway => StatusCode::BAD_GATEWAY,
            Self::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::UpstreamBusy => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::AuditUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable machine-readable reason, also the last segment of the problem `type`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadHost => "host_not_allowed",
            Self::HostMismatch => "host_mismatch",
            Self::Path(e) => e.code(),
            Self::Fragment => "path_fragment",
            Self::PathParam => "path_parameter",
            Self::Wildcard => "path_wildcard",
            Self::BadTarget => "bad_request_target",
            Self::NotFound => "route_not_found",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::HeadersTooLarge => "headers_too_large",
            Self::Protocol(m) => m.code(),
            Self::ClientBodyTimeout => "client_body_timeout",
            Self::BadRequestBody => "bad_request_body",
            Self::ClientAbort => "client_abort",
            Self::PayloadTooLarge => "payload_too_large",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::AuthUnavailable(_) => "auth_unavailable",
            Self::TooManyRequests { .. } => "rate_limited",
            Self::RateLimitUnavailable => "ratelimit_unavailable",
            Self::Forbidden(_) => "forbidden",
            Self::BadGateway => "upstream_unavailable",
            Self::GatewayTimeout => "request_timeout",
            Self::UpstreamBusy => "upstream_busy",
            Self::Unavailable => "unavailable",
            Self::AuditUnavailable => "audit_unavailable",
            Self::Internal => "internal_error",
        }
    }

    /// The pipeline stage (DESIGN.md §1) that refused: a fixed name the status page
    /// groups refusals by.
    pub fn stage(&self) -> &'static str {
        match self {
            Self::BadHost | Self::HostMismatch => "host",
            Self::Path(_) | Self::Fragment | Self::PathParam | Self::Wildcard | Self::BadTarget => {
                "path"
            }
            Self::NotFound | Self::MethodNotAllowed(_) => "route",
            Self::HeadersTooLarge
            | Self::Protocol(_)
            | Self::ClientBodyTimeout
            | Self::BadRequestBody
            | Self::ClientAbort
            | Self::Unavailable => "limits",
            Self::PayloadTooLarge => "body_limit",
            Self::Unauthenticated(_) | Self::AuthUnavailable(_) => "authenticate",
            Self::TooManyRequests { .. } | Self::RateLimitUnavailable => "rate_limit",
            Self::Forbidden(r) if r.starts_with("cors_") => "cors",
            Self::Forbidden(r) if r.starts_with("csrf_") => "csrf",
            Self::Forbidden(_) => "authorize",
            Self::BadGateway | Self::GatewayTimeout | Self::UpstreamBusy => "forward",
            Self::AuditUnavailable => "audit",
            Self::Internal => "internal",
        }
    }

    /// The reason metrics, the access log and the audit record carry: the code, except
    /// for authentication failures, whose precise reason only operators see.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unauthenticated(f) => f.reason,
            Self::AuthUnavailable(r) | Self::Forbidden(r) => r,
            _ => self.code(),
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Self::BadHost | Self::HostMismatch => "Host not allowed",
            Self::Path(_) | Self::Fragment | Self::PathParam | Self::Wildcard => {
                "Ambiguous request path"
            }
            Self::BadTarget => "Bad request target",
            Self::NotFound => "Not found",
            Self::MethodNotAllowed(_) => "Method not allowed",
            Self::HeadersTooLarge => "Request headers too large",
            Self::Protocol(m) => m.title(),
            Self::ClientBodyTimeout => "Request timeout",
            Self::BadRequestBody => "Bad request body",
            Self::ClientAbort => "Client closed request",
            Self::PayloadTooLarge => "Payload too large",
            Self::Unauthenticated(_) => "Authentication required",
            Self::AuthUnavailable(_) => "Authentication unavailable",
            Self::TooManyRequests { .. } => "Too many requests",
            Self::RateLimitUnavailable => "Rate limiting unavailable",
            Self::Forbidden(_) => "Forbidden",
            Self::BadGateway => "Bad gateway",
            Self::GatewayTimeout => "Gateway timeout",
            Self::UpstreamBusy => "Service unavailable",
            Self::Unavailable => "Service unavailable",
            Self::AuditUnavailable => "Service unavailable",
            Self::Internal => "Internal server error",
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::BadHost => "The Host header is missing, malformed or not served here.".into(),
            Self::HostMismatch => "The Host header and the request target disagree.".into(),
            Self::Path(e) => format!("{e}."),
            Self::Fragment => "The request target contains a '#' fragment.".into(),
            Self::PathParam => "The request path contains a ';' path parameter.".into(),
            Self::Wildcard => "The request path has '*' where a name is expected.".into(),
            Self::BadTarget => "The request target form is not accepted.".into(),
            Self::NotFound => "No route matches this path.".into(),
            Self::MethodNotAllowed(_) => "This route does not accept this method.".into(),
            Self::HeadersTooLarge => "The request header section exceeds the limit.".into(),
            Self::Protocol(m) => m.detail().into(),
            Self::ClientBodyTimeout => "The request body did not arrive in time.".into(),
            Self::BadRequestBody => "The request body framing is malformed.".into(),
            Self::ClientAbort => "The client closed the request before it was complete.".into(),
            Self::PayloadTooLarge => "The request body exceeds this route's limit.".into(),
            Self::Unauthenticated(_) => {
                "Valid credentials are required to access this route.".into()
            }
            Self::AuthUnavailable(_) => {
                "Credentials cannot be checked right now; retry later.".into()
            }
            Self::TooManyRequests { .. } => {
                "The request rate limit is exhausted; retry after the indicated delay.".into()
            }
            Self::RateLimitUnavailable => {
                "The rate limit cannot be checked right now; retry later.".into()
            }
            Self::Forbidden(_) => "The caller is not allowed to access this route.".into(),
            Self::BadGateway => "The upstream service could not be reached.".into(),
            Self::GatewayTimeout => "The request did not complete in time.".into(),
            Self::UpstreamBusy => "The upstream service is at capacity; retry later.".into(),
            Self::Unavailable => "The gateway is not accepting requests right now.".into(),
            Self::AuditUnavailable => {
                "The request could not be recorded in the audit log, so it was not served.".into()
            }
            Self::Internal => "An internal error occurred.".into(),
        }
    }

    /// Builds the response. `request_id` comes from the request's extensions.
    pub fn into_response(self, request_id: Option<&RequestId>) -> Response<RespBody> {
        let status = self.status();
        if matches!(self, Self::Internal) {
            tracing::error!(
                request_id = request_id.map(RequestId::as_str),
                "internal error"
            );
        }
        let mut body = String::with_capacity(256);
        body.push_str("{\"type\":\"https://rampart.dev/problems/");
        body.push_str(self.code());
        body.push_str("\",\"title\":");
        push_json_str(&mut body, self.title());
        let _ = write!(body, ",\"status\":{}", status.as_u16());
        body.push_str(",\"detail\":");
        push_json_str(&mut body, &self.detail());
        body.push_str(",\"code\":");
        push_json_str(&mut body, self.code());
        body.push_str(",\"request_id\":");
        match request_id {
            Some(id) => push_json_str(&mut body, id.as_str()),
            None => body.push_str("null"),
        }
        body.push('}');
        let mut resp = Response::new(full(Bytes::from(body)));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match &self {
            Self::MethodNotAllowed(methods) => {
                let allow = methods
                    .iter()
                    .map(Method::as_str)
                    .collect::<Vec<_>>()
                    .join(", ");
                if let Ok(v) = HeaderValue::from_str(&allow) {
                    h.insert(header::ALLOW, v);
                }
            }
            Self::Unauthenticated(f) => {
                h.insert(header::WWW_AUTHENTICATE, f.challenge.header_value());
                if let Some(v) = f.challenge.accept_signature() {
                    h.insert(HeaderName::from_static("accept-signature"), v);
                }
            }
            Self::AuthUnavailable(_) | Self::RateLimitUnavailable | Self::UpstreamBusy => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            Self::TooManyRequests { retry_after_s } => {
                if let Ok(v) = HeaderValue::from_str(itoa::Buffer::new().format(*retry_after_s)) {
                    h.insert(header::RETRY_AFTER, v);
                }
            }
            Self::BadHost
            | Self::HostMismatch
            | Self::Path(_)
            | Self::BadTarget
            | Self::HeadersTooLarge
            | Self::Protocol(_)
            | Self::ClientBodyTimeout
            | Self::BadRequestBody
            | Self::ClientAbort
            | Self::PayloadTooLarge => {
                // The connection may hold unread or hostile bytes: do not reuse it.
                h.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        if let Some(id) = request_id {
            h.insert(crate::X_REQUEST_ID, id.header_value());
        }
        resp.extensions_mut().insert(Outcome {
            decision: Decision::Deny,
            reason: self.reason(),
        });
        resp.extensions_mut().insert(crate::RefusedAt(self.stage()));
        resp
    }
}

/// Appends `s` as a JSON string literal.
pub fn push_json_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let mut rest = s;
    // Copy runs that need no escaping in one go; only the rare byte that does is
    // handled one at a time.
    while let Some(i) = rest
        .bytes()
        .position(|b| b < 0x20 || b == b'"' || b == b'\\' || b == 0x7f)
    {
        let (clean, tail) = rest.split_at(i);
        out.push_str(clean);
        let mut chars = tail.chars();
        match chars.next() {
            Some('"') => out.push_str("\\\""),
            Some('\\') => out.push_str("\\\\"),
            Some('\n') => out.push_str("\\n"),
            Some('\r') => out.push_str("\\r"),
            Some('\t') => out.push_str("\\t"),
            Some(c) => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            None => {}
        }
        rest = chars.as_str();
    }
    out.push_str(rest);
    out.push('"');
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn refusals_name_their_stage() {
        for (reject, stage) in [
            (Reject::BadHost, "host"),
            (Reject::NotFound, "route"),
            (
                Reject::Unauthenticated(AuthFailure {
                    reason: "expired",
                    challenge: Challenge::InvalidToken,
                }),
                "authenticate",
            ),
            (Reject::Forbidden("missing_scope"), "authorize"),
            (Reject::Forbidden("cors_origin"), "cors"),
            (Reject::Forbidden("csrf_mismatch"), "csrf"),
            (Reject::TooManyRequests { retry_after_s: 1 }, "rate_limit"),
            (Reject::PayloadTooLarge, "body_limit"),
            (Reject::AuditUnavailable, "audit"),
        ] {
            assert_eq!(reject.stage(), stage);
            let resp = reject.into_response(None);
            assert_eq!(
                resp.extensions().get::<crate::RefusedAt>(),
                Some(&crate::RefusedAt(stage))
            );
        }
    }

    #[tokio::test]
    async fn problem_document_shape() {
        let id = RequestId::new(HeaderValue::from_static("abc-123"));
        let resp =
            Reject::MethodNotAllowed(vec![Method::GET, Method::HEAD]).into_response(Some(&id));
        assert_eq!(resp.status(), 405);
        assert_eq!(resp.headers()["allow"], "GET, HEAD");
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["status"], 405);
        assert_eq!(v["request_id"], "abc-123");
        assert!(v["type"].as_str().unwrap().ends_with("method_not_allowed"));
        assert!(v["title"].is_string() && v["detail"].is_string());
    }

    #[test]
    fn too_many_requests_has_retry_after() {
        let resp = Reject::TooManyRequests { retry_after_s: 7 }.into_response(None);
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()["retry-after"], "7");
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
    }

    #[test]
    fn json_escaping() {
        let mut s = String::new();
        push_json_str(&mut s, "a\"b\\c\n\u{1}");
        assert_eq!(s, r#""a\"b\\c\n\u0001""#);
    }
}
