//! Client-certificate identity: who a verified certificate names (subject DN, CN, DNS,
//! URI and email SANs, SPIFFE IDs among the URIs), its SHA-256 fingerprint for
//! revocation, and the `auth.mtls.map` lookup that gives it a tenant, roles and scopes.
//!
//! Guards against: a certificate that parses ambiguously being mapped to someone else
//! (trailing data after the certificate, a malformed extension or non-UTF-8 names are
//! refused, never guessed at); unbounded work on hostile certificates (names beyond
//! [`MAX_NAMES`] are refused). Trusts: the listener, which hands over only chains that
//! verified against `server.tls.client_ca` (this module does no chain validation).

use rampart_config::raw::CertMapping;
use rampart_http::Identity;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Bound on the names one certificate may carry.
pub const MAX_NAMES: usize = 64;

/// What a client certificate says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertIdentity {
    /// RFC 4514 string of the subject DN.
    pub subject_dn: String,
    pub common_name: Option<String>,
    pub dns: Vec<String>,
    /// URI SANs (SPIFFE IDs are among these).
    pub uris: Vec<String>,
    pub emails: Vec<String>,
    /// Lower-case hex SHA-256 of the certificate's DER encoding.
    pub fingerprint: String,
}

/// Lower-case hex SHA-256 of `der`, the form `rampart revoke --cert-fp` takes.
pub fn fingerprint(der: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    let mut s = String::with_capacity(64);
    for b in d.as_ref() {
        for nibble in [b >> 4, b & 0xf] {
            s.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
        }
    }
    s
}

/// Accepts a fingerprint as operators paste it (`AB:CD:…` from `openssl x509
/// -fingerprint -sha256`, or plain hex) and returns the canonical lower-case hex form.
pub fn normalize_fingerprint(s: &str) -> Option<String> {
    let hex: String = s
        .trim()
        .trim_start_matches("sha256:")
        .trim_start_matches("SHA256:")
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

impl CertIdentity {
    /// Reads a DER certificate. `Err` is a fixed reason code.
    pub fn from_der(der: &[u8]) -> Result<Self, &'static str> {
        let (rest, cert) = X509Certificate::from_der(der).map_err(|_| "bad_certificate")?;
        if !rest.is_empty() {
            return Err("bad_certificate");
        }
        let subject = cert.subject();
        let subject_dn = subject.to_string();
        let mut common_name = None;
        for cn in subject.iter_common_name() {
            if common_name.is_some() {
                // Two CNs: which one is the holder? Refuse rather than pick.
                return Err("ambiguous_certificate");
            }
            common_name = Some(cn.as_str().map_err(|_| "bad_certificate")?.to_owned());
        }
        let mut out = Self {
            subject_dn,
            common_name,
            dns: Vec::new(),
            uris: Vec::new(),
            emails: Vec::new(),
            fingerprint: fingerprint(der),
        };
        let san = cert
            .subject_alternative_name()
            .map_err(|_| "bad_certificate")?;
        if let Some(san) = san {
            if san.value.general_names.len() > MAX_NAMES {
                return Err("bad_certificate");
            }
            for n in &san.value.general_names {
                match n {
                    GeneralName::DNSName(s) => out.dns.push((*s).to_owned()),
                    GeneralName::URI(s) => out.uris.push((*s).to_owned()),
                    GeneralName::RFC822Name(s) => out.emails.push((*s).to_owned()),
                    _ => {}
                }
            }
        }
        Ok(out)
    }

    /// The holder's name, most specific first: a URI SAN (SPIFFE ID), a DNS SAN, an
    /// email SAN, the CN, then the whole subject DN.
    pub fn subject(&self) -> String {
        self.uris
            .first()
            .or_else(|| self.dns.first())
            .or_else(|| self.emails.first())
            .or(self.common_name.as_ref())
            .cloned()
            .unwrap_or_else(|| self.subject_dn.clone())
    }

    /// Every name the certificate carries, for the mapping lookup.
    pub fn names(&self) -> Vec<String> {
        let mut v = Vec::with_capacity(2 + self.dns.len() + self.uris.len() + self.emails.len());
        v.extend(self.uris.iter().cloned());
        v.extend(self.dns.iter().cloned());
        v.extend(self.emails.iter().cloned());
        v.extend(self.common_name.iter().cloned());
        v.push(self.subject_dn.clone());
        v
    }

    pub fn into_identity(self, map: &[CertMapping]) -> Identity {
        let mapped = lookup(map, &self.names());
        let mut id = Identity {
            method: "mtls",
            subject: Some(self.subject()),
            tenant: None,
            scopes: Vec::new(),
            roles: Vec::new(),
            credential_id: Some(self.fingerprint),
            rate_override: None,
        };
        if let Some(m) = mapped {
            id.tenant.clone_from(&m.tenant);
            extend_unique(&mut id.scopes, &m.scopes);
            extend_unique(&mut id.roles, &m.roles);
        }
        id
    }
}

/// The first mapping whose `id` equals one of `names` (exact, case-sensitive: DNS names
/// in certificates are compared as written).
pub fn lookup<'a>(map: &'a [CertMapping], names: &[String]) -> Option<&'a CertMapping> {
    map.iter().find(|m| names.contains(&m.id))
}

pub(crate) fn extend_unique(into: &mut Vec<String>, from: &[String]) {
    for s in from {
        if !into.contains(s) {
            into.push(s.clone());
        }
    }
}
