use axum::http::HeaderMap;
use ipnet::IpNet;
use std::net::IpAddr;

/// The visitor's address as `plumb_core::net::client_ip` tells it from the request's headers.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let forwarded = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok());
    plumb_core::net::client_ip(peer, forwarded, trusted)
}
