use axum::http::HeaderMap;
use ipnet::IpNet;
use std::net::IpAddr;

/// The visitor's address: the socket peer, unless the peer is a trusted proxy, in which case the
/// rightmost `X-Forwarded-For` address that is not itself a trusted proxy. Headers from any other
/// peer are ignored, so a spoofed header changes nothing.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> =
        headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn h(xff: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert("x-forwarded-for", xff.parse().unwrap());
        m
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy: IpAddr = "10.0.0.5".parse().unwrap();
        let stranger: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(client_ip(stranger, &h("203.0.113.1"), &trusted), stranger);
        assert_eq!(client_ip(proxy, &h("203.0.113.1"), &trusted), "203.0.113.1".parse::<IpAddr>().unwrap());
        // The client may prepend anything; the rightmost untrusted hop wins.
        assert_eq!(
            client_ip(proxy, &h("1.1.1.1, 203.0.113.1, 10.0.0.9"), &trusted),
            "203.0.113.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(proxy, &h("nonsense"), &trusted), proxy);
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &trusted), proxy);
        let mapped: IpAddr = "::ffff:198.51.100.7".parse().unwrap();
        assert_eq!(client_ip(mapped, &HeaderMap::new(), &trusted), stranger);
    }
}
