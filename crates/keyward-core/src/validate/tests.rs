use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use serde_json::json;
use time::macros::datetime;

use super::*;
use crate::policy::net_contains;
use crate::record::{channels_json, ip_json, time_json};

const NOW: OffsetDateTime = datetime!(2025-06-01 12:00 UTC);

fn catalogue() -> Catalogue {
    let configured: Vec<String> = DEFAULT_SCOPES.map(str::to_owned).to_vec();
    Catalogue::new(&configured, &["messages:send".to_owned()]).unwrap()
}

fn org_numbers() -> Vec<String> {
    vec!["+14155550100".to_owned(), "+442071838750".to_owned()]
}

fn org_channels() -> Vec<String> {
    vec!["marketing".to_owned(), "alerts".to_owned(), "otp".to_owned()]
}

/// Runs `f` with the rules every row shares: the SPEC's default catalogue, two registered
/// numbers, three channels, and `NOW`.
fn with_rules<T>(f: impl FnOnce(&Rules<'_>) -> T) -> T {
    let catalogue = catalogue();
    let numbers = org_numbers();
    let channels = org_channels();
    f(&Rules {
        catalogue: &catalogue,
        max_name_length: 64,
        org_phone_numbers: &numbers,
        org_channels: &channels,
        now: NOW,
    })
}

fn new_key_input(body: &Value) -> NewKeyInput {
    let field = |name: &str| body.get(name).cloned();
    NewKeyInput {
        name: field("name"),
        scopes: field("scopes"),
        hmac_required: field("hmac_required"),
        rate_limit: field("rate_limit"),
        expires_at: field("expires_at"),
        ip_allowlist: field("ip_allowlist"),
        phone_allowlist: field("phone_allowlist"),
        channels: field("channels"),
        environment: field("environment"),
        external_id: field("external_id"),
        meta: field("meta"),
    }
}

fn patch_input(body: &Value) -> KeyPatchInput {
    let field = |name: &str| body.get(name).cloned();
    KeyPatchInput {
        name: field("name"),
        scopes: field("scopes"),
        channels: field("channels"),
        ip_allowlist: field("ip_allowlist"),
        phone_allowlist: field("phone_allowlist"),
        rate_limit: field("rate_limit"),
        expires_at: field("expires_at"),
        meta: field("meta"),
    }
}

/// The settings as the API shows them, so rows can state expectations as JSON.
fn settings_json(settings: &KeySettings) -> Value {
    json!({
        "name": settings.name,
        "scopes": settings.scopes,
        "hmac_required": settings.hmac_required,
        "rate_limit": settings.rate_limit,
        "expires_at": time_json(settings.expires_at),
        "ip_allowlist": ip_json(&settings.ip_allowlist),
        "phone_allowlist": settings.phone_allowlist,
        "channels": channels_json(&settings.channels),
        "environment": settings.environment.as_str(),
        "external_id": settings.external_id,
        "meta": settings.meta.clone().map_or(Value::Null, Value::Object),
    })
}

struct Case {
    rule: &'static str,
    body: Value,
    /// `Ok`: these fields of the settings (others unchecked); `Err`: exactly these field errors.
    expected: Result<Value, Vec<(&'static str, String)>>,
}

fn ok(rule: &'static str, body: Value, fields: Value) -> Case {
    Case { rule, body, expected: Ok(fields) }
}

fn err(rule: &'static str, body: Value, errors: &[(&'static str, &str)]) -> Case {
    Case { rule, body, expected: Err(errors.iter().map(|&(f, m)| (f, m.to_owned())).collect()) }
}

fn check(case: &Case) {
    let result = with_rules(|rules| new_key(&new_key_input(&case.body), rules));
    match (&result, &case.expected) {
        (Ok(settings), Ok(fields)) => {
            let actual = settings_json(settings);
            for (field, expected) in fields.as_object().unwrap() {
                assert_eq!(&actual[field], expected, "{}: field {field}", case.rule);
            }
        }
        (Err(errors), Err(expected)) => {
            let actual: Vec<(&str, &str)> = errors.iter().map(|e| (e.field.as_str(), e.message.as_str())).collect();
            let expected: Vec<(&str, &str)> = expected.iter().map(|(f, m)| (*f, m.as_str())).collect();
            assert_eq!(actual, expected, "{}", case.rule);
        }
        (result, _) => panic!("{}: unexpected {result:?}", case.rule),
    }
}

