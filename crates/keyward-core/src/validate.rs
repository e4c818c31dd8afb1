//! Turning caller input into key settings, one rule per field, every failure a [`FieldError`]
//! naming the field. Input arrives as JSON values so a wrong type gets the field's own message.

use std::collections::BTreeSet;

use ipnet::IpNet;
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::key::Environment;
use crate::record::{Channels, KeyPatch, KeySettings};

/// A problem with one field, shown next to it in the API error and the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

pub const ALL_SCOPES: &str = "*";
/// The built-in scope catalogue of SPEC §2, used when the config file sets none.
pub const DEFAULT_SCOPES: [&str; 9] = [
    "messages:send",
    "templates:read",
    "templates:write",
    "contacts:read",
    "contacts:write",
    "blacklist:read",
    "blacklist:write",
    "library_assets:read",
    "library_assets:write",
];
pub const RESERVED_SCOPES: [&str; 3] = ["keys:read", "keys:write", ALL_SCOPES];
pub const RATE_LIMIT_MESSAGE: &str = "Rate limit must be an integer between 1 and 1000";
pub const EXPIRY_MESSAGE: &str = "Expiry must be in the future";
pub const NO_SCOPE_MESSAGE: &str = "Select at least one scope.";
const MAX_EXTERNAL_ID: usize = 256;
const MAX_META_BYTES: usize = 4096;
const MAX_LIST_ENTRIES: usize = 1000;

/// The operator's scope catalogue, always including `keys:read`, `keys:write` and `*`.
#[derive(Debug, Clone)]
pub struct Catalogue {
    scopes: Vec<String>,
    defaults: Vec<String>,
}

