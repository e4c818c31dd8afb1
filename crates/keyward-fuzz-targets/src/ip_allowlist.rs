//! IP allowlist entries (`ip_allowlist`, `trusted_proxies`): addresses and CIDR ranges.

use std::net::IpAddr;

use keyward_core::policy::net_contains;
use keyward_core::record::display_net;
use keyward_core::validate::{ip_allowlist, parse_ip_entry};
use serde_json::Value;

pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let entries: Vec<&str> = text.lines().collect();
    for entry in &entries {
        let Some(net) = parse_ip_entry(entry) else { continue };
        assert_eq!(net.trunc(), net, "{entry:?}: host bits must be refused, not kept");
        // The entry as the API shows it back parses to the same range.
        let shown = display_net(&net);
        assert_eq!(parse_ip_entry(&shown), Some(net), "{entry:?} shown as {shown:?}");
        // A range matches its own first and last address, except IPv4-mapped ones inside an
        // IPv6 range (`::/80`): mapped peers are IPv4 clients and are compared as IPv4.
        for (which, ip) in [("first", net.network()), ("last", net.broadcast())] {
            let mapped = matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some());
            assert!(mapped || net_contains(&net, ip), "{entry:?}: its {which} address does not match");
        }
    }
    let list = Value::Array(entries.iter().map(|e| Value::from(*e)).collect());
    match ip_allowlist(Some(&list)) {
        Ok(nets) => assert!(nets.len() <= entries.len()),
        Err(errors) => {
            assert!(!errors.is_empty());
            // Each bad entry is named by its index; a list too long is named as a whole.
            for error in errors {
                assert!(
                    error.field.starts_with("ip_allowlist[") || (error.field == "ip_allowlist" && entries.len() > 1000),
                    "{}: {}",
                    error.field,
                    error.message
                );
            }
        }
    }
}
