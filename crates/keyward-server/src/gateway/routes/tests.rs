use std::fmt::Write as _;
use std::time::Duration;

use axum::http::Method;
use serde_json::json;

use super::{GatewayConfig, JsonPointer, RouteMatch, RouteTable, Upstream};
use crate::config::{Config, EXAMPLE};

/// Three lines of `[gateway]`, a blank line, then one route at lines 5–8.
const HEAD: &str = r#"[gateway]
listen = "127.0.0.1:8443"
upstream = "http://127.0.0.1:9000"

[[gateway.routes]]
method = "GET"
path = "/v1/templates/{id}"
scopes = ["templates:read"]
"#;

fn gateway(text: &str) -> Result<GatewayConfig, String> {
    let config = Config::from_toml(text).map_err(|e| e.to_string())?;
    config.gateway.ok_or_else(|| "no gateway".to_owned())
}

/// A table of `(method, pattern)` routes, each requiring `messages:send`.
fn table(routes: &[(&str, &str)]) -> RouteTable {
    let mut text = String::from("[gateway]\nlisten = \"127.0.0.1:8443\"\nupstream = \"http://127.0.0.1:9000\"\n");
    for (method, path) in routes {
        write!(text, "[[gateway.routes]]\nmethod = \"{method}\"\npath = \"{path}\"\nscopes = [\"messages:send\"]\n")
            .unwrap();
    }
    gateway(&text).unwrap().routes
}

#[derive(Debug, PartialEq)]
enum Expect {
    /// Found the route with this method and pattern.
    Found(&'static str, &'static str),
    OtherMethod,
    NotFound,
}

fn outcome(found: RouteMatch<'_>) -> Expect {
    match found {
        RouteMatch::Found { route } => {
            let method: &'static str = route.method.as_str().to_owned().leak();
            Expect::Found(method, route.pattern.clone().leak())
        }
        RouteMatch::OtherMethod => Expect::OtherMethod,
        RouteMatch::NotFound => Expect::NotFound,
    }
}

#[test]
fn find_matches_method_and_path_segment_by_segment() {
    use Expect::{Found, NotFound, OtherMethod};
    let routes = table(&[
        ("GET", "/"),
        ("POST", "/v1/messages"),
        ("GET", "/v1/templates/{id}"),
        ("DELETE", "/v1/templates/{id}"),
        ("POST", "/v1/templates/latest"),
        ("GET", "/v1/contacts/{contact_id}/notes/{note_id}"),
        ("GET", "/v1/a%20b"),
        ("GET", "/v1/keys:batch"),
    ]);
    let cases: &[(&str, &str, Expect)] = &[
        ("GET", "/", Found("GET", "/")),
        ("POST", "/", OtherMethod),
        ("POST", "/v1/messages", Found("POST", "/v1/messages")),
        ("GET", "/v1/messages", OtherMethod),
        ("post", "/v1/messages", OtherMethod), // methods are case-sensitive on the wire
        ("POST", "/v1/messages/", NotFound),
        ("POST", "//v1/messages", NotFound),
        ("POST", "/v1//messages", NotFound),
        ("POST", "v1/messages", NotFound),
        ("POST", "", NotFound),
        ("POST", "*", NotFound),
        // find takes the path without its query string: the caller cuts it off.
        ("POST", "/v1/messages?to=1", NotFound),
        ("POST", "/v1/messages/extra", NotFound),
        ("POST", "/V1/messages", NotFound),
        ("GET", "/v1/templates/abc", Found("GET", "/v1/templates/{id}")),
        ("DELETE", "/v1/templates/abc", Found("DELETE", "/v1/templates/{id}")),
        ("GET", "/v1/templates/latest", Found("GET", "/v1/templates/{id}")),
        ("POST", "/v1/templates/latest", Found("POST", "/v1/templates/latest")),
        ("POST", "/v1/templates/abc", OtherMethod),
        ("PUT", "/v1/templates/abc", OtherMethod),
        ("HEAD", "/v1/templates/abc", OtherMethod),
        ("GET", "/v1/templates", NotFound),
        ("GET", "/v1/templates/", NotFound),
        ("GET", "/v1/templates/a/b", NotFound),
        ("GET", "/v1/templates/a%2Fb", Found("GET", "/v1/templates/{id}")), // no decoding
        ("GET", "/v1/templates/...", Found("GET", "/v1/templates/{id}")),
        ("GET", "/v1/templates/.", NotFound),
        ("GET", "/v1/templates/..", NotFound),
        ("GET", "/v1/templates/%2e%2E", NotFound),
        ("GET", "/v1/templates/.%2e", NotFound),
        ("GET", "/v1/contacts/c1/notes/n1", Found("GET", "/v1/contacts/{contact_id}/notes/{note_id}")),
        ("GET", "/v1/contacts/c1/notes", NotFound),
        ("GET", "/v1/contacts//notes/n1", NotFound),
        ("GET", "/v1/a%20b", Found("GET", "/v1/a%20b")),
        ("GET", "/v1/a b", NotFound),
        ("GET", "/v1/a%20B", NotFound),
        ("GET", "/v1/keys:batch", Found("GET", "/v1/keys:batch")),
    ];
    for (method, path, expected) in cases {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        assert_eq!(outcome(routes.find(&method, path)), *expected, "{method} {path:?}");
    }
    assert_eq!(routes.len(), 8);
    assert!(!routes.is_empty());
    let order: Vec<&str> = routes.routes().iter().map(|route| route.pattern.as_str()).collect();
    assert_eq!(order[..3], ["/", "/v1/messages", "/v1/templates/{id}"], "routes() keeps the file's order");
}