impl Catalogue {
    pub fn new(configured: &[String], defaults: &[String]) -> Result<Self, String> {
        let mut scopes: Vec<String> = Vec::new();
        for scope in configured.iter().map(String::as_str).chain(RESERVED_SCOPES) {
            if !scope_shaped(scope) {
                return Err(format!("scope {scope:?} must match [a-z0-9_.:-]{{1,64}} or be \"*\""));
            }
            if !scopes.iter().any(|s| s == scope) {
                scopes.push(scope.to_owned());
            }
        }
        if defaults.is_empty() {
            return Err("default_scopes must not be empty".to_owned());
        }
        if let Some(unknown) = defaults.iter().find(|d| !scopes.contains(d)) {
            return Err(format!("default scope {unknown:?} is not in the scope catalogue"));
        }
        Ok(Self { scopes, defaults: defaults.to_vec() })
    }

    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    pub fn defaults(&self) -> &[String] {
        &self.defaults
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

fn scope_shaped(scope: &str) -> bool {
    scope == ALL_SCOPES
        || (!scope.is_empty()
            && scope.len() <= 64
            && scope.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.:-".contains(&b)))
}

/// What the rules need to know beyond the input: the catalogue, the org's numbers and channels, now.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    pub catalogue: &'a Catalogue,
    pub max_name_length: usize,
    pub org_phone_numbers: &'a [String],
    pub org_channels: &'a [String],
    pub now: OffsetDateTime,
}

/// Raw create input, one JSON value per field (absent = `None`).
#[derive(Debug, Clone, Default)]
pub struct NewKeyInput {
    pub name: Option<Value>,
    pub scopes: Option<Value>,
    pub hmac_required: Option<Value>,
    pub rate_limit: Option<Value>,
    pub expires_at: Option<Value>,
    pub ip_allowlist: Option<Value>,
    pub phone_allowlist: Option<Value>,
    pub channels: Option<Value>,
    pub environment: Option<Value>,
    pub external_id: Option<Value>,
    pub meta: Option<Value>,
}

/// Raw patch input: `None` = absent, `Some(Value::Null)` = clear.
#[derive(Debug, Clone, Default)]
pub struct KeyPatchInput {
    pub name: Option<Value>,
    pub scopes: Option<Value>,
    pub channels: Option<Value>,
    pub ip_allowlist: Option<Value>,
    pub phone_allowlist: Option<Value>,
    pub rate_limit: Option<Value>,
    pub expires_at: Option<Value>,
    pub meta: Option<Value>,
}

/// Collects field errors while each field is checked, so the caller sees all of them at once.
struct Collector(Vec<FieldError>);

impl Collector {
    fn take<T>(&mut self, field: &str, result: Result<T, String>) -> Option<T> {
        result.map_err(|message| self.0.push(FieldError::new(field, message))).ok()
    }

    fn take_list<T>(&mut self, result: Result<T, Vec<FieldError>>) -> Option<T> {
        result.map_err(|errors| self.0.extend(errors)).ok()
    }
}

pub fn new_key(input: &NewKeyInput, rules: &Rules<'_>) -> Result<KeySettings, Vec<FieldError>> {
    let mut errors = Collector(Vec::new());
    let name = errors.take("name", name(input.name.as_ref(), rules.max_name_length));
    let scopes = match &input.scopes {
        None | Some(Value::Null) => Some(rules.catalogue.defaults().to_vec()),
        Some(value) => errors.take("scopes", scopes(value, rules.catalogue)),
    };
    let hmac_required = errors.take("hmac_required", optional_bool(input.hmac_required.as_ref()));
    let rate_limit = errors.take("rate_limit", rate_limit(input.rate_limit.as_ref().unwrap_or(&Value::Null)));
    let expires_at =
        errors.take("expires_at", expires_at(input.expires_at.as_ref().unwrap_or(&Value::Null), rules.now));
    let ip_allowlist = errors.take_list(ip_allowlist(input.ip_allowlist.as_ref()));
    let phone_allowlist = errors.take_list(phone_allowlist(input.phone_allowlist.as_ref(), rules.org_phone_numbers));
    let channels = errors.take_list(channels(input.channels.as_ref(), rules.org_channels));
    let environment = errors.take("environment", environment(input.environment.as_ref()));
    let external_id = errors.take("external_id", external_id(input.external_id.as_ref()));
    let meta = errors.take("meta", meta(input.meta.as_ref().unwrap_or(&Value::Null)));
    match (
        name,
        scopes,
        hmac_required,
        rate_limit,
        expires_at,
        ip_allowlist,
        phone_allowlist,
        channels,
        environment,
        external_id,
        meta,
    ) {
        (
            Some(name),
            Some(scopes),
            Some(hmac_required),
            Some(rate_limit),
            Some(expires_at),
            Some(ip_allowlist),
            Some(phone_allowlist),
            Some(channels),
            Some(environment),
            Some(external_id),
            Some(meta),
        ) if errors.0.is_empty() => Ok(KeySettings {
            name,
            scopes,
            hmac_required,
            rate_limit,
            expires_at,
            ip_allowlist,
            phone_allowlist,
            channels,
            environment,
            external_id,
            meta,
        }),
        _ => Err(errors.0),
    }
}

pub fn key_patch(input: &KeyPatchInput, rules: &Rules<'_>) -> Result<KeyPatch, Vec<FieldError>> {
    let mut errors = Collector(Vec::new());
    let patch = KeyPatch {
        name: input.name.as_ref().and_then(|v| errors.take("name", name(Some(v), rules.max_name_length))),
        scopes: input.scopes.as_ref().and_then(|v| errors.take("scopes", scopes(v, rules.catalogue))),
        channels: input.channels.as_ref().and_then(|v| errors.take_list(channels(Some(v), rules.org_channels))),
        ip_allowlist: input.ip_allowlist.as_ref().and_then(|v| errors.take_list(ip_allowlist(Some(v)))),
        phone_allowlist: input
            .phone_allowlist
            .as_ref()
            .and_then(|v| errors.take_list(phone_allowlist(Some(v), rules.org_phone_numbers))),
        rate_limit: input.rate_limit.as_ref().and_then(|v| errors.take("rate_limit", rate_limit(v))),
        expires_at: input.expires_at.as_ref().and_then(|v| errors.take("expires_at", expires_at(v, rules.now))),
        meta: input.meta.as_ref().and_then(|v| errors.take("meta", meta(v))),
    };
    if errors.0.is_empty() {
        Ok(patch)
    } else {
        Err(errors.0)
    }
}

/// 1–`max` characters after trimming, none that mislead ([`display_name_problem`]). Returns the
/// trimmed name.
pub fn name(value: Option<&Value>, max: usize) -> Result<String, String> {
    let text = match value {
        None | Some(Value::Null) => return Err("Key name is required".to_owned()),
        Some(Value::String(text)) => text.trim(),
        Some(_) => return Err("Key name must be a string".to_owned()),
    };
    if text.is_empty() {
        return Err("Key name is required".to_owned());
    }
    if text.chars().count() > max {
        return Err(format!("Key name must be at most {max} characters"));
    }
    if let Some(problem) = display_name_problem(text) {
        return Err(format!("Key name {problem}"));
    }
    Ok(text.to_owned())
}

/// Why a name shown to people (a key's, an org's, a channel's) would mislead, if it would: a
/// control character, a bidirectional embedding, override or isolate (which reorder the text
/// around them, in the console and the audit log alike), or no visible character at all. Returns
/// the end of a sentence ("must …") for the caller to start with the field's name.
pub fn display_name_problem(text: &str) -> Option<&'static str> {
    if text.chars().any(char::is_control) {
        return Some("must not contain control characters");
    }
    if text.chars().any(is_bidi_control) {
        return Some("must not contain bidirectional control characters (U+202A–U+202E, U+2066–U+2069)");
    }
    if text.chars().all(is_invisible) {
        return Some("must contain at least one visible character");
    }
    None
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// White space, Unicode's default-ignorable code points (zero-width spaces and joiners, variation
/// selectors, fillers, tags: DerivedCoreProperties.txt) and the blank braille pattern: characters
/// that draw nothing. A name may contain some (an emoji sequence needs a zero-width joiner), but
/// not only those.
fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'..='\u{1160}'
                | '\u{17B4}'..='\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{2800}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF0}'..='\u{FFF8}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E0FFF}'
        )
}

