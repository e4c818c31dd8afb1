//! The gateway's configuration (the `[gateway]` section of SPEC §3) and its route table (§6):
//! method + path pattern → the scopes a key needs and where the body holds the sender and the
//! channels. It neither proxies, verifies nor refuses: the caller denies whatever
//! [`RouteTable::find`] does not find. Start at [`GatewayConfig`] (built by `config.rs`) and `find`.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use axum::http::uri::{Authority, Scheme};
use axum::http::{Method, Uri};
use keyward_core::validate::{Catalogue, ALL_SCOPES};
use serde::Deserialize;
use toml::Spanned;

use crate::config::line_at;

/// The largest `max_body_bytes`: 64 MiB.
const MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;
/// The longest path pattern, in segments (it bounds `find`'s recursion).
const MAX_SEGMENTS: usize = 32;

/// The validated `[gateway]` section.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    pub upstream: Upstream,
    /// The largest request body buffered for a check (413 past it).
    pub max_body_bytes: usize,
    /// Upstream connect: 502 when refused, 504 past this.
    pub connect_timeout: Duration,
    /// Upstream answer headers: 504 past this.
    pub response_timeout: Duration,
    pub routes: RouteTable,
}

/// Where the gateway forwards: `http://host[:port][/base path]`. Only plain HTTP for now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Always [`Scheme::HTTP`].
    pub scheme: Scheme,
    pub authority: Authority,
    /// `""`, or a path like `"/api"` without a trailing slash, put before each request's path.
    pub base_path: String,
}

/// One entry of the route table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub method: Method,
    /// The pattern as written, e.g. `/v1/templates/{id}`.
    pub pattern: String,
    /// Every one of them is required (at least one; never `*`).
    pub scopes: Vec<String>,
    /// Where the request body (JSON) holds the sender's phone number.
    pub sender: Option<JsonPointer>,
    /// Where the request body (JSON) holds the list of channel slugs.
    pub channels: Option<JsonPointer>,
    segments: Vec<Segment>,
}

/// A JSON pointer (RFC 6901): `""` (the whole document) or `/a/b~1c`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPointer(String);

/// What [`RouteTable::find`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteMatch<'t> {
    Found {
        route: &'t Route,
    },
    /// Known path, other method.
    OtherMethod,
    NotFound,
}

/// The routes, in the order written, and a segment trie over them for [`RouteTable::find`].
/// Never empty, and no two routes with one method can match the same path.
#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<Route>,
    root: Node,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Matched byte for byte, without percent-decoding.
    Literal(Box<str>),
    /// `{name}`: any one non-empty segment except a dot segment.
    Param(Box<str>),
}

/// A trie node: the segments that may follow, and the routes whose pattern ends here.
#[derive(Debug, Clone, Default)]
struct Node {
    /// Sorted by text, for a binary search.
    literals: Vec<(Box<str>, Node)>,
    param: Option<Box<Node>>,
    /// Indices into `RouteTable::routes`, at most one per method.
    routes: Vec<usize>,
}

impl Route {
    /// Whether a check needs the request body: the route names a sender or channels pointer.
    pub fn needs_body(&self) -> bool {
        self.sender.is_some() || self.channels.is_some()
    }
}

