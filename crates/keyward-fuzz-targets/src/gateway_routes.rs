//! The gateway route table: `[[gateway.routes]]` entries parsed from the config file, then
//! `RouteTable::find`. Input: TOML route entries, a line `%%`, then `METHOD /path` probes.

use axum::http::Method;
use keyward_server::config::Config;
use keyward_server::gateway::routes::{RouteMatch, RouteTable};

/// A minimal valid `[gateway]` section the fuzzed routes are appended to.
const SECTION: &str = "[gateway]\nlisten = \"127.0.0.1:8443\"\nupstream = \"http://127.0.0.1:9000\"\n";

pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (routes, probes) = text.split_once("\n%%\n").unwrap_or((&text, ""));
    let Ok(config) = Config::from_toml(&format!("{SECTION}{routes}")) else { return };
    let table = &config.gateway.as_ref().expect("the section is there").routes;
    check_table(table);
    for probe in probes.lines() {
        let (method, path) = probe.split_once(' ').unwrap_or(("GET", probe));
        let Ok(method) = Method::from_bytes(method.as_bytes()) else { continue };
        if let RouteMatch::Found { route } = table.find(&method, path) {
            assert_eq!(route.method, method);
            // The path has the pattern's shape, and its literal segments byte for byte.
            let pattern: Vec<&str> = segments(&route.pattern);
            let given: Vec<&str> = segments(path);
            assert_eq!(pattern.len(), given.len(), "{path:?} matched {}", route.pattern);
            for (want, got) in pattern.iter().zip(&given) {
                if want.starts_with('{') {
                    assert!(!got.is_empty() && *got != "." && *got != "..", "{path:?} matched {}", route.pattern);
                } else {
                    assert_eq!(want, got, "{path:?} matched {}", route.pattern);
                }
            }
        }
    }
}

/// Every route is found for a path built from its own pattern, and for no other method there.
pub(crate) fn check_table(table: &RouteTable) {
    for route in table.routes() {
        let path: String = if route.pattern == "/" {
            "/".to_owned()
        } else {
            segments(&route.pattern)
                .into_iter()
                .map(|segment| if segment.starts_with('{') { "/p1".to_owned() } else { format!("/{segment}") })
                .collect()
        };
        match table.find(&route.method, &path) {
            RouteMatch::Found { route: found } => {
                assert_eq!((&found.method, &found.pattern), (&route.method, &route.pattern), "{path:?}");
            }
            other => panic!("{} {} not found at {path:?}: {other:?}", route.method, route.pattern),
        }
    }
}

fn segments(path: &str) -> Vec<&str> {
    match path.strip_prefix('/') {
        Some("") | None => Vec::new(),
        Some(rest) => rest.split('/').collect(),
    }
}