/// A non-empty list of catalogue scopes, deduplicated, in catalogue order.
pub fn scopes(value: &Value, catalogue: &Catalogue) -> Result<Vec<String>, String> {
    let Value::Array(items) = value else {
        return Err("Scopes must be a list of scope names".to_owned());
    };
    if items.is_empty() {
        return Err(NO_SCOPE_MESSAGE.to_owned());
    }
    let mut wanted = BTreeSet::new();
    for item in items {
        let Value::String(scope) = item else {
            return Err("Scopes must be a list of scope names".to_owned());
        };
        if !catalogue.contains(scope) {
            return Err(format!("Unknown scope: {}", truncate_for_message(scope)));
        }
        wanted.insert(scope.as_str());
    }
    Ok(catalogue.scopes().iter().filter(|s| wanted.contains(s.as_str())).cloned().collect())
}

fn optional_bool(value: Option<&Value>) -> Result<bool, String> {
    match value {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(flag)) => Ok(*flag),
        Some(_) => Err("Must be true or false".to_owned()),
    }
}

/// An integer 1–1000, or null for the platform default.
pub fn rate_limit(value: &Value) -> Result<Option<u32>, String> {
    match value {
        Value::Null => Ok(None),
        Value::Number(n) => whole_number(n)
            .filter(|n| (1..=1000).contains(n))
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| RATE_LIMIT_MESSAGE.to_owned()),
        _ => Err(RATE_LIMIT_MESSAGE.to_owned()),
    }
}

/// A non-negative whole number however it is written, `304` or `304.0`: both are JSON Schema
/// `integer`s, and generated clients send either.
pub fn whole_number(n: &serde_json::Number) -> Option<u64> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53: every whole f64 below it is exact
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "whole, 0 ≤ f < 2^53")]
    n.as_u64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && (0.0..EXACT).contains(f)).map(|f| f as u64))
}

