//! The request as the verifier sees it, covered components, and the signature base
//! (RFC 9421 §2.5).
//!
//! The target URI is rebuilt from what the gateway received, never from anything the
//! client claims about itself: the scheme of the connection (or `X-Forwarded-Proto` when the
//! gateway already decided the peer is a trusted proxy), the `Host` (HTTP/1.1) or
//! `:authority` (HTTP/2), and the request target exactly as sent.

use http::HeaderMap;

use crate::sf::{self, BareItem, Item};

/// The parts of a request that covered components are taken from.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// The method, as sent (case-sensitive).
    pub method: &'a str,
    /// The scheme of the connection: `http` or `https`.
    pub scheme: &'a str,
    /// `Host` / `:authority` as received.
    pub authority: &'a str,
    /// The origin-form request target (path and query) exactly as sent.
    pub target: &'a str,
    /// All header field lines.
    pub headers: &'a HeaderMap,
}

impl<'a> RequestParts<'a> {
    /// The parts of an `http::Request`: the authority from the URI (HTTP/2 `:authority`)
    /// or else the `Host` header; `None` when there is neither, or the target is not
    /// origin-form.
    pub fn from_request<B>(req: &'a http::Request<B>, scheme: &'a str) -> Option<Self> {
        let authority = match req.uri().authority() {
            Some(a) => a.as_str(),
            None => req.headers().get(http::header::HOST)?.to_str().ok()?,
        };
        let target = req.uri().path_and_query()?.as_str();
        Some(RequestParts {
            method: req.method().as_str(),
            scheme,
            authority,
            target,
            headers: req.headers(),
        })
    }

    fn path(&self) -> &'a str {
        let path = self.target.split_once('?').map_or(self.target, |(p, _)| p);
        if path.is_empty() { "/" } else { path }
    }

    fn query(&self) -> Option<&'a str> {
        self.target.split_once('?').map(|(_, q)| q)
    }
}

/// A covered component this crate knows how to resolve.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Component {
    /// `@method`
    Method,
    /// `@target-uri`
    TargetUri,
    /// `@authority`
    Authority,
    /// `@scheme`
    Scheme,
    /// `@path`
    Path,
    /// `@query`
    Query,
    /// `@request-target`
    RequestTarget,
    /// A header field, by lowercase name.
    Field(String),
}

/// Why a signature base could not be built. Always the sender's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BaseError {
    /// A component identifier that is not a lowercase string, or has parameters
    /// (`sf`, `key`, `bs`, `req`, `tr` are not supported and refused).
    #[error("unsupported component identifier")]
    UnsupportedComponent,
    /// The same component is covered twice.
    #[error("component covered twice")]
    DuplicateComponent,
    /// A covered header field is absent from the request.
    #[error("covered field absent")]
    MissingField,
    /// The request cannot yield a derived component (not origin-form, bad authority) or a
    /// value holds bytes a signature base cannot carry.
    #[error("component value unavailable")]
    BadValue,
}

impl Component {
    /// The component an identifier names.
    pub fn from_item(item: &Item) -> Result<Self, BaseError> {
        let BareItem::String(name) = &item.bare else {
            return Err(BaseError::UnsupportedComponent);
        };
        if !item.params.is_empty() {
            return Err(BaseError::UnsupportedComponent);
        }
        Self::from_name(name)
    }

    /// The component for a name such as `@method` or `content-digest`.
    pub fn from_name(name: &str) -> Result<Self, BaseError> {
        Ok(match name {
            "@method" => Component::Method,
            "@target-uri" => Component::TargetUri,
            "@authority" => Component::Authority,
            "@scheme" => Component::Scheme,
            "@path" => Component::Path,
            "@query" => Component::Query,
            "@request-target" => Component::RequestTarget,
            n if !n.is_empty()
                && n.bytes().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&c)
                }) =>
            {
                Component::Field(n.to_owned())
            }
            _ => return Err(BaseError::UnsupportedComponent),
        })
    }

    /// The identifier's name.
    pub fn name(&self) -> &str {
        match self {
            Component::Method => "@method",
            Component::TargetUri => "@target-uri",
            Component::Authority => "@authority",
            Component::Scheme => "@scheme",
            Component::Path => "@path",
            Component::Query => "@query",
            Component::RequestTarget => "@request-target",
            Component::Field(n) => n,
        }
    }

    /// The component's value in `req` (RFC 9421 §2.1, §2.2).
    pub fn value(&self, req: &RequestParts<'_>) -> Result<Vec<u8>, BaseError> {
        if !req.target.starts_with('/') {
            return Err(BaseError::BadValue);
        }
        let v = match self {
            Component::Method => req.method.as_bytes().to_vec(),
            Component::TargetUri => format!(
                "{}://{}{}",
                req.scheme.to_ascii_lowercase(),
                req.authority,
                req.target
            )
            .into_bytes(),
            Component::Authority => normalized_authority(req.scheme, req.authority)?.into_bytes(),
            Component::Scheme => req.scheme.to_ascii_lowercase().into_bytes(),
            Component::Path => req.path().as_bytes().to_vec(),
            Component::Query => format!("?{}", req.query().unwrap_or("")).into_bytes(),
            Component::RequestTarget => req.target.as_bytes().to_vec(),
            Component::Field(name) => {
                let mut out = Vec::new();
                let mut any = false;
                for line in req.headers.get_all(name.as_str()) {
                    if any {
                        out.extend_from_slice(b", ");
                    }
                    any = true;
                    out.extend_from_slice(trim_ows(line.as_bytes()));
                }
                if !any {
                    return Err(BaseError::MissingField);
                }
                out
            }
        };
        // The base is US-ASCII lines (RFC 9421 §2.5): no control characters other than
        // HTAB inside a field, and no obs-text bytes a signer could encode differently.
        if v.iter().any(|&c| (c < 0x20 && c != b'\t') || c >= 0x7f) {
            return Err(BaseError::BadValue);
        }
        Ok(v)
    }
}

fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|c| !matches!(c, b' ' | b'\t'))
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|c| !matches!(c, b' ' | b'\t'))
        .map_or(start, |i| i + 1);
    v.get(start..end).unwrap_or_default()
}

/// `@authority`: the host lowercased, the port dropped when it is the scheme's default.
fn normalized_authority(scheme: &str, authority: &str) -> Result<String, BaseError> {
    if authority.is_empty() || authority.contains(['@', '/', '?', '#', ' ']) {
        return Err(BaseError::BadValue);
    }
    let lower = authority.to_ascii_lowercase();
    let (host, port) = match lower.rfind(':') {
        Some(i) if !lower.get(i..).unwrap_or_default().contains(']') => {
            (lower.get(..i).unwrap_or_default(), lower.get(i + 1..))
        }
        _ => (lower.as_str(), None),
    };
    let default = match scheme.to_ascii_lowercase().as_str() {
        "http" => "80",
        "https" => "443",
        _ => "",
    };
    Ok(match port {
        Some(p) if p.trim_start_matches('0') == default => host.to_owned(),
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    })
}

/// Build the signature base: one line per covered component, then `@signature-params`
/// with `params_raw`, the received `Signature-Input` member value exactly as sent.
pub fn signature_base(
    req: &RequestParts<'_>,
    components: &[Component],
    params_raw: &str,
) -> Result<Vec<u8>, BaseError> {
    let mut out = Vec::with_capacity(256);
    for (i, c) in components.iter().enumerate() {
        if components.get(..i).unwrap_or_default().contains(c) {
            return Err(BaseError::DuplicateComponent);
        }
        let mut id = String::new();
        sf::serialize_bare(&BareItem::String(c.name().to_owned()), &mut id)
            .ok_or(BaseError::UnsupportedComponent)?;
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(&c.value(req)?);
        out.push(b'\n');
    }
    out.extend_from_slice(b"\"@signature-params\": ");
    out.extend_from_slice(params_raw.as_bytes());
    Ok(out)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;

    fn parts<'a>(h: &'a HeaderMap, target: &'a str, authority: &'a str) -> RequestParts<'a> {
        RequestParts {
            method: "POST",
            scheme: "https",
            authority,
            target,
            headers: h,
        }
    }

    #[test]
    fn derived_components_follow_rfc9421_section_2_2() {
        let h = HeaderMap::new();
        let r = parts(&h, "/foo?param=Value&Pet=dog", "Example.COM:443");
        let v = |c: Component| String::from_utf8(c.value(&r).unwrap()).unwrap();
        assert_eq!(v(Component::Method), "POST");
        assert_eq!(v(Component::Authority), "example.com");
        assert_eq!(v(Component::Scheme), "https");
        assert_eq!(v(Component::Path), "/foo");
        assert_eq!(v(Component::Query), "?param=Value&Pet=dog");
        assert_eq!(v(Component::RequestTarget), "/foo?param=Value&Pet=dog");
        assert_eq!(
            v(Component::TargetUri),
            "https://Example.COM:443/foo?param=Value&Pet=dog"
        );
        let r = parts(&h, "/", "[::1]:8443");
        assert_eq!(
            Component::Query.value(&r).unwrap(),
            b"?",
            "absent query is a lone '?'"
        );
        assert_eq!(Component::Authority.value(&r).unwrap(), b"[::1]:8443");
        let r = parts(&h, "*", "example.com");
        assert_eq!(Component::Method.value(&r), Err(BaseError::BadValue));
    }

    #[test]
    fn fields_are_trimmed_and_joined() {
        let mut h = HeaderMap::new();
        h.append("x-list", "  a ".parse().unwrap());
        h.append("x-list", "b\t".parse().unwrap());
        let r = parts(&h, "/", "example.com");
        assert_eq!(
            Component::Field("x-list".into()).value(&r).unwrap(),
            b"a, b"
        );
        assert_eq!(
            Component::Field("x-absent".into()).value(&r),
            Err(BaseError::MissingField)
        );
        let mut h = HeaderMap::new();
        h.insert("x-bin", http::HeaderValue::from_bytes(b"caf\xe9").unwrap());
        let r = parts(&h, "/", "example.com");
        assert_eq!(
            Component::Field("x-bin".into()).value(&r),
            Err(BaseError::BadValue)
        );
    }

    #[test]
    fn identifiers_with_parameters_or_uppercase_are_refused() {
        for bad in ["\"date\";sf", "\"Date\"", "\"@unknown\"", "date", "\"\""] {
            let item = sf::parse_item(bad.as_bytes()).unwrap();
            assert_eq!(
                Component::from_item(&item),
                Err(BaseError::UnsupportedComponent),
                "{bad}"
            );
        }
    }

    #[test]
    fn duplicate_components_are_refused() {
        let h = HeaderMap::new();
        let r = parts(&h, "/", "example.com");
        assert_eq!(
            signature_base(&r, &[Component::Method, Component::Method], "()"),
            Err(BaseError::DuplicateComponent)
        );
    }
}
