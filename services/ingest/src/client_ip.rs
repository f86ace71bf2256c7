//! The real client IP behind load balancers and reverse proxies.
//!
//! The TCP peer is the client unless it is one of `trusted_proxies`. When
//! it is, `X-Forwarded-For` is walked from the right (each proxy appends
//! the address it got the request from), skipping addresses that are
//! themselves trusted proxies; the first untrusted address is the client.
//! Whatever stands left of it was written by the client and is never
//! looked at. The header of an untrusted peer is ignored, so a browser
//! cannot choose its own rate-limit bucket by forging it. When an entry on
//! the way does not parse (or the header is not text), the peer address is
//! used. When every entry is a trusted proxy, the leftmost one is the
//! client.
//!
//! Entries may be a bare address (`203.0.113.7`, `2001:db8::7`), carry a
//! port (`203.0.113.7:4711`, `[2001:db8::7]:443`) or be bracketed IPv6
//! (`[2001:db8::7]`). IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, as a
//! dual-stack listener reports IPv4 peers) count as their IPv4 address.

use axum::http::HeaderMap;
use ipnet::{IpNet, Ipv4Net};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// The header proxies append the address they received a request from to.
pub const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// The networks whose `X-Forwarded-For` is believed (setting
/// `trusted_proxies`); empty by default, then the TCP peer is the client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Trusts `nets`.
    pub fn new(nets: Vec<IpNet>) -> TrustedProxies {
        TrustedProxies(nets.into_iter().map(canonical_net).collect())
    }

    /// Parses one `trusted_proxies` entry: an address (`127.0.0.1`, `::1`)
    /// or a CIDR network (`10.0.0.0/8`, `fd00::/8`). The error says what
    /// to write instead.
    pub fn parse_entry(entry: &str) -> Result<IpNet, String> {
        let t = entry.trim();
        let bad = || {
            format!(
                "{entry:?} is not an IP address or CIDR network; write an address like \
                 \"10.1.2.3\" or \"::1\", or a network like \"10.0.0.0/8\" or \"fd00::/8\""
            )
        };
        let net = if t.contains('/') {
            let n: IpNet = t.parse().map_err(|_| bad())?;
            if n.trunc() != n {
                return Err(format!(
                    "{entry:?} has address bits set beyond its /{} prefix; write the network \
                     \"{}\", or \"{}/{}\" for that one address",
                    n.prefix_len(),
                    n.trunc(),
                    n.addr(),
                    n.max_prefix_len()
                ));
            }
            n
        } else {
            IpNet::from(t.parse::<IpAddr>().map_err(|_| bad())?)
        };
        Ok(canonical_net(net))
    }

    /// No proxy is trusted: the TCP peer is always the client.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The trusted networks.
    pub fn networks(&self) -> &[IpNet] {
        &self.0
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client's address for a request that came from `peer` with
    /// `headers` (see the module docs).
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if self.is_empty() || !self.contains(peer) {
            return peer;
        }
        self.forwarded_client(headers).unwrap_or(peer)
    }

    /// The first untrusted address of `X-Forwarded-For` from the right (or
    /// its leftmost when all are trusted); `None` when the header is
    /// missing or an entry on the way is malformed.
    fn forwarded_client(&self, headers: &HeaderMap) -> Option<IpAddr> {
        let mut leftmost = None;
        // Several header lines are one comma-separated list, in order.
        for value in headers.get_all(X_FORWARDED_FOR).iter().rev() {
            let value = value.to_str().ok()?;
            for entry in value.rsplit(',') {
                let ip = parse_forwarded(entry)?;
                if !self.contains(ip) {
                    return Some(ip);
                }
                leftmost = Some(ip);
            }
        }
        leftmost
    }
}

/// One `X-Forwarded-For` entry: an address, optionally with a port or in
/// brackets.
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    let e = entry.trim();
    let ip = if let Ok(ip) = e.parse::<IpAddr>() {
        ip
    } else if let Ok(sa) = e.parse::<SocketAddr>() {
        sa.ip()
    } else {
        let inner = e.strip_prefix('[')?.strip_suffix(']')?;
        IpAddr::V6(inner.parse::<Ipv6Addr>().ok()?)
    };
    Some(ip.to_canonical())
}