#[test]
fn find_work_grows_with_the_path_not_with_the_table() {
    let mut routes = Vec::new();
    for n in 0..100 {
        routes.push(("GET".to_owned(), format!("/v1/resource{n}/{{id}}")));
        routes.push(("PATCH".to_owned(), format!("/v1/resource{n}/{{id}}")));
        routes.push(("POST".to_owned(), format!("/v1/resource{n}")));
        routes.push(("GET".to_owned(), format!("/v1/resource{n}/{{id}}/items/{{item}}")));
    }
    let pairs: Vec<(&str, &str)> = routes.iter().map(|(m, p)| (m.as_str(), p.as_str())).collect();
    let table = table(&pairs);
    assert_eq!(table.len(), 400);
    for (method, pattern) in &routes {
        let path = pattern.replace("{id}", "k_1").replace("{item}", "i_2");
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let mut visits = 0;
        let found = table.find_counting(&method, &path, &mut visits);
        assert_eq!(outcome(found), Expect::Found(method.as_str().to_owned().leak(), pattern.clone().leak()));
        let segments = path.matches('/').count();
        assert!(visits <= segments + 1, "{method} {path}: {visits} nodes visited");
    }
    let mut visits = 0;
    let missed = table.find_counting(&Method::DELETE, "/v1/resource99/k_1/items/i_2/more", &mut visits);
    assert_eq!(missed, RouteMatch::NotFound);
    assert!(visits <= 6, "{visits}");
}

#[test]
fn find_tries_a_literal_then_a_parameter_at_each_depth() {
    // Different methods may overlap; a path reaching the wrong leaf first must still find the right one.
    let routes = table(&[("GET", "/a/{x}/c"), ("POST", "/a/b/{y}"), ("PUT", "/a/b/c")]);
    let cases = [
        ("GET", "/a/b/c", Expect::Found("GET", "/a/{x}/c")),
        ("POST", "/a/b/c", Expect::Found("POST", "/a/b/{y}")),
        ("PUT", "/a/b/c", Expect::Found("PUT", "/a/b/c")),
        ("DELETE", "/a/b/c", Expect::OtherMethod),
        ("PUT", "/a/z/c", Expect::OtherMethod),
        ("GET", "/a/b/z", Expect::OtherMethod),
        ("GET", "/a/z/z", Expect::NotFound),
    ];
    for (method, path, expected) in cases {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        assert_eq!(outcome(routes.find(&method, path)), expected, "{method} {path}");
    }
}