impl RouteTable {
    /// The route for `method` and `path`, the request's path as sent: no query string (the
    /// caller cuts it off at the first `?`), no percent-decoding, no normalisation. A path with
    /// an empty segment (`//`, a trailing `/`) or a dot segment in a parameter's place is not found.
    /// Allocates nothing and scans no list: one binary search per path segment in a trie (and a
    /// second try through a `{param}` where a literal sibling led nowhere).
    pub fn find(&self, method: &Method, path: &str) -> RouteMatch<'_> {
        self.find_counting(method, path, &mut 0)
    }

    /// How many routes the table holds (never 0 for a parsed table).
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The routes in the order the config file lists them.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// `find`, counting the trie nodes it visits (the tests bound that count).
    fn find_counting(&self, method: &Method, path: &str, visits: &mut usize) -> RouteMatch<'_> {
        match Segments::of(path) {
            Some(segments) => self.walk(&self.root, segments, method, visits),
            None => RouteMatch::NotFound,
        }
    }

    fn walk<'t>(&'t self, node: &'t Node, path: Segments<'_>, method: &Method, visits: &mut usize) -> RouteMatch<'t> {
        *visits += 1;
        let Some((segment, rest)) = path.split() else {
            if node.routes.is_empty() {
                return RouteMatch::NotFound;
            }
            return node
                .routes
                .iter()
                .map(|&index| &self.routes[index])
                .find(|route| route.method == *method)
                .map_or(RouteMatch::OtherMethod, |route| RouteMatch::Found { route });
        };
        if segment.is_empty() {
            return RouteMatch::NotFound;
        }
        let mut best = RouteMatch::NotFound;
        if let Ok(index) = node.literals.binary_search_by(|(text, _)| (**text).cmp(segment)) {
            match self.walk(&node.literals[index].1, rest, method, visits) {
                found @ RouteMatch::Found { .. } => return found,
                RouteMatch::OtherMethod => best = RouteMatch::OtherMethod,
                RouteMatch::NotFound => {}
            }
        }
        if let Some(param) = &node.param {
            if !is_dot_segment(segment) {
                match self.walk(param, rest, method, visits) {
                    found @ RouteMatch::Found { .. } => return found,
                    RouteMatch::OtherMethod => best = RouteMatch::OtherMethod,
                    RouteMatch::NotFound => {}
                }
            }
        }
        best
    }

    fn insert(&mut self, route: Route) {
        let index = self.routes.len();
        let mut node = &mut self.root;
        for segment in &route.segments {
            node = match segment {
                Segment::Param(_) => node.param.get_or_insert_with(Box::default),
                Segment::Literal(text) => {
                    let at = match node.literals.binary_search_by(|(other, _)| other.cmp(text)) {
                        Ok(at) => at,
                        Err(at) => {
                            node.literals.insert(at, (text.clone(), Node::default()));
                            at
                        }
                    };
                    &mut node.literals[at].1
                }
            };
        }
        node.routes.push(index);
        self.routes.push(route);
    }
}

/// What is left of a path, split one segment at a time without allocating. `Copy`, so trying a
/// literal and then a parameter at the same depth costs nothing.
#[derive(Clone, Copy)]
struct Segments<'p>(Option<&'p str>);

impl<'p> Segments<'p> {
    /// `None` unless the path starts with `/`; `/` itself has no segments.
    fn of(path: &'p str) -> Option<Self> {
        let rest = path.strip_prefix('/')?;
        Some(Self((!rest.is_empty()).then_some(rest)))
    }

    fn split(self) -> Option<(&'p str, Self)> {
        let rest = self.0?;
        Some(match rest.split_once('/') {
            Some((first, tail)) => (first, Self(Some(tail))),
            None => (rest, Self(None)),
        })
    }
}

/// `.` or `..`, also percent-encoded (`%2e`): an upstream may resolve it, so no parameter matches it.
fn is_dot_segment(segment: &str) -> bool {
    let mut rest = segment.as_bytes();
    let mut dots = 0;
    while !rest.is_empty() {
        rest = match rest {
            [b'.', tail @ ..] | [b'%', b'2', b'e' | b'E', tail @ ..] => tail,
            _ => return false,
        };
        dots += 1;
    }
    (1..=2).contains(&dots)
}

impl JsonPointer {
    /// `""` or a string starting with `/`, where `~` appears only as `~0` or `~1`.
    pub fn parse(text: &str) -> Result<Self, String> {
        if !text.is_empty() && !text.starts_with('/') {
            return Err(format!("JSON pointer {text:?} must be \"\" (the whole body) or start with '/'"));
        }
        let mut rest = text.as_bytes();
        while let Some(at) = rest.iter().position(|&b| b == b'~') {
            match rest.get(at + 1) {
                Some(b'0' | b'1') => rest = &rest[at + 2..],
                _ => {
                    return Err(format!(
                        "JSON pointer {text:?}: '~' must be written \"~0\" ('~' itself) or \"~1\" ('/')"
                    ))
                }
            }
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value the pointer names in `doc`, if there is one.
    pub fn find<'v>(&self, doc: &'v serde_json::Value) -> Option<&'v serde_json::Value> {
        doc.pointer(&self.0)
    }
}