/// An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) as the IPv4
/// network it maps (`10.0.0.0/8`), since addresses are compared in their
/// canonical form.
fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(n) = net {
        if let (Some(v4), true) = (n.addr().to_ipv4_mapped(), n.prefix_len() >= 96) {
            if let Ok(m) = Ipv4Net::new(v4, n.prefix_len() - 96) {
                return IpNet::V4(m);
            }
        }
    }
    net
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn trusted(entries: &[&str]) -> TrustedProxies {
        TrustedProxies::new(
            entries
                .iter()
                .map(|e| TrustedProxies::parse_entry(e).unwrap())
                .collect(),
        )
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(X_FORWARDED_FOR, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_addresses_and_networks() {
        let t = trusted(&["127.0.0.1", "10.0.0.0/8", "::1", " fd00::/8 "]);
        assert_eq!(t.networks().len(), 4);
        assert_eq!(t.networks()[0].to_string(), "127.0.0.1/32");
        assert_eq!(t.networks()[2].to_string(), "::1/128");
        assert!(t.contains(ip("10.200.3.4")));
        assert!(t.contains(ip("fd12::5")));
        assert!(t.contains(ip("::ffff:127.0.0.1")));
        assert!(!t.contains(ip("11.0.0.1")));
        // An IPv4-mapped network is compared as IPv4.
        let m = trusted(&["::ffff:10.0.0.0/104"]);
        assert_eq!(m.networks()[0].to_string(), "10.0.0.0/8");
        assert!(m.contains(ip("10.9.9.9")));
    }

    #[test]
    fn refuses_bad_entries_saying_what_to_write() {
        for bad in [
            "",
            "localhost",
            "10.0.0.0/33",
            "10.0.0/8",
            "1.2.3.4:80",
            "fe80::1%eth0",
        ] {
            let e = TrustedProxies::parse_entry(bad).unwrap_err();
            assert!(e.contains("10.0.0.0/8"), "{bad:?}: {e}");
        }
        let e = TrustedProxies::parse_entry("10.1.2.3/8").unwrap_err();
        assert!(
            e.contains("\"10.0.0.0/8\"") && e.contains("\"10.1.2.3/32\""),
            "{e}"
        );
    }

    #[test]
    fn trusted_peer_with_a_chain_gives_the_first_untrusted_from_the_right() {
        let t = trusted(&["10.0.0.0/8"]);
        // The client forged 198.51.100.9; the LB (10.0.0.3) saw 203.0.113.7.
        let h = xff(&["198.51.100.9, 203.0.113.7, 10.0.0.3"]);
        assert_eq!(t.client_ip(ip("10.0.0.5"), &h), ip("203.0.113.7"));
        // Several header lines are one list.
        let h = xff(&["198.51.100.9", "203.0.113.7", "10.0.0.3,10.0.0.4"]);
        assert_eq!(t.client_ip(ip("10.0.0.5"), &h), ip("203.0.113.7"));
        // Ports and brackets are tolerated.
        let h = xff(&["203.0.113.7:4711"]);
        assert_eq!(t.client_ip(ip("10.0.0.5"), &h), ip("203.0.113.7"));
        // Only trusted hops: the leftmost is the client.
        let h = xff(&["10.0.0.9, 10.0.0.3"]);
        assert_eq!(t.client_ip(ip("10.0.0.5"), &h), ip("10.0.0.9"));
        // No header: the peer.
        assert_eq!(
            t.client_ip(ip("10.0.0.5"), &HeaderMap::new()),
            ip("10.0.0.5")
        );
    }

    #[test]
    fn untrusted_peer_cannot_forge_its_address() {
        let t = trusted(&["10.0.0.0/8"]);
        let h = xff(&["1.2.3.4"]);
        assert_eq!(t.client_ip(ip("203.0.113.50"), &h), ip("203.0.113.50"));
        // Nothing trusted: the header is never read.
        let none = TrustedProxies::default();
        assert_eq!(none.client_ip(ip("10.0.0.5"), &h), ip("10.0.0.5"));
    }

    #[test]
    fn malformed_entries_fall_back_to_the_peer() {
        let t = trusted(&["10.0.0.0/8"]);
        let peer = ip("10.0.0.5");
        for bad in [
            "",
            "nonsense",
            "203.0.113.7, unknown",
            "203.0.113.7,,10.0.0.3",
        ] {
            assert_eq!(t.client_ip(peer, &xff(&[bad])), peer, "{bad:?}");
        }
        let mut h = HeaderMap::new();
        h.insert(
            X_FORWARDED_FOR,
            HeaderValue::from_bytes(b"203.0.113.\xff").unwrap(),
        );
        assert_eq!(t.client_ip(peer, &h), peer);
        // Garbage left of the client (written by the client) is not read.
        let h = xff(&["nonsense, 203.0.113.7"]);
        assert_eq!(t.client_ip(peer, &h), ip("203.0.113.7"));
    }

    #[test]
    fn ipv6_peers_chains_and_mapped_addresses() {
        let t = trusted(&["::1", "fd00::/8", "10.0.0.0/8"]);
        let h = xff(&["2001:db8::7, fd00::2"]);
        assert_eq!(t.client_ip(ip("::1"), &h), ip("2001:db8::7"));
        let h = xff(&["[2001:db8::8]:443"]);
        assert_eq!(t.client_ip(ip("fd00::9"), &h), ip("2001:db8::8"));
        let h = xff(&["[2001:db8::9]"]);
        assert_eq!(t.client_ip(ip("::1"), &h), ip("2001:db8::9"));
        // A dual-stack listener reports IPv4 peers as mapped addresses.
        let h = xff(&["::ffff:203.0.113.7"]);
        assert_eq!(t.client_ip(ip("::ffff:10.0.0.5"), &h), ip("203.0.113.7"));
        assert_eq!(
            t.client_ip(ip("::ffff:198.51.100.1"), &h),
            ip("198.51.100.1")
        );
        // Untrusted IPv6 peer with a forged header.
        assert_eq!(t.client_ip(ip("2001:db8::66"), &h), ip("2001:db8::66"));
    }
}