/// A second route after [`HEAD`]: `[[gateway.routes]]` on line 10, then one field a line (11…).
fn second_route(fields: &[&str]) -> String {
    let mut text = format!("{HEAD}\n[[gateway.routes]]\n");
    for field in fields {
        text.push_str(field);
        text.push('\n');
    }
    text
}

#[test]
fn overlapping_routes_with_one_method_are_refused() {
    let cases: &[(&str, &str, &str, &str, Option<&str>)] = &[
        // (first method, first pattern, second method, second pattern, path both match)
        ("GET", "/v1/templates/{id}", "GET", "/v1/templates/latest", Some("/v1/templates/latest")),
        ("GET", "/v1/templates/latest", "GET", "/v1/templates/{id}", Some("/v1/templates/latest")),
        ("GET", "/v1/{a}/b", "GET", "/v1/a/{b}", Some("/v1/a/b")),
        ("GET", "/v1/{a}", "GET", "/v1/{b}", Some("/v1/1")),
        ("GET", "/v1/x", "GET", "/v1/x", Some("/v1/x")),
        ("GET", "/", "get", "/", Some("/")),
        ("GET", "/v1/a/{x}", "GET", "/v1/b/{x}", None),
        ("GET", "/v1/x", "POST", "/v1/x", None),
        ("GET", "/v1/{a}", "GET", "/v1/{a}/{b}", None),
        ("GET", "/", "GET", "/{a}", None),
        ("GET", "/v1/templates/{id}", "POST", "/v1/templates/latest", None),
    ];
    for (first_method, first, second_method, second, both) in cases {
        let text = format!(
            "[gateway]\nlisten = \"127.0.0.1:8443\"\nupstream = \"http://127.0.0.1:9000\"\n\n\
             [[gateway.routes]]\nmethod = \"{first_method}\"\npath = \"{first}\"\nscopes = [\"templates:read\"]\n\n\
             [[gateway.routes]]\nmethod = \"{second_method}\"\npath = \"{second}\"\nscopes = [\"templates:read\"]\n"
        );
        let result = gateway(&text);
        match both {
            None => assert!(result.is_ok(), "{first} / {second}: {result:?}"),
            Some(path) => {
                let error = result.unwrap_err();
                let method = second_method.to_ascii_uppercase();
                let expected = format!(
                    "line 10: gateway route {method} {second}: overlaps {first_method} {first} (line 5): both match {path}"
                );
                assert_eq!(error, expected);
            }
        }
    }
}