impl fmt::Display for JsonPointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Upstream {
    pub fn parse(text: &str) -> Result<Self, String> {
        let not_a_url = || format!("{text:?} is not a URL like http://127.0.0.1:9000");
        if text.contains('#') {
            return Err(format!("{text:?}: an upstream URL has no fragment"));
        }
        let uri: Uri = text.parse().map_err(|_| not_a_url())?;
        match uri.scheme() {
            Some(scheme) if *scheme == Scheme::HTTP => {}
            Some(scheme) if *scheme == Scheme::HTTPS => {
                return Err(format!("{text:?}: keyward cannot serve an https upstream yet"));
            }
            Some(_) => return Err(format!("{text:?}: an upstream URL starts with http://")),
            None => return Err(not_a_url()),
        }
        let Some(authority) = uri.authority().cloned() else {
            return Err(not_a_url());
        };
        if authority.as_str().contains('@') {
            return Err(format!("{text:?}: an upstream URL carries no user name or password"));
        }
        if authority.host().is_empty() {
            return Err(format!("{text:?}: an upstream URL names a host"));
        }
        if authority.port_u16() == Some(0) {
            return Err(format!("{text:?}: port 0 is not a port to connect to"));
        }
        if uri.query().is_some() {
            return Err(format!("{text:?}: an upstream URL has no query string"));
        }
        let path = uri.path();
        let base_path = path.strip_suffix('/').unwrap_or(path);
        if base_path.contains("//") {
            return Err(format!("{text:?}: the upstream's base path has an empty segment (\"//\")"));
        }
        Ok(Self { scheme: Scheme::HTTP, authority, base_path: base_path.to_owned() })
    }

    /// The port to connect to: the URL's, or 80.
    pub fn port(&self) -> u16 {
        self.authority.port_u16().unwrap_or(80)
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.base_path)
    }
}

/// The `[gateway]` section as written; [`GatewayConfig::from_raw`] checks it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGateway {
    listen: Option<Spanned<String>>,
    upstream: Option<Spanned<String>>,
    max_body_bytes: Option<Spanned<i64>>,
    connect_timeout_ms: Option<Spanned<i64>>,
    response_timeout_ms: Option<Spanned<i64>>,
    #[serde(default)]
    routes: Vec<Spanned<RawRoute>>,
}

/// One `[[gateway.routes]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    method: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
    scopes: Option<Spanned<Vec<String>>>,
    sender: Option<Spanned<String>>,
    channels: Option<Spanned<String>>,
}

/// A problem found at a byte offset of the config file; rendered with its line by `from_raw`.
struct Problem {
    at: usize,
    message: String,
}

impl Problem {
    fn new(at: usize, message: impl Into<String>) -> Self {
        Self { at, message: message.into() }
    }
}

impl GatewayConfig {
    /// Checks the section against the scope catalogue. `text` is the whole config file, to turn
    /// the spans of the raw values into line numbers: the error reads `line N: reason`.
    pub(crate) fn from_raw(raw: Spanned<RawGateway>, catalogue: &Catalogue, text: &str) -> Result<Self, String> {
        let at = raw.span().start;
        Self::check(raw.into_inner(), at, catalogue, text)
            .map_err(|problem| format!("line {}: {}", line_at(text, problem.at), problem.message))
    }

