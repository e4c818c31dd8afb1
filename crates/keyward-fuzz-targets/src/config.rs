//! The config file: `Config::from_toml` on arbitrary text, and what a parsed config guarantees.

use keyward_core::key::KeyPrefix;
use keyward_server::config::Config;

pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(config) = Config::from_toml(&text) else { return };
    assert!(KeyPrefix::parse(config.key_format.prefix().as_str()).is_ok());
    assert!((1..=1000).contains(&config.default_rate_limit));
    assert!((1..=256).contains(&config.max_name_length));
    assert!((1..=3600).contains(&config.signature_tolerance_seconds));
    assert!((1..=1000).contains(&config.nodes));
    assert!(axum::http::HeaderName::from_bytes(config.signature_header.as_bytes()).is_ok());
    assert!(axum::http::HeaderName::from_bytes(config.timestamp_header.as_bytes()).is_ok());
    for scope in config.catalogue.defaults() {
        assert!(config.catalogue.contains(scope), "default scope {scope:?} is not in the catalogue");
    }
    if let Some(gateway) = &config.gateway {
        assert!(!gateway.routes.is_empty());
        assert!(gateway.max_body_bytes >= 1);
        crate::gateway_routes::check_table(&gateway.routes);
    }
}