#[test]
fn each_bad_route_names_its_line() {
    let long_path = "/s".repeat(33);
    let long_path_field = format!("path = \"{long_path}\"");
    let ok = ["method = \"POST\"", "path = \"/v1/messages\"", "scopes = [\"messages:send\"]"];
    let with = |index: usize, field: &'static str| {
        let mut fields = ok.to_vec();
        fields[index] = field;
        fields
    };
    let cases: Vec<(Vec<&str>, usize, &str)> = vec![
        (
            with(0, "method = \"P OST\""),
            11,
            "gateway route P OST /v1/messages: method \"P OST\" is not an HTTP method token",
        ),
        (with(0, "method = \"\""), 11, "is not an HTTP method token"),
        (with(0, "method = \"GET/\""), 11, "is not an HTTP method token"),
        (with(0, "method = \"connect\""), 11, "CONNECT has no path to route"),
        (with(1, "path = \"v1/messages\""), 12, "gateway route POST v1/messages: a path pattern starts with '/'"),
        (with(1, "path = \"\""), 12, "starts with '/'"),
        (with(1, "path = \"/v1/messages/\""), 12, "no trailing '/'"),
        (with(1, "path = \"/v1//messages\""), 12, "no empty segment"),
        (with(1, "path = \"/v1/{ID}\""), 12, "parameter {ID}: a name matches [a-z_][a-z0-9_]*"),
        (with(1, "path = \"/v1/{}\""), 12, "a name matches"),
        (with(1, "path = \"/v1/{9a}\""), 12, "a name matches"),
        (with(1, "path = \"/v1/x{id}\""), 12, "a parameter is a whole segment"),
        (with(1, "path = \"/v1/{id\""), 12, "a parameter is a whole segment"),
        (with(1, "path = \"/v1/*\""), 12, "no wildcards"),
        (with(1, "path = \"/v1/**\""), 12, "no wildcards"),
        (with(1, "path = \"/v1/:id\""), 12, "a parameter is written {name}"),
        (with(1, "path = \"/v1/../admin\""), 12, "dot segment"),
        (with(1, "path = \"/v1/%2E\""), 12, "dot segment"),
        (with(1, "path = \"/v1/a b\""), 12, "' ' cannot appear in a request path"),
        (with(1, "path = \"/v1/a?b\""), 12, "'?' cannot appear"),
        (with(1, "path = \"/v1/é\""), 12, "'é' cannot appear"),
        (with(1, "path = \"/v1/a%2\""), 12, "percent-encoded"),
        (with(1, "path = \"/v1/a%zz\""), 12, "percent-encoded"),
        (with(1, "path = \"/v1/{a}/x/{a}\""), 12, "parameter {a} appears twice"),
        (with(1, long_path_field.clone().leak()), 12, "at most 32 segments"),
        (
            with(2, "scopes = [\"messages:sendd\"]"),
            13,
            "gateway route POST /v1/messages: unknown scope \"messages:sendd\"",
        ),
        (with(2, "scopes = [\"messages:send\", \"nope\"]"), 13, "unknown scope \"nope\""),
        (with(2, "scopes = [\"*\"]"), 13, "\"*\" is not a route scope"),
        (with(2, "scopes = []"), 10, "gateway route POST /v1/messages: needs at least one scope"),
        (with(2, "sender = \"/from\""), 10, "needs at least one scope"),
        (
            vec!["path = \"/v1/messages\"", "scopes = [\"messages:send\"]"],
            10,
            "gateway route: method and path are required",
        ),
        (vec!["method = \"POST\""], 10, "gateway route: method and path are required"),
        (
            vec![ok[0], ok[1], ok[2], "sender = \"from\""],
            14,
            "sender: JSON pointer \"from\" must be \"\" (the whole body) or start with '/'",
        ),
        (vec![ok[0], ok[1], ok[2], "sender = \"/a~2\""], 14, "sender: JSON pointer \"/a~2\": '~' must be written"),
        (vec![ok[0], ok[1], ok[2], "channels = \"/target~\""], 14, "channels: JSON pointer \"/target~\": '~'"),
        (vec![ok[0], ok[1], ok[2], "scope = \"messages:send\""], 14, "unknown field `scope`"),
        (vec![ok[0], ok[1], ok[2], "sender = 5"], 14, "invalid type"),
        (
            vec!["method = \"GET\"", "path = \"/v1/templates/latest\"", "scopes = [\"templates:read\"]"],
            10,
            "gateway route GET /v1/templates/latest: overlaps GET /v1/templates/{id} (line 5)",
        ),
    ];
    for (fields, line, mentions) in cases {
        let text = second_route(&fields);
        let error = gateway(&text).unwrap_err();
        let prefix = format!("line {line}: ");
        assert!(error.starts_with(&prefix), "{fields:?}: expected {prefix:?} → {error}");
        assert!(error.contains(mentions), "{fields:?}: expected {mentions:?} → {error}");
        assert_eq!(error.lines().count(), 1, "{error}");
    }
}