    fn check(raw: RawGateway, section: usize, catalogue: &Catalogue, text: &str) -> Result<Self, Problem> {
        let Some(listen) = raw.listen else {
            return Err(Problem::new(section, "gateway: listen is required (e.g. listen = \"127.0.0.1:8443\")"));
        };
        let listen = listen.get_ref().parse::<SocketAddr>().map_err(|_| {
            Problem::new(
                listen.span().start,
                format!("gateway listen: {:?} is not an IP address and port like 127.0.0.1:8443", listen.get_ref()),
            )
        })?;
        let Some(upstream) = raw.upstream else {
            return Err(Problem::new(
                section,
                "gateway: upstream is required (e.g. upstream = \"http://127.0.0.1:9000\")",
            ));
        };
        let upstream = Upstream::parse(upstream.get_ref())
            .map_err(|reason| Problem::new(upstream.span().start, format!("gateway upstream {reason}")))?;
        let max_body_bytes = bounded(raw.max_body_bytes, "max_body_bytes", 1_048_576, MAX_BODY_BYTES)?;
        let connect_timeout = bounded(raw.connect_timeout_ms, "connect_timeout_ms", 1000, 60_000)?;
        let response_timeout = bounded(raw.response_timeout_ms, "response_timeout_ms", 30_000, 600_000)?;
        if raw.routes.is_empty() {
            return Err(Problem::new(
                section,
                "gateway: the route table is empty: add [[gateway.routes]] entries (every other request is refused)",
            ));
        }
        let mut routes = RouteTable { routes: Vec::with_capacity(raw.routes.len()), root: Node::default() };
        let mut lines = Vec::with_capacity(raw.routes.len());
        for entry in raw.routes {
            let at = entry.span().start;
            let route = Route::check(entry.into_inner(), at, catalogue)?;
            let earlier =
                routes.routes.iter().zip(&lines).find(|(earlier, _)| {
                    earlier.method == route.method && overlaps(&earlier.segments, &route.segments)
                });
            if let Some((earlier, earlier_line)) = earlier {
                return Err(Problem::new(
                    at,
                    format!(
                        "gateway route {} {}: overlaps {} {} (line {earlier_line}): both match {}",
                        route.method,
                        route.pattern,
                        earlier.method,
                        earlier.pattern,
                        witness(&earlier.segments, &route.segments)
                    ),
                ));
            }
            lines.push(line_at(text, at));
            routes.insert(route);
        }
        Ok(Self {
            listen,
            upstream,
            max_body_bytes: usize::try_from(max_body_bytes).unwrap_or(usize::MAX),
            connect_timeout: Duration::from_millis(connect_timeout),
            response_timeout: Duration::from_millis(response_timeout),
            routes,
        })
    }
}

/// An optional integer setting with its default and range `1..=max`.
fn bounded(value: Option<Spanned<i64>>, name: &str, default: u64, max: u64) -> Result<u64, Problem> {
    let Some(value) = value else {
        return Ok(default);
    };
    u64::try_from(*value.get_ref())
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| Problem::new(value.span().start, format!("gateway {name} must be between 1 and {max}")))
}

impl Route {
    fn check(raw: RawRoute, at: usize, catalogue: &Catalogue) -> Result<Self, Problem> {
        let (Some(method), Some(path)) = (raw.method, raw.path) else {
            return Err(Problem::new(at, "gateway route: method and path are required"));
        };
        let written = format!("gateway route {} {}", method.get_ref(), path.get_ref());
        let method_at = method.span().start;
        let parsed_method = Method::from_bytes(method.get_ref().to_ascii_uppercase().as_bytes()).map_err(|_| {
            Problem::new(method_at, format!("{written}: method {:?} is not an HTTP method token", method.get_ref()))
        })?;
        if parsed_method == Method::CONNECT {
            return Err(Problem::new(method_at, format!("{written}: CONNECT has no path to route")));
        }
        let label = format!("gateway route {parsed_method} {}", path.get_ref());
        let segments = parse_pattern(path.get_ref())
            .map_err(|reason| Problem::new(path.span().start, format!("{label}: {reason}")))?;
        let Some(scopes) = raw.scopes.filter(|scopes| !scopes.get_ref().is_empty()) else {
            return Err(Problem::new(at, format!("{label}: needs at least one scope (scopes = [\"…\"])")));
        };
        let scopes_at = scopes.span().start;
        let mut required: Vec<String> = Vec::with_capacity(scopes.get_ref().len());
        for scope in scopes.into_inner() {
            if scope == ALL_SCOPES {
                return Err(Problem::new(
                    scopes_at,
                    format!("{label}: \"*\" is not a route scope: name the scope the route needs"),
                ));
            }
            if !catalogue.contains(&scope) {
                return Err(Problem::new(scopes_at, format!("{label}: unknown scope {scope:?}")));
            }
            if !required.contains(&scope) {
                required.push(scope);
            }
        }
        let pointer = |value: Option<Spanned<String>>, name: &str| {
            value
                .map(|value| {
                    JsonPointer::parse(value.get_ref())
                        .map_err(|reason| Problem::new(value.span().start, format!("{label}: {name}: {reason}")))
                })
                .transpose()
        };
        let sender = pointer(raw.sender, "sender")?;
        let channels = pointer(raw.channels, "channels")?;
        Ok(Self { method: parsed_method, pattern: path.into_inner(), scopes: required, sender, channels, segments })
    }
}

