//! The client's address, as seen through the reverse proxies the operator trusts.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// Reverse proxies whose `X-Forwarded-For` is believed. None by default: the header is then
/// ignored, since any client can send it.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> TrustedProxies {
        TrustedProxies(nets.into_iter().map(|n| n.trunc()).collect())
    }

    fn trusts(&self, addr: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(&addr))
    }

    /// The address of the client behind `peer`: while the hop in hand is a trusted proxy, the
    /// address it forwarded for (the rightmost `X-Forwarded-For` entry not yet used) is the next
    /// hop. Entries left of the first untrusted hop were written by the client and are ignored;
    /// so is anything after an entry that is not an address.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trusts(client) {
            return client;
        }
        // Later header lines were appended by nearer proxies: walk them, and each line's
        // entries, from the right.
        for line in headers.get_all("x-forwarded-for").iter().rev() {
            let Ok(line) = line.to_str() else { return client };
            for hop in line.rsplit(',') {
                let Some(addr) = parse_hop(hop.trim()) else { return client };
                client = addr;
                if !self.trusts(client) {
                    return client;
                }
            }
        }
        client
    }
}

/// An `X-Forwarded-For` entry: an address, with a port as some proxies add.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let addr = hop.parse::<IpAddr>().ok().or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))?;
    Some(addr.to_canonical())
}

/// Parses a trusted proxy: a network (`10.0.0.0/8`, `fd00::/8`) or one address.
pub fn parse_trusted_proxy(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("`{s}` is neither an IP address nor a network in CIDR notation"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::new(list.iter().map(|s| parse_trusted_proxy(s).unwrap()).collect())
    }

    fn client(trusted: &TrustedProxies, peer: &str, forwarded: &[&str]) -> String {
        let mut headers = HeaderMap::new();
        for f in forwarded {
            headers.append("x-forwarded-for", f.parse().unwrap());
        }
        trusted.client(peer.parse().unwrap(), &headers).to_string()
    }

    #[test]
    fn the_header_is_ignored_unless_the_peer_is_trusted() {
        assert_eq!(client(&TrustedProxies::default(), "192.0.2.1", &["198.51.100.7"]), "192.0.2.1");
        assert_eq!(client(&proxies(&["10.0.0.0/8"]), "192.0.2.1", &["198.51.100.7"]), "192.0.2.1");
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let trusted = proxies(&["10.0.0.0/8", "127.0.0.1"]);
        assert_eq!(client(&trusted, "127.0.0.1", &["198.51.100.7"]), "198.51.100.7");
        // The client wrote the first entry itself; the proxies appended the rest.
        assert_eq!(client(&trusted, "127.0.0.1", &["203.0.113.9, 198.51.100.7, 10.1.2.3"]), "198.51.100.7");
        assert_eq!(client(&trusted, "127.0.0.1", &["203.0.113.9, 198.51.100.7", "10.1.2.3"]), "198.51.100.7");
        assert_eq!(client(&trusted, "::ffff:127.0.0.1", &["198.51.100.7:4711"]), "198.51.100.7");
        assert_eq!(client(&trusted, "127.0.0.1", &["[2001:db8::1]:443"]), "2001:db8::1");
    }

    #[test]
    fn garbage_or_an_all_trusted_chain_stops_at_the_last_good_hop() {
        let trusted = proxies(&["10.0.0.0/8", "127.0.0.1"]);
        assert_eq!(client(&trusted, "127.0.0.1", &["unknown, 10.1.2.3"]), "10.1.2.3");
        assert_eq!(client(&trusted, "127.0.0.1", &["10.9.9.9, 10.1.2.3"]), "10.9.9.9");
        assert_eq!(client(&trusted, "127.0.0.1", &[]), "127.0.0.1");
    }

    #[test]
    fn proxies_are_networks_or_addresses() {
        assert!(parse_trusted_proxy("10.0.0.0/8").is_ok());
        assert!(parse_trusted_proxy("2001:db8::/32").is_ok());
        assert_eq!(parse_trusted_proxy("192.0.2.1").unwrap().to_string(), "192.0.2.1/32");
        assert!(parse_trusted_proxy("proxy.example").is_err());
    }
}