#[test]
fn each_bad_gateway_setting_names_its_line() {
    let with = |replace: &str, by: &str| HEAD.replacen(replace, by, 1);
    let listen = "listen = \"127.0.0.1:8443\"";
    let upstream = "upstream = \"http://127.0.0.1:9000\"";
    let setting = |line: &str| HEAD.replacen(upstream, &format!("{upstream}\n{line}"), 1);
    let cases: Vec<(String, usize, &str)> = vec![
        (with(listen, "listen = \"localhost\""), 2, "gateway listen: \"localhost\" is not an IP address and port"),
        (with(listen, "listen = \"127.0.0.1\""), 2, "is not an IP address and port"),
        (with(listen, "listen = 8443"), 2, "invalid type"),
        (with(&format!("{listen}\n"), ""), 1, "gateway: listen is required"),
        (with(upstream, "upstream = \"https://127.0.0.1:9000\""), 3, "keyward cannot serve an https upstream yet"),
        (with(upstream, "upstream = \"ftp://127.0.0.1:9000\""), 3, "an upstream URL starts with http://"),
        (with(upstream, "upstream = \"127.0.0.1:9000\""), 3, "is not a URL like http://127.0.0.1:9000"),
        (with(upstream, "upstream = \"http://127.0.0.1:9000/api?x=1\""), 3, "no query string"),
        (with(upstream, "upstream = \"http://127.0.0.1:9000/api#top\""), 3, "no fragment"),
        (with(upstream, "upstream = \"http://user:pw@127.0.0.1:9000\""), 3, "no user name or password"),
        (with(upstream, "upstream = \"http://127.0.0.1:0\""), 3, "port 0"),
        (with(upstream, "upstream = \"http://127.0.0.1:9000//api\""), 3, "empty segment"),
        (with(upstream, "upstream = \"not a url\""), 3, "is not a URL"),
        (with(&format!("{upstream}\n"), ""), 1, "gateway: upstream is required"),
        (setting("max_body_bytes = 0"), 4, "gateway max_body_bytes must be between 1 and 67108864"),
        (setting("max_body_bytes = 67108865"), 4, "gateway max_body_bytes must be between 1 and 67108864"),
        (setting("max_body_bytes = -1"), 4, "gateway max_body_bytes must be between"),
        (setting("connect_timeout_ms = 0"), 4, "gateway connect_timeout_ms must be between 1 and 60000"),
        (setting("connect_timeout_ms = 60001"), 4, "gateway connect_timeout_ms must be between 1 and 60000"),
        (setting("response_timeout_ms = 0"), 4, "gateway response_timeout_ms must be between 1 and 600000"),
        (setting("response_timeout_ms = 600001"), 4, "gateway response_timeout_ms must be between 1 and 600000"),
        (setting("response_timeout_ms = \"30s\""), 4, "invalid type"),
        (setting("upstream_timeout_ms = 5"), 4, "unknown field `upstream_timeout_ms`"),
        (format!("# comment\n\n{}", &HEAD[..HEAD.find("\n[[").unwrap()]), 3, "gateway: the route table is empty"),
        (format!("nodes = 2\n{}", with(listen, "")), 2, "gateway: listen is required"),
    ];
    for (text, line, mentions) in cases {
        let error = gateway(&text).unwrap_err();
        let prefix = format!("line {line}: ");
        assert!(error.starts_with(&prefix), "{text}\nexpected {prefix:?} → {error}");
        assert!(error.contains(mentions), "{text}\nexpected {mentions:?} → {error}");
        assert_eq!(error.lines().count(), 1, "{error}");
    }
}

#[test]
fn upstream_is_plain_http_with_an_optional_base_path() {
    let cases = [
        ("http://127.0.0.1:9000", "127.0.0.1:9000", 9000, ""),
        ("http://127.0.0.1:9000/", "127.0.0.1:9000", 9000, ""),
        ("http://api.internal", "api.internal", 80, ""),
        ("HTTP://api.internal:8080/api", "api.internal:8080", 8080, "/api"),
        ("http://[::1]:9000/api/v2/", "[::1]:9000", 9000, "/api/v2"),
    ];
    for (text, authority, port, base_path) in cases {
        let upstream = Upstream::parse(text).unwrap();
        assert_eq!(upstream.scheme, axum::http::uri::Scheme::HTTP, "{text}");
        assert_eq!(upstream.authority.as_str(), authority, "{text}");
        assert_eq!(upstream.port(), port, "{text}");
        assert_eq!(upstream.base_path, base_path, "{text}");
        assert_eq!(upstream.to_string(), format!("http://{authority}{base_path}"));
    }
}

