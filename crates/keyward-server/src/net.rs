//! The caller's address: the connection's peer, or — only when that peer is a trusted proxy —
//! the rightmost `X-Forwarded-For` entry that is not itself a trusted proxy.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use ipnet::IpNet;
use keyward_core::policy::net_contains;

pub fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap, trusted_proxies: &[IpNet]) -> Option<IpAddr> {
    let is_trusted = |ip: IpAddr| trusted_proxies.iter().any(|net| net_contains(net, ip));
    let peer = peer?;
    if !is_trusted(peer) {
        return Some(peer);
    }
    let mut client = peer;
    for value in headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(text) = value.to_str() else { return Some(client) };
        for entry in text.rsplit(',') {
            match entry.trim().parse::<IpAddr>() {
                Ok(ip) if is_trusted(ip) => client = ip,
                Ok(ip) => return Some(ip),
                // A garbled entry ends the trusted chain: use what we know.
                Err(_) => return Some(client),
            }
        }
    }
    Some(client)
}

/// The TCP peer, when the server was started with connect info (not in `Router::oneshot` tests).
pub fn peer_ip(parts: &Parts) -> Option<IpAddr> {
    parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip())
}