/// An RFC 3339 timestamp strictly after `now`, or null for never.
pub fn expires_at(value: &Value, now: OffsetDateTime) -> Result<Option<OffsetDateTime>, String> {
    match value {
        Value::Null => Ok(None),
        Value::String(text) => {
            let at = OffsetDateTime::parse(text, &Rfc3339)
                .map(crate::record::to_micros)
                .map_err(|_| "Expiry must be an RFC 3339 timestamp, such as 2030-01-31T12:00:00Z".to_owned())?;
            if at <= now {
                Err(EXPIRY_MESSAGE.to_owned())
            } else if at > now + time::Duration::days(36_500) {
                // Far-future dates overflow stored nanosecond times; "never" is null.
                Err("Expiry must be within 100 years; leave it empty for a key that never expires".to_owned())
            } else {
                Ok(Some(at.to_offset(time::UtcOffset::UTC)))
            }
        }
        _ => Err("Expiry must be an RFC 3339 timestamp, such as 2030-01-31T12:00:00Z".to_owned()),
    }
}

fn string_list<'v>(field: &str, value: Option<&'v Value>) -> Result<Vec<&'v str>, Vec<FieldError>> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) if items.len() > MAX_LIST_ENTRIES => {
            Err(vec![FieldError::new(field, format!("At most {MAX_LIST_ENTRIES} entries"))])
        }
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_str().ok_or_else(|| vec![FieldError::new(format!("{field}[{i}]"), "Must be a string")])
            })
            .collect(),
        Some(_) => Err(vec![FieldError::new(field, "Must be a list of strings")]),
    }
}

/// IPv4 addresses and CIDRs, IPv6 addresses and CIDRs. Each bad entry is named with its index.
pub fn ip_allowlist(value: Option<&Value>) -> Result<Vec<IpNet>, Vec<FieldError>> {
    let entries = string_list("ip_allowlist", value)?;
    let mut nets = Vec::with_capacity(entries.len());
    let mut errors = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        match parse_ip_entry(entry) {
            Some(net) if !nets.contains(&net) => nets.push(net),
            Some(_) => {}
            None => errors.push(FieldError::new(
                format!("ip_allowlist[{i}]"),
                format!("Invalid IP address or CIDR range: {}", truncate_for_message(entry)),
            )),
        }
    }
    if errors.is_empty() {
        Ok(nets)
    } else {
        Err(errors)
    }
}

/// `203.0.113.7`, `10.0.0.0/8`, `2001:db8::1` or `2001:db8::/32`. Host bits in a CIDR are an
/// error (`10.0.0.1/8` is almost always a typo), not silently truncated.
pub fn parse_ip_entry(entry: &str) -> Option<IpNet> {
    if entry.contains('/') {
        let net: IpNet = entry.parse().ok()?;
        if net.trunc() != net {
            return None;
        }
        // An IPv4-mapped range (`::ffff:10.0.0.0/104`) would match no one, since mapped peers are
        // compared as IPv4: store it as the IPv4 range it names.
        Some(match net {
            IpNet::V6(v6) if v6.prefix_len() >= 96 => v6
                .addr()
                .to_ipv4_mapped()
                .map_or(net, |v4| ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(net, IpNet::V4)),
            _ => net,
        })
    } else {
        let addr: std::net::IpAddr = entry.parse().ok()?;
        // Clients arriving as IPv4-mapped IPv6 are compared as IPv4, so store such entries as IPv4.
        let addr = match addr {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, std::net::IpAddr::V4),
            v4 @ std::net::IpAddr::V4(_) => v4,
        };
        Some(IpNet::from(addr))
    }
}

