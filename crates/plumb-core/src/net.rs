//! Client addresses: which one to believe behind proxies, and how to key rate limits by them.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv6Addr};

/// The visitor's address: the socket peer, unless the peer is a trusted proxy, in which case the
/// rightmost `X-Forwarded-For` address that is not itself a trusted proxy. `forwarded_for` are
/// the values of every `X-Forwarded-For` header, in order. Headers from any other peer are
/// ignored, so a spoofed header changes nothing.
pub fn client_ip<'a>(peer: IpAddr, forwarded_for: impl Iterator<Item = &'a str>, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = forwarded_for.flat_map(|v| v.split(',')).collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip.to_canonical();
                if !is_trusted(&client) {
                    break;
                }
            }
            // Garbage in the chain: nothing left of it can be believed.
            Err(_) => break,
        }
    }
    client
}

/// The key per-address limits count under: an IPv4 address, or an IPv6 address's /64 — one
/// subscriber's whole network, which any single host may draw addresses from freely.
pub fn limit_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xff(v: &str) -> std::iter::Once<&str> {
        std::iter::once(v)
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy: IpAddr = "10.0.0.5".parse().unwrap();
        let stranger: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(client_ip(stranger, xff("203.0.113.1"), &trusted), stranger);
        assert_eq!(client_ip(proxy, xff("203.0.113.1"), &trusted), "203.0.113.1".parse::<IpAddr>().unwrap());
        // The client may prepend anything; the rightmost untrusted hop wins.
        assert_eq!(
            client_ip(proxy, xff("1.1.1.1, 203.0.113.1, 10.0.0.9"), &trusted),
            "203.0.113.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(proxy, xff("nonsense"), &trusted), proxy);
        assert_eq!(client_ip(proxy, std::iter::empty(), &trusted), proxy);
        let mapped: IpAddr = "::ffff:198.51.100.7".parse().unwrap();
        assert_eq!(client_ip(mapped, std::iter::empty(), &trusted), stranger);
    }

    #[test]
    fn ipv6_addresses_share_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(limit_key(a), limit_key(b));
        assert_eq!(limit_key(a), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        assert_ne!(limit_key(a), limit_key(other));
        let v4: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(limit_key(v4), v4);
        assert_eq!(limit_key("::ffff:203.0.113.9".parse().unwrap()), v4);
    }
}
