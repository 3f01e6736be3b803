//! `X-Forwarded-For` interpretation, pure.
//!
//! Secure by default: with no trusted proxies the client is the TCP peer, whatever the
//! headers say. When the peer is trusted, the list is read from the right (the hop closest
//! to us) and the first address that is not itself a trusted proxy is the client; an
//! unparsable entry stops the walk at the last trusted hop, so garbage never becomes an
//! identity. Only the rightmost [`MAX_HOPS`] entries are considered.

use std::net::{IpAddr, SocketAddr};

use http::HeaderValue;
use ipnet::IpNet;

use crate::is_trusted;

/// Bound on the entries read from `X-Forwarded-For`.
pub const MAX_HOPS: usize = 32;

/// Parses one list entry: an IP, `[v6]`, `v4:port` or `[v6]:port`.
pub fn parse_hop(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    s.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|r| r.parse::<IpAddr>().ok())
}

/// The client address for a request from `peer` with these `X-Forwarded-For` values.
pub fn client_ip<'a>(
    peer: IpAddr,
    xff: impl DoubleEndedIterator<Item = &'a HeaderValue>,
    trusted: &[IpNet],
) -> IpAddr {
    if !is_trusted(trusted, peer) {
        return peer;
    }
    let mut current = peer;
    let mut seen = 0usize;
    for value in xff.rev() {
        let Ok(s) = value.to_str() else {
            return current;
        };
        for hop in s.rsplit(',') {
            seen += 1;
            if seen > MAX_HOPS {
                return current;
            }
            let Some(ip) = parse_hop(hop) else {
                return current;
            };
            if !is_trusted(trusted, ip) {
                return ip;
            }
            current = ip;
        }
    }
    current
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
    fn nets(v: &[&str]) -> Vec<IpNet> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }
    fn hv(v: &[&str]) -> Vec<HeaderValue> {
        v.iter()
            .map(|s| HeaderValue::from_str(s).unwrap())
            .collect()
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_says() {
        let h = hv(&["1.2.3.4"]);
        assert_eq!(client_ip(ip("9.9.9.9"), h.iter(), &[]), ip("9.9.9.9"));
        assert_eq!(
            client_ip(ip("9.9.9.9"), h.iter(), &nets(&["10.0.0.0/8"])),
            ip("9.9.9.9")
        );
    }

    #[test]
    fn reads_from_the_right_and_stops_at_first_untrusted() {
        let t = nets(&["10.0.0.0/8"]);
        // Client spoofed "6.6.6.6"; the real client 5.5.5.5 was appended by our proxy 10.0.0.2.
        let h = hv(&["6.6.6.6, 5.5.5.5", "10.0.0.2"]);
        assert_eq!(client_ip(ip("10.0.0.1"), h.iter(), &t), ip("5.5.5.5"));
        let h = hv(&["10.0.0.3, 10.0.0.2"]);
        assert_eq!(client_ip(ip("10.0.0.1"), h.iter(), &t), ip("10.0.0.3"));
        let h = hv(&["garbage, 10.0.0.2"]);
        assert_eq!(client_ip(ip("10.0.0.1"), h.iter(), &t), ip("10.0.0.2"));
        let h = hv(&["[2001:db8::1]:443"]);
        assert_eq!(client_ip(ip("10.0.0.1"), h.iter(), &t), ip("2001:db8::1"));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let h = hv(&["5.5.5.5"]);
        assert_eq!(client_ip(mapped, h.iter(), &t), ip("5.5.5.5"));
    }

    proptest! {
        #[test]
        fn never_panics_and_untrusted_peer_wins(s in "[ -~]{0,200}") {
            if let Ok(v) = HeaderValue::from_str(&s) {
                let h = [v];
                let t = nets(&["127.0.0.0/8"]);
                let _ = client_ip(ip("127.0.0.1"), h.iter(), &t);
                prop_assert_eq!(client_ip(ip("8.8.8.8"), h.iter(), &t), ip("8.8.8.8"));
            }
        }
    }
}