/// `/`, or `/`-separated segments, each literal text or a whole-segment `{name}`.
fn parse_pattern(pattern: &str) -> Result<Vec<Segment>, String> {
    let Some(rest) = pattern.strip_prefix('/') else {
        return Err("a path pattern starts with '/'".to_owned());
    };
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    if rest.ends_with('/') {
        return Err("a path pattern has no trailing '/' (only \"/\" itself ends with one)".to_owned());
    }
    let mut segments: Vec<Segment> = Vec::new();
    for text in rest.split('/') {
        if text.is_empty() {
            return Err("a path pattern has no empty segment (\"//\")".to_owned());
        }
        if segments.len() == MAX_SEGMENTS {
            return Err(format!("a path pattern has at most {MAX_SEGMENTS} segments"));
        }
        let segment = parse_segment(text)?;
        if let Segment::Param(name) = &segment {
            if segments.contains(&segment) {
                return Err(format!("parameter {{{name}}} appears twice"));
            }
        }
        segments.push(segment);
    }
    Ok(segments)
}

fn parse_segment(text: &str) -> Result<Segment, String> {
    if let Some(name) = text.strip_prefix('{').and_then(|inner| inner.strip_suffix('}')) {
        let mut bytes = name.bytes();
        let shaped = bytes.next().is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
            && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !shaped {
            return Err(format!("parameter {text}: a name matches [a-z_][a-z0-9_]*"));
        }
        return Ok(Segment::Param(name.into()));
    }
    if text.contains(['{', '}']) {
        return Err(format!("segment {text:?}: a parameter is a whole segment, {{name}}"));
    }
    if text.contains('*') {
        return Err(format!(
            "segment {text:?}: there are no wildcards: list each path, or use {{name}} for one segment"
        ));
    }
    if text.starts_with(':') {
        return Err(format!("segment {text:?}: a parameter is written {{name}}"));
    }
    if is_dot_segment(text) {
        return Err(format!("segment {text:?}: a dot segment can be resolved away by the upstream"));
    }
    let mut rest = text.as_bytes();
    while let [byte, tail @ ..] = rest {
        rest = match (byte, tail) {
            (b'%', [high, low, after @ ..]) if high.is_ascii_hexdigit() && low.is_ascii_hexdigit() => after,
            (b'%', _) => return Err(format!("segment {text:?}: '%' starts a percent-encoded byte like %20")),
            (byte, _) if byte.is_ascii_alphanumeric() || b"-._~!$&'()+,;=:@".contains(byte) => tail,
            _ => {
                let shown = text[text.len() - rest.len()..].chars().next().unwrap_or_default();
                return Err(format!("segment {text:?}: {shown:?} cannot appear in a request path as sent"));
            }
        };
    }
    Ok(Segment::Literal(text.into()))
}

/// Whether two patterns can match one path: as many segments, and wherever both are literal, the same text.
fn overlaps(a: &[Segment], b: &[Segment]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|pair| match pair {
            (Segment::Literal(x), Segment::Literal(y)) => x == y,
            _ => true,
        })
}

/// A path that two overlapping patterns both match, for the error message.
fn witness(a: &[Segment], b: &[Segment]) -> String {
    if a.is_empty() {
        return "/".to_owned();
    }
    a.iter()
        .zip(b)
        .map(|pair| match pair {
            (Segment::Literal(text), _) | (_, Segment::Literal(text)) => format!("/{text}"),
            (Segment::Param(_), Segment::Param(_)) => "/1".to_owned(),
        })
        .collect()
}

#[cfg(test)]
mod tests;