#[test]
fn json_pointers_follow_rfc_6901() {
    let doc = json!({"from": "+14155550100", "a~b/c": 1, "target": {"channels": ["marketing"]}, "": 2});
    let cases = [
        ("", Some(doc.clone())),
        ("/from", Some(json!("+14155550100"))),
        ("/a~0b~1c", Some(json!(1))),
        ("/target/channels", Some(json!(["marketing"]))),
        ("/target/channels/0", Some(json!("marketing"))),
        ("/target/channels/01", None),
        ("/", Some(json!(2))),
        ("/missing", None),
        ("/from/0", None),
    ];
    for (text, expected) in cases {
        let pointer = JsonPointer::parse(text).unwrap();
        assert_eq!(pointer.as_str(), text);
        assert_eq!(pointer.to_string(), text);
        assert_eq!(pointer.find(&doc).cloned(), expected, "{text:?}");
    }
    for bad in ["from", "~0", "/~", "/a~2", "/a~~0", "#/from"] {
        assert!(JsonPointer::parse(bad).is_err(), "{bad:?}");
    }
}

/// SPEC §3's example config, less `shutdown_drain_seconds`, which `Config` does not read (yet).
const SPEC_EXAMPLE: &str = r#"
key_prefix = "sflo"                 # keys look like sflo_live_…
default_rate_limit = 80             # requests/second when a key sets none
max_name_length = 64
scopes = ["messages:send", "templates:read", "templates:write"]   # the catalogue (keys:read, keys:write, * are always there)
default_scopes = ["messages:send"]
signature_header = "X-SigFollow-Signature"
timestamp_header = "X-SigFollow-Timestamp"
signature_tolerance_seconds = 300
trusted_proxies = ["10.0.0.0/8"]    # only these peers may set X-Forwarded-For (default: none)
nodes = 3                           # how many nodes share the database (local rate-limit fallback when Redis is down)
cache_max_staleness_seconds = 2     # a node that cannot confirm its change feed for longer stops trusting cached keys
replay_fallback = "refuse"          # Redis down: "refuse" signed requests (503) or check replays "local"ly

[gateway]                           # optional: see §6
listen = "127.0.0.1:8443"
upstream = "http://127.0.0.1:9000"
max_body_bytes = 1048576            # largest body buffered for a check (413 past it); others stream
connect_timeout_ms = 1000           # upstream connect: 502 when refused, 504 past this
response_timeout_ms = 30000         # upstream answer headers: 504 past this

[[gateway.routes]]
method = "POST"
path = "/v1/messages"
scopes = ["messages:send"]
sender = "/from"                    # JSON pointer into the request body
channels = "/target/channels"

[[gateway.routes]]
method = "GET"
path = "/v1/templates/{id}"
scopes = ["templates:read"]
"#;

#[test]
fn the_spec_example_with_a_gateway_parses() {
    let config = Config::from_toml(SPEC_EXAMPLE).unwrap();
    assert_eq!(config.nodes, 3, "the rest of the file still applies");
    let gateway = config.gateway.unwrap();
    assert_eq!(gateway.listen, "127.0.0.1:8443".parse().unwrap());
    assert_eq!(gateway.upstream, Upstream::parse("http://127.0.0.1:9000").unwrap());
    assert_eq!(gateway.max_body_bytes, 1_048_576);
    assert_eq!(gateway.connect_timeout, Duration::from_secs(1));
    assert_eq!(gateway.response_timeout, Duration::from_secs(30));
    assert_eq!(gateway.routes.len(), 2);

    let RouteMatch::Found { route: send } = gateway.routes.find(&Method::POST, "/v1/messages") else {
        panic!("POST /v1/messages is routed");
    };
    assert_eq!(send.scopes, ["messages:send"]);
    assert_eq!(send.sender.as_ref().map(JsonPointer::as_str), Some("/from"));
    assert_eq!(send.channels.as_ref().map(JsonPointer::as_str), Some("/target/channels"));
    assert!(send.needs_body());

    let RouteMatch::Found { route: read } = gateway.routes.find(&Method::GET, "/v1/templates/tpl_1") else {
        panic!("GET /v1/templates/{{id}} is routed");
    };
    assert_eq!(read.pattern, "/v1/templates/{id}");
    assert_eq!((read.sender.as_ref(), read.channels.as_ref()), (None, None));
    assert!(!read.needs_body());
    assert_eq!(gateway.routes.find(&Method::GET, "/v1/messages"), RouteMatch::OtherMethod);
    assert_eq!(gateway.routes.find(&Method::GET, "/v1/contacts"), RouteMatch::NotFound);
}