const FORMAT_MESSAGE: &str = "Expiry must be an RFC 3339 timestamp, such as 2030-01-31T12:00:00Z";
const CHANNELS_MESSAGE: &str = "Channels must be \"all\" or a non-empty list of channel slugs";

#[test]
fn defaults_apply_when_fields_are_absent_or_null() {
    let cases = [
        // Defaults when absent.
        ok(
            "only name is required and every other field takes its default",
            json!({"name": "CI"}),
            json!({
                "name": "CI",
                "scopes": ["messages:send"],
                "hmac_required": false,
                "rate_limit": null,
                "expires_at": null,
                "ip_allowlist": [],
                "phone_allowlist": [],
                "channels": "all",
                "environment": "live",
                "external_id": null,
                "meta": null,
            }),
        ),
        ok(
            "explicit nulls take the defaults too",
            json!({"name": "CI", "scopes": null, "hmac_required": null, "rate_limit": null, "expires_at": null,
                   "ip_allowlist": null, "phone_allowlist": null, "channels": null, "environment": null,
                   "external_id": null, "meta": null}),
            json!({"scopes": ["messages:send"], "hmac_required": false, "rate_limit": null, "channels": "all",
                   "environment": "live"}),
        ),
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn name_follows_the_spec_rule() {
    let cases = [
        // name
        ok("name is trimmed", json!({"name": "  CI deploy \t"}), json!({"name": "CI deploy"})),
        err("name is required", json!({}), &[("name", "Key name is required")]),
        err("name null is missing", json!({"name": null}), &[("name", "Key name is required")]),
        err("name of only spaces is empty after trimming", json!({"name": "   "}), &[("name", "Key name is required")]),
        ok("name of 64 characters is accepted", json!({"name": "n".repeat(64)}), json!({"name": "n".repeat(64)})),
        ok(
            "name length counts characters, not bytes",
            json!({"name": "é".repeat(64)}),
            json!({"name": "é".repeat(64)}),
        ),
        err(
            "name of 65 characters is too long",
            json!({"name": "n".repeat(65)}),
            &[("name", "Key name must be at most 64 characters")],
        ),
        err(
            "name with a control character is refused",
            json!({"name": "CI\u{7}bell"}),
            &[("name", "Key name must not contain control characters")],
        ),
        err(
            "name with an inner newline is refused",
            json!({"name": "CI\ndeploy"}),
            &[("name", "Key name must not contain control characters")],
        ),
        err("name must be a string", json!({"name": 5}), &[("name", "Key name must be a string")]),
        err(
            "name of zero-width characters only is refused",
            json!({"name": "\u{200B}\u{200C}\u{200D}\u{2060}\u{FEFF}"}),
            &[("name", "Key name must contain at least one visible character")],
        ),
        err(
            "name of fillers only is refused",
            json!({"name": "\u{3164}\u{2800}\u{115F}"}),
            &[("name", "Key name must contain at least one visible character")],
        ),
        err(
            "name with a right-to-left override is refused",
            json!({"name": "invoice\u{202E}fdp.exe"}),
            &[("name", "Key name must not contain bidirectional control characters (U+202A–U+202E, U+2066–U+2069)")],
        ),
        err(
            "name with a directional isolate is refused",
            json!({"name": "\u{2067}CI\u{2069}"}),
            &[("name", "Key name must not contain bidirectional control characters (U+202A–U+202E, U+2066–U+2069)")],
        ),
        ok(
            "name with a zero-width joiner inside visible text is accepted",
            json!({"name": "dev 👩\u{200D}💻"}),
            json!({"name": "dev 👩\u{200D}💻"}),
        ),
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn scopes_and_hmac_required_follow_the_spec_rules() {
    let cases = [
        // scopes
        err("scopes must not be empty", json!({"name": "k", "scopes": []}), &[("scopes", NO_SCOPE_MESSAGE)]),
        err(
            "scopes outside the catalogue are refused",
            json!({"name": "k", "scopes": ["messages:send", "sms:send"]}),
            &[("scopes", "Unknown scope: sms:send")],
        ),
        ok(
            "scopes are deduplicated in catalogue order",
            json!({"name": "k", "scopes": ["templates:read", "messages:send", "templates:read"]}),
            json!({"scopes": ["messages:send", "templates:read"]}),
        ),
        ok(
            "the all-scopes wildcard is in the catalogue",
            json!({"name": "k", "scopes": ["*"]}),
            json!({"scopes": ["*"]}),
        ),
        ok(
            "the reserved key scopes are in the catalogue",
            json!({"name": "k", "scopes": ["keys:write", "keys:read"]}),
            json!({"scopes": ["keys:read", "keys:write"]}),
        ),
        err(
            "scopes must be a list",
            json!({"name": "k", "scopes": "messages:send"}),
            &[("scopes", "Scopes must be a list of scope names")],
        ),
        err(
            "scopes must be a list of strings",
            json!({"name": "k", "scopes": ["messages:send", 1]}),
            &[("scopes", "Scopes must be a list of scope names")],
        ),
        // hmac_required
        ok("hmac_required true is kept", json!({"name": "k", "hmac_required": true}), json!({"hmac_required": true})),
        err(
            "hmac_required must be a boolean",
            json!({"name": "k", "hmac_required": "yes"}),
            &[("hmac_required", "Must be true or false")],
        ),
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn rate_limit_and_expiry_follow_the_spec_rules() {
    let cases = [
        // rate_limit
        ok("rate_limit 1 is the minimum", json!({"name": "k", "rate_limit": 1}), json!({"rate_limit": 1})),
        ok("rate_limit 1000 is the maximum", json!({"name": "k", "rate_limit": 1000}), json!({"rate_limit": 1000})),
        // JSON Schema's `integer` includes 304.0; generated clients may write it so.
        ok("rate_limit 304.0 is 304", json!({"name": "k", "rate_limit": 304.0}), json!({"rate_limit": 304})),
        err("rate_limit 0 is too low", json!({"name": "k", "rate_limit": 0}), &[("rate_limit", RATE_LIMIT_MESSAGE)]),
        err(
            "rate_limit 1001 is too high",
            json!({"name": "k", "rate_limit": 1001}),
            &[("rate_limit", RATE_LIMIT_MESSAGE)],
        ),
        err(
            "rate_limit must not be negative",
            json!({"name": "k", "rate_limit": -1}),
            &[("rate_limit", RATE_LIMIT_MESSAGE)],
        ),
        err(
            "rate_limit must be an integer",
            json!({"name": "k", "rate_limit": 80.5}),
            &[("rate_limit", RATE_LIMIT_MESSAGE)],
        ),
        err(
            "rate_limit must be a number",
            json!({"name": "k", "rate_limit": "80"}),
            &[("rate_limit", RATE_LIMIT_MESSAGE)],
        ),
        err(
            "rate_limit far beyond u32 is refused",
            json!({"name": "k", "rate_limit": 4_294_967_297_u64}),
            &[("rate_limit", RATE_LIMIT_MESSAGE)],
        ),
        // expires_at
        ok(
            "expires_at one second in the future is accepted",
            json!({"name": "k", "expires_at": "2025-06-01T12:00:01Z"}),
            json!({"expires_at": "2025-06-01T12:00:01Z"}),
        ),
        ok(
            "expires_at with an offset is stored in UTC",
            json!({"name": "k", "expires_at": "2030-01-31T14:00:00+02:00"}),
            json!({"expires_at": "2030-01-31T12:00:00Z"}),
        ),
        err(
            "expires_at equal to now is not strictly in the future",
            json!({"name": "k", "expires_at": "2025-06-01T12:00:00Z"}),
            &[("expires_at", EXPIRY_MESSAGE)],
        ),
        err(
            "expires_at in the past is refused",
            json!({"name": "k", "expires_at": "2020-01-01T00:00:00Z"}),
            &[("expires_at", EXPIRY_MESSAGE)],
        ),
        err(
            "expires_at in the past with an offset is still the past",
            json!({"name": "k", "expires_at": "2025-06-01T13:30:00+02:00"}),
            &[("expires_at", EXPIRY_MESSAGE)],
        ),
        err(
            "expires_at must be RFC 3339",
            json!({"name": "k", "expires_at": "tomorrow"}),
            &[("expires_at", FORMAT_MESSAGE)],
        ),
        err(
            "expires_at without a time zone is not RFC 3339",
            json!({"name": "k", "expires_at": "2030-01-31T12:00:00"}),
            &[("expires_at", FORMAT_MESSAGE)],
        ),
        err(
            "expires_at must be a string",
            json!({"name": "k", "expires_at": 1_900_000_000}),
            &[("expires_at", FORMAT_MESSAGE)],
        ),
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn ip_allowlist_follows_the_spec_rule() {
    let cases = [
        // ip_allowlist
        ok(
            "ip_allowlist takes IPv4, IPv4 CIDRs, IPv6 and IPv6 CIDRs, shown as entered",
            json!({"name": "k", "ip_allowlist": ["203.0.113.7", "10.0.0.0/8", "2001:db8::1", "2001:db8::/32"]}),
            json!({"ip_allowlist": ["203.0.113.7", "10.0.0.0/8", "2001:db8::1", "2001:db8::/32"]}),
        ),
        ok(
            "ip_allowlist duplicates collapse",
            json!({"name": "k", "ip_allowlist": ["203.0.113.7", "203.0.113.7/32", "203.0.113.7"]}),
            json!({"ip_allowlist": ["203.0.113.7"]}),
        ),
        err(
            "ip_allowlist names a bad entry by its index",
            json!({"name": "k", "ip_allowlist": ["10.0.0.1", "nope"]}),
            &[("ip_allowlist[1]", "Invalid IP address or CIDR range: nope")],
        ),
        err(
            "ip_allowlist reports every bad entry",
            json!({"name": "k", "ip_allowlist": ["300.0.0.1", "10.0.0.1", "10.0.0.0/33"]}),
            &[
                ("ip_allowlist[0]", "Invalid IP address or CIDR range: 300.0.0.1"),
                ("ip_allowlist[2]", "Invalid IP address or CIDR range: 10.0.0.0/33"),
            ],
        ),
        err(
            "ip_allowlist refuses host bits in a CIDR",
            json!({"name": "k", "ip_allowlist": ["10.0.0.1/8"]}),
            &[("ip_allowlist[0]", "Invalid IP address or CIDR range: 10.0.0.1/8")],
        ),
        err(
            "ip_allowlist refuses surrounding whitespace",
            json!({"name": "k", "ip_allowlist": [" 10.0.0.1"]}),
            &[("ip_allowlist[0]", "Invalid IP address or CIDR range:  10.0.0.1")],
        ),
        err(
            "ip_allowlist entries must be strings",
            json!({"name": "k", "ip_allowlist": ["10.0.0.1", 7]}),
            &[("ip_allowlist[1]", "Must be a string")],
        ),
        err(
            "ip_allowlist must be a list",
            json!({"name": "k", "ip_allowlist": "10.0.0.1"}),
            &[("ip_allowlist", "Must be a list of strings")],
        ),
        err(
            "ip_allowlist holds at most 1000 entries",
            json!({"name": "k", "ip_allowlist": vec!["10.0.0.1"; 1001]}),
            &[("ip_allowlist", "At most 1000 entries")],
        ),
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn phone_allowlist_and_channels_follow_the_spec_rules() {
    let cases = [
        // phone_allowlist
        ok(
            "phone_allowlist entries are normalized to E.164",
            json!({"name": "k", "phone_allowlist": ["+1 (415) 555-0100", "+44 20 7183 8750", "+14155550100"]}),
            json!({"phone_allowlist": ["+14155550100", "+442071838750"]}),
        ),
        err(
            "phone_allowlist numbers must be registered in the org",
            json!({"name": "k", "phone_allowlist": ["+14155550100", "+14155550199"]}),
            &[("phone_allowlist[1]", "+14155550199 is not a registered phone number of this organization")],
        ),
        err(
            "phone_allowlist entries must be phone numbers",
            json!({"name": "k", "phone_allowlist": ["call me"]}),
            &[("phone_allowlist[0]", "Not a phone number: call me")],
        ),
        err(
            "phone_allowlist entries need the international form",
            json!({"name": "k", "phone_allowlist": ["4155550100"]}),
            &[("phone_allowlist[0]", "Not a phone number: 4155550100")],
        ),
        // channels
        ok("channels \"all\" is all", json!({"name": "k", "channels": "all"}), json!({"channels": "all"})),
        ok(
            "channels lists are deduplicated",
            json!({"name": "k", "channels": ["otp", "marketing", "otp"]}),
            json!({"channels": ["otp", "marketing"]}),
        ),
        err(
            "channels must not be an empty list",
            json!({"name": "k", "channels": []}),
            &[("channels", CHANNELS_MESSAGE)],
        ),
        err(
            "channels must be the org's slugs",
            json!({"name": "k", "channels": ["marketing", "sales"]}),
            &[("channels[1]", "Unknown channel: sales")],
        ),
        err(
            "channels \"All\" is not \"all\"",
            json!({"name": "k", "channels": "All"}),
            &[("channels", CHANNELS_MESSAGE)],
        ),
        err(
            "channels must be a list or \"all\"",
            json!({"name": "k", "channels": 5}),
            &[("channels", CHANNELS_MESSAGE)],
        ),
        err(
            "channels entries must be strings",
            json!({"name": "k", "channels": ["otp", false]}),
            &[("channels[1]", "Must be a string")],
        ),
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn environment_external_id_and_meta_follow_the_spec_rules() {
    let cases = [
        // environment
        ok("environment test is kept", json!({"name": "k", "environment": "test"}), json!({"environment": "test"})),
        err(
            "environment is live or test",
            json!({"name": "k", "environment": "prod"}),
            &[("environment", "Environment must be \"live\" or \"test\"")],
        ),
        // external_id, meta
        ok(
            "external_id of 256 characters is accepted",
            json!({"name": "k", "external_id": "x".repeat(256)}),
            json!({"external_id": "x".repeat(256)}),
        ),
        err(
            "external_id of 257 characters is too long",
            json!({"name": "k", "external_id": "x".repeat(257)}),
            &[("external_id", "External id must be a string of at most 256 characters")],
        ),
        err(
            "external_id must be a string",
            json!({"name": "k", "external_id": 42}),
            &[("external_id", "External id must be a string of at most 256 characters")],
        ),
        ok("meta object is kept", json!({"name": "k", "meta": {"team": "ops"}}), json!({"meta": {"team": "ops"}})),
        err("meta must be an object", json!({"name": "k", "meta": ["ops"]}), &[("meta", "Meta must be a JSON object")]),
        err(
            "meta must be at most 4 KiB",
            json!({"name": "k", "meta": {"blob": "x".repeat(4096)}}),
            &[("meta", "Meta must be at most 4 KiB of JSON")],
        ),
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn every_faulty_field_is_reported_at_once() {
    let cases = [
        // Several faults at once.
        err(
            "every faulty field is reported at once, in field order",
            json!({"name": "", "scopes": [], "rate_limit": 0, "expires_at": "2020-01-01T00:00:00Z",
                   "ip_allowlist": ["x"], "channels": []}),
            &[
                ("name", "Key name is required"),
                ("scopes", NO_SCOPE_MESSAGE),
                ("rate_limit", RATE_LIMIT_MESSAGE),
                ("expires_at", EXPIRY_MESSAGE),
                ("ip_allowlist[0]", "Invalid IP address or CIDR range: x"),
                ("channels", CHANNELS_MESSAGE),
            ],
        ),
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn spec_messages_are_verbatim() {
    assert_eq!(RATE_LIMIT_MESSAGE, "Rate limit must be an integer between 1 and 1000");
    assert_eq!(EXPIRY_MESSAGE, "Expiry must be in the future");
    assert_eq!(NO_SCOPE_MESSAGE, "Select at least one scope.");
}

#[test]
fn long_input_is_cut_short_in_messages() {
    let entry = "x".repeat(10_000);
    let errors = ip_allowlist(Some(&json!([entry]))).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].message.len() < 200, "{}", errors[0].message);
    assert!(errors[0].message.ends_with('…'));
}

struct PatchCase {
    rule: &'static str,
    body: Value,
    expected: Result<KeyPatch, Vec<(&'static str, &'static str)>>,
}

fn check_patch(case: &PatchCase) {
    let result = with_rules(|rules| key_patch(&patch_input(&case.body), rules));
    let result = result.map_err(|errors| errors.into_iter().map(|e| (e.field, e.message)).collect::<Vec<_>>());
    let expected = case
        .expected
        .clone()
        .map_err(|errors| errors.into_iter().map(|(f, m)| (f.to_owned(), m.to_owned())).collect::<Vec<_>>());
    assert_eq!(result, expected, "{}", case.rule);
}

#[test]
fn patch_null_clears_a_nullable_field_and_absent_leaves_it() {
    let cases = [
        PatchCase { rule: "an empty patch changes nothing", body: json!({}), expected: Ok(KeyPatch::default()) },
        PatchCase {
            rule: "rate_limit null clears to the platform default",
            body: json!({"rate_limit": null}),
            expected: Ok(KeyPatch { rate_limit: Some(None), ..KeyPatch::default() }),
        },
        PatchCase {
            rule: "rate_limit set",
            body: json!({"rate_limit": 10}),
            expected: Ok(KeyPatch { rate_limit: Some(Some(10)), ..KeyPatch::default() }),
        },
        PatchCase {
            rule: "rate_limit out of range",
            body: json!({"rate_limit": 1001}),
            expected: Err(vec![("rate_limit", RATE_LIMIT_MESSAGE)]),
        },
        PatchCase {
            rule: "expires_at null clears to never",
            body: json!({"expires_at": null}),
            expected: Ok(KeyPatch { expires_at: Some(None), ..KeyPatch::default() }),
        },
        PatchCase {
            rule: "expires_at in the past",
            body: json!({"expires_at": "2025-06-01T11:59:59Z"}),
            expected: Err(vec![("expires_at", EXPIRY_MESSAGE)]),
        },
        PatchCase {
            rule: "expires_at set",
            body: json!({"expires_at": "2026-01-01T00:00:00Z"}),
            expected: Ok(KeyPatch { expires_at: Some(Some(datetime!(2026-01-01 0:00 UTC))), ..KeyPatch::default() }),
        },
        PatchCase {
            rule: "meta null clears it",
            body: json!({"meta": null}),
            expected: Ok(KeyPatch { meta: Some(None), ..KeyPatch::default() }),
        },
    ];
    for case in &cases {
        check_patch(case);
    }
}

#[test]
fn patch_fields_that_cannot_be_null_are_checked_like_create() {
    let cases = [
        PatchCase {
            rule: "name null is refused, a key always has a name",
            body: json!({"name": null}),
            expected: Err(vec![("name", "Key name is required")]),
        },
        PatchCase {
            rule: "name is trimmed",
            body: json!({"name": " new name "}),
            expected: Ok(KeyPatch { name: Some("new name".to_owned()), ..KeyPatch::default() }),
        },
        PatchCase {
            rule: "scopes null is refused, a key always has a scope",
            body: json!({"scopes": null}),
            expected: Err(vec![("scopes", "Scopes must be a list of scope names")]),
        },
        PatchCase {
            rule: "scopes empty is refused",
            body: json!({"scopes": []}),
            expected: Err(vec![("scopes", NO_SCOPE_MESSAGE)]),
        },
        PatchCase {
            rule: "ip_allowlist empty opens the key to any address",
            body: json!({"ip_allowlist": []}),
            expected: Ok(KeyPatch { ip_allowlist: Some(Vec::new()), ..KeyPatch::default() }),
        },
        PatchCase {
            rule: "ip_allowlist bad entry named by index",
            body: json!({"ip_allowlist": ["10.0.0.0/8", "10.0.0.0/8/8"]}),
            expected: Err(vec![("ip_allowlist[1]", "Invalid IP address or CIDR range: 10.0.0.0/8/8")]),
        },
        PatchCase {
            rule: "channels all",
            body: json!({"channels": "all"}),
            expected: Ok(KeyPatch { channels: Some(Channels::All), ..KeyPatch::default() }),
        },
        PatchCase {
            rule: "channels list",
            body: json!({"channels": ["alerts"]}),
            expected: Ok(KeyPatch { channels: Some(Channels::Only(vec!["alerts".to_owned()])), ..KeyPatch::default() }),
        },
        PatchCase {
            rule: "phone_allowlist normalized",
            body: json!({"phone_allowlist": ["+1 415 555 0100"]}),
            expected: Ok(KeyPatch { phone_allowlist: Some(vec!["+14155550100".to_owned()]), ..KeyPatch::default() }),
        },
        PatchCase {
            rule: "every faulty field reported at once",
            body: json!({"name": "", "rate_limit": 0, "expires_at": "yesterday"}),
            expected: Err(vec![
                ("name", "Key name is required"),
                ("rate_limit", RATE_LIMIT_MESSAGE),
                ("expires_at", FORMAT_MESSAGE),
            ]),
        },
    ];
    for case in &cases {
        check_patch(case);
    }
}

#[test]
fn applying_a_patch_clears_on_null_and_keeps_absent_fields() {
    let mut settings = with_rules(|rules| {
        new_key(&new_key_input(&json!({"name": "k", "rate_limit": 100, "expires_at": "2026-01-01T00:00:00Z"})), rules)
    })
    .unwrap();
    let patch = with_rules(|rules| key_patch(&patch_input(&json!({"rate_limit": null})), rules)).unwrap();
    let changes = patch.apply(&mut settings);
    assert_eq!(settings.rate_limit, None);
    assert_eq!(settings.expires_at, Some(datetime!(2026-01-01 0:00 UTC)), "an absent field is left alone");
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].field, "rate_limit");
    assert_eq!(changes[0].old, json!(100));
    assert_eq!(changes[0].new, Value::Null);
    assert!(patch.apply(&mut settings).is_empty(), "re-applying changes nothing");
}

#[test]
fn catalogue_always_holds_the_reserved_scopes() {
    let catalogue = Catalogue::new(&["messages:send".to_owned()], &["messages:send".to_owned()]).unwrap();
    assert_eq!(catalogue.scopes(), ["messages:send", "keys:read", "keys:write", "*"]);
    assert_eq!(catalogue.defaults(), ["messages:send"]);
    let rows: [(&str, &[&str], &[&str], bool); 5] = [
        ("a reserved scope may be listed again", &["keys:read"], &["keys:read"], true),
        ("a badly shaped scope is refused", &["Messages Send"], &["*"], false),
        ("defaults must not be empty", &["messages:send"], &[], false),
        ("defaults must be in the catalogue", &["messages:send"], &["sms:send"], false),
        ("an empty scope is refused", &[""], &["*"], false),
    ];
    for (rule, configured, defaults, ok) in rows {
        let configured: Vec<String> = configured.iter().map(|s| (*s).to_owned()).collect();
        let defaults: Vec<String> = defaults.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(Catalogue::new(&configured, &defaults).is_ok(), ok, "{rule}");
    }
}

#[test]
fn channel_slugs_follow_the_spec_shape() {
    let long = "a".repeat(65);
    let rows = [
        ("lower-case letters", "marketing", true),
        ("digits and hyphens", "eu-2", true),
        ("64 characters", &long[..64], true),
        ("65 characters", long.as_str(), false),
        ("empty", "", false),
        ("upper case", "Marketing", false),
        ("underscore", "eu_2", false),
        ("space", "eu 2", false),
    ];
    for (rule, slug, ok) in rows {
        assert_eq!(channel_slug(slug).is_ok(), ok, "{rule}: {slug:?}");
    }
}

#[test]
fn ip_entries_parse_addresses_and_exact_networks() {
    let rows: [(&str, Option<&str>); 13] = [
        ("203.0.113.7", Some("203.0.113.7/32")),
        // IPv4-mapped entries become the IPv4 they name: mapped peers are compared as IPv4.
        ("::ffff:10.0.0.1", Some("10.0.0.1/32")),
        ("::ffff:10.0.0.1/128", Some("10.0.0.1/32")),
        ("::ffff:10.0.0.0/104", Some("10.0.0.0/8")),
        ("::ffff:0:0/96", Some("0.0.0.0/0")),
        ("10.0.0.0/8", Some("10.0.0.0/8")),
        ("0.0.0.0/0", Some("0.0.0.0/0")),
        ("2001:db8::1", Some("2001:db8::1/128")),
        ("2001:db8::/32", Some("2001:db8::/32")),
        ("10.0.0.1/8", None),
        ("2001:db8::1/32", None),
        ("10.0.0.0/", None),
        ("", None),
    ];
    for (entry, expected) in rows {
        assert_eq!(parse_ip_entry(entry).map(|net| net.to_string()).as_deref(), expected, "{entry:?}");
    }
}

fn v4_mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn v6_mask(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

proptest! {
    #[test]
    fn any_ipv4_address_parses_as_a_host_network_that_contains_it(bits in any::<u32>()) {
        let addr = Ipv4Addr::from(bits);
        let net = parse_ip_entry(&addr.to_string()).unwrap();
        prop_assert_eq!(net.prefix_len(), 32);
        prop_assert!(net_contains(&net, IpAddr::V4(addr)));
        prop_assert!(net_contains(&net, IpAddr::V6(addr.to_ipv6_mapped())));
        prop_assert!(!net_contains(&net, IpAddr::V4(Ipv4Addr::from(bits ^ 1))));
    }

    #[test]
    fn any_ipv6_address_parses_as_a_host_network_that_contains_it(bits in any::<u128>()) {
        let addr = Ipv6Addr::from(bits);
        prop_assume!(addr.to_ipv4_mapped().is_none());
        let net = parse_ip_entry(&addr.to_string()).unwrap();
        prop_assert_eq!(net.prefix_len(), 128);
        prop_assert!(net_contains(&net, IpAddr::V6(addr)));
    }

    #[test]
    fn ipv4_cidr_containment_matches_a_manual_mask(network in any::<u32>(), prefix in 0u8..=32, client in any::<u32>()) {
        let mask = v4_mask(prefix);
        let net = parse_ip_entry(&format!("{}/{prefix}", Ipv4Addr::from(network & mask))).unwrap();
        let expected = client & mask == network & mask;
        prop_assert_eq!(net_contains(&net, IpAddr::V4(Ipv4Addr::from(client))), expected);
        prop_assert_eq!(net_contains(&net, IpAddr::V6(Ipv4Addr::from(client).to_ipv6_mapped())), expected);
    }

    #[test]
    fn ipv4_cidr_with_host_bits_is_refused(network in any::<u32>(), prefix in 0u8..=31) {
        prop_assume!(network & !v4_mask(prefix) != 0);
        prop_assert_eq!(parse_ip_entry(&format!("{}/{prefix}", Ipv4Addr::from(network))), None);
    }

    #[test]
    fn ipv6_cidr_containment_matches_a_manual_mask(network in any::<u128>(), prefix in 0u8..=128, client in any::<u128>()) {
        let mask = v6_mask(prefix);
        let client = Ipv6Addr::from(client);
        prop_assume!(client.to_ipv4_mapped().is_none());
        let net = parse_ip_entry(&format!("{}/{prefix}", Ipv6Addr::from(network & mask))).unwrap();
        let expected = u128::from(client) & mask == network & mask;
        prop_assert_eq!(net_contains(&net, IpAddr::V6(client)), expected);
    }
}