/// Registered E.164 numbers of the org, each normalized first.
pub fn phone_allowlist(value: Option<&Value>, registered: &[String]) -> Result<Vec<String>, Vec<FieldError>> {
    let entries = string_list("phone_allowlist", value)?;
    let mut numbers: Vec<String> = Vec::with_capacity(entries.len());
    let mut errors = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let field = format!("phone_allowlist[{i}]");
        match crate::phone::normalize_e164(entry) {
            None => errors.push(FieldError::new(field, format!("Not a phone number: {}", truncate_for_message(entry)))),
            Some(number) if !registered.contains(&number) => errors.push(FieldError::new(
                field,
                format!("{number} is not a registered phone number of this organization"),
            )),
            Some(number) if !numbers.contains(&number) => numbers.push(number),
            Some(_) => {}
        }
    }
    if errors.is_empty() {
        Ok(numbers)
    } else {
        Err(errors)
    }
}

/// `"all"` (also when absent) or a non-empty list of the org's channel slugs.
pub fn channels(value: Option<&Value>, org_channels: &[String]) -> Result<Channels, Vec<FieldError>> {
    match value {
        None | Some(Value::Null) => return Ok(Channels::All),
        Some(Value::String(text)) if text == "all" => return Ok(Channels::All),
        Some(Value::Array(items)) if items.is_empty() => {
            return Err(vec![FieldError::new(
                "channels",
                "Channels must be \"all\" or a non-empty list of channel slugs",
            )]);
        }
        Some(Value::Array(_)) => {}
        Some(_) => {
            return Err(vec![FieldError::new(
                "channels",
                "Channels must be \"all\" or a non-empty list of channel slugs",
            )]);
        }
    }
    let entries = string_list("channels", value)?;
    let mut slugs: Vec<String> = Vec::with_capacity(entries.len());
    let mut errors = Vec::new();
    for (i, slug) in entries.iter().enumerate() {
        if !org_channels.iter().any(|c| c == slug) {
            errors.push(FieldError::new(
                format!("channels[{i}]"),
                format!("Unknown channel: {}", truncate_for_message(slug)),
            ));
        } else if !slugs.iter().any(|s| s == slug) {
            slugs.push((*slug).to_owned());
        }
    }
    if errors.is_empty() {
        Ok(Channels::Only(slugs))
    } else {
        Err(errors)
    }
}

/// `[a-z0-9-]{1,64}`.
pub fn channel_slug(slug: &str) -> Result<(), String> {
    if !slug.is_empty()
        && slug.len() <= 64
        && slug.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Ok(())
    } else {
        Err("Slug must be 1–64 characters of a-z, 0-9 and -".to_owned())
    }
}

fn environment(value: Option<&Value>) -> Result<Environment, String> {
    match value {
        None | Some(Value::Null) => Ok(Environment::Live),
        Some(Value::String(text)) => {
            Environment::parse(text).ok_or_else(|| "Environment must be \"live\" or \"test\"".to_owned())
        }
        Some(_) => Err("Environment must be \"live\" or \"test\"".to_owned()),
    }
}

fn external_id(value: Option<&Value>) -> Result<Option<String>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.chars().count() <= MAX_EXTERNAL_ID => Ok(Some(text.clone())),
        Some(_) => Err(format!("External id must be a string of at most {MAX_EXTERNAL_ID} characters")),
    }
}

fn meta(value: &Value) -> Result<Option<Map<String, Value>>, String> {
    match value {
        Value::Null => Ok(None),
        Value::Object(map) if value.to_string().len() <= MAX_META_BYTES => Ok(Some(map.clone())),
        Value::Object(_) => Err("Meta must be at most 4 KiB of JSON".to_owned()),
        _ => Err("Meta must be a JSON object".to_owned()),
    }
}

/// Echoes user input in messages, cut short so a 1 MiB value cannot bloat the error.
fn truncate_for_message(text: &str) -> String {
    let cut: String = text.chars().take(64).collect();
    if cut.len() < text.len() {
        format!("{cut}…")
    } else {
        cut
    }
}

#[cfg(test)]
mod tests;