#[test]
fn settings_default_methods_are_upper_cased_and_scopes_deduplicated() {
    let text = "[gateway]\nlisten = \"0.0.0.0:0\"\nupstream = \"http://10.0.0.1/api/\"\n\
                [[gateway.routes]]\nmethod = \"post\"\npath = \"/\"\n\
                scopes = [\"templates:read\", \"keys:read\", \"templates:read\"]\nsender = \"\"\n";
    let defaults = gateway(text).unwrap();
    assert_eq!(defaults.max_body_bytes, 1_048_576);
    assert_eq!(defaults.connect_timeout, Duration::from_secs(1));
    assert_eq!(defaults.response_timeout, Duration::from_secs(30));
    assert_eq!(defaults.upstream.base_path, "/api");
    let route = &defaults.routes.routes()[0];
    assert_eq!(route.method, Method::POST);
    assert_eq!(route.scopes, ["templates:read", "keys:read"]);
    assert!(route.needs_body(), "an empty pointer (the whole body) still needs the body");

    let bounds = "[gateway]\nlisten = \"[::1]:8443\"\nupstream = \"http://127.0.0.1:9000\"\n\
                  max_body_bytes = 67108864\nconnect_timeout_ms = 1\nresponse_timeout_ms = 600000\n\
                  routes = [{ method = \"GET\", path = \"/v1/x\", scopes = [\"templates:read\"] }]\n";
    let widest = gateway(bounds).unwrap();
    assert_eq!(widest.max_body_bytes, 64 * 1024 * 1024);
    assert_eq!(widest.connect_timeout, Duration::from_millis(1));
    assert_eq!(widest.response_timeout, Duration::from_secs(600));
}

#[test]
fn route_scopes_are_checked_against_the_configured_catalogue() {
    let text = format!("scopes = [\"sms.send\"]\ndefault_scopes = [\"sms.send\"]\n{HEAD}");
    let error = gateway(&text).unwrap_err();
    assert_eq!(error, "line 10: gateway route GET /v1/templates/{id}: unknown scope \"templates:read\"");
    let text = text.replace("templates:read", "sms.send");
    assert!(gateway(&text).is_ok());
}

#[test]
fn a_config_without_a_gateway_section_has_none() {
    assert!(Config::default().gateway.is_none());
    assert!(Config::from_toml("nodes = 2").unwrap().gateway.is_none());
}

#[test]
fn the_example_config_parses_without_a_gateway_and_its_commented_gateway_parses_too() {
    let config = Config::from_toml(EXAMPLE).unwrap();
    assert!(config.gateway.is_none(), "the example's [gateway] is commented out");

    let start = EXAMPLE.find("# [gateway]").unwrap();
    let mut text = EXAMPLE[..start].to_owned();
    for line in EXAMPLE[start..].lines() {
        let line = line.strip_prefix('#').unwrap_or_else(|| panic!("{line:?} is commented out"));
        text.push_str(line.strip_prefix(' ').unwrap_or(line));
        text.push('\n');
    }
    let gateway = Config::from_toml(&text).unwrap().gateway.unwrap();
    assert_eq!(gateway.routes.len(), 2);
    assert_eq!(gateway.upstream.to_string(), "http://127.0.0.1:9000");
}

#[test]
fn a_bad_route_table_is_one_line_naming_the_file_and_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyward.toml");
    let text = SPEC_EXAMPLE.replace("scopes = [\"messages:send\"]\nsender", "scopes = [\"messages:sendd\"]\nsender");
    std::fs::write(&path, text).unwrap();
    let error = Config::from_file(&path).unwrap_err().to_string();
    assert_eq!(
        error,
        format!("{}: line 25: gateway route POST /v1/messages: unknown scope \"messages:sendd\"", path.display())
    );
}
