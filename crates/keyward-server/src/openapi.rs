//! OpenAPI 3.1, generated from the handlers' annotations (utoipa), served at `/openapi.json`.
//!
//! The annotations give the shapes; `RULES` then states every rule the server checks on each
//! field (lengths, ranges, patterns, formats), so a schema-valid request is accepted and a
//! schema-invalid one refused. Rules that need the database (a phone number or channel must be the
//! org's, an expiry must be in the future) are named by a `format` and a description. What the
//! operator configures (the scope catalogue, the longest key name) is filled in when served.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use utoipa::OpenApi;

use crate::api::{audit, keys, members, orgs, session};
use crate::app::AppState;
use crate::verify;

#[derive(OpenApi)]
#[openapi(
    info(title = "keyward", description = "Issue, scope, restrict, sign, rate-limit, verify and revoke API keys."),
    paths(
        verify::verify, crate::gateway::authorize::authorize,
        orgs::create, orgs::add_phone_number, orgs::list_phone_numbers, orgs::add_channel, orgs::list_channels,
        keys::create, keys::list, keys::get, keys::update, keys::revoke, keys::roll, keys::lookup,
        members::add, members::list, members::remove, session::create, session::delete, audit::list,
    ),
    modifiers(&BearerAuth, &ProblemResponses),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

/// What the operator decides that the schema states: the scope catalogue and the longest key name.
#[derive(Debug, Clone)]
pub struct Configured<'a> {
    pub scopes: &'a [String],
    pub max_name_length: usize,
}

/// The document for a configuration: annotations, then every field's rules.
pub fn document(configured: &Configured<'_>) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|_| json!({}));
    for (schema, property, rule) in rules(configured) {
        if let Some(slot) = doc.pointer_mut(&format!("/components/schemas/{schema}/properties/{property}")) {
            *slot = rule;
        }
    }
    let schemas = &mut doc["components"]["schemas"];
    schemas["ChannelsSchema"] = channels_schema(false);
    schemas["VerifyValid"] = verify_valid();
    schemas["VerifyRefused"] = verify_refused();
    schemas["VerifyAnswer"] = json!({
        "description": "The decision. `valid` tells the two shapes apart: the key's facts, or the refusal with the status the platform should answer its caller.",
        "oneOf": [{"$ref": "#/components/schemas/VerifyValid"}, {"$ref": "#/components/schemas/VerifyRefused"}],
    });
    doc["paths"]["/v1/verify"]["post"]["responses"]["200"]["content"] =
        json!({"application/json": {"schema": {"$ref": "#/components/schemas/VerifyAnswer"}}});
    // The body may be left out, but when sent it is an object (`null` is not).
    doc["paths"]["/v1/orgs/{org}/keys/{id}/roll"]["post"]["requestBody"]["content"]["application/json"]["schema"] =
        json!({"$ref": "#/components/schemas/RollKeyBody"});
    query_rules(&mut doc);
    answer_rules(&mut doc);
    unique_operation_ids(&mut doc);
    doc
}

/// Handlers share names across modules (`keys::list`, `members::list`): an id used twice is
/// prefixed with its tag (`keys_list`), so generated clients get one method per operation.
fn unique_operation_ids(doc: &mut Value) {
    let Some(Value::Object(paths)) = doc.get_mut("paths") else { return };
    let operations = || ["get", "post", "put", "patch", "delete"];
    let mut seen = std::collections::HashMap::<String, usize>::new();
    for item in paths.values() {
        for method in operations() {
            if let Some(id) = item[method]["operationId"].as_str() {
                *seen.entry(id.to_owned()).or_default() += 1;
            }
        }
    }
    for item in paths.values_mut() {
        for method in operations() {
            let Some(operation) = item.get_mut(method) else { continue };
            let id = operation["operationId"].as_str().unwrap_or_default().to_owned();
            if seen.get(&id).is_some_and(|count| *count > 1) {
                let tag = operation["tags"][0].as_str().unwrap_or("api").to_owned();
                operation["operationId"] = json!(format!("{tag}_{id}"));
            }
        }
    }
}

/// The document for the built-in configuration (the committed `docs/openapi.json`).
pub fn default_document() -> Value {
    let scopes = keyward_core::validate::Catalogue::new(
        &keyward_core::validate::DEFAULT_SCOPES.map(str::to_owned),
        &["messages:send".to_owned()],
    )
    .map(|catalogue| catalogue.scopes().to_vec())
    .unwrap_or_default();
    document(&Configured { scopes: &scopes, max_name_length: 64 })
}

pub async fn serve(State(state): State<AppState>) -> Json<Value> {
    Json(document(&Configured {
        scopes: state.config.catalogue.scopes(),
        max_name_length: state.config.max_name_length,
    }))
}

/// White space as Rust's `str::trim` removes it (Unicode `White_Space`).
const WS: &str = r"\t\n\x0B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";
/// Never in a name: control characters and bidirectional embeddings, overrides and isolates.
const BAD: &str = r"\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069";
/// Characters that draw nothing (besides white space): a name needs one that is not one of these.
const INVISIBLE: &str = r"\u00AD\u034F\u061C\u115F\u1160\u17B4\u17B5\u180B-\u180F\u200B-\u200F\u2060-\u206F\u2800\u3164\uFE00-\uFE0F\uFEFF\uFFA0\uFFF0-\uFFF8";

/// A name shown to people: 1–`max` characters once surrounding white space is trimmed, no control
/// or bidirectional control characters, at least one visible character.
fn display_name(what: &str, max: usize) -> Value {
    let inner = format!("[^{BAD}]");
    let edge = format!("[^{BAD}{WS}]");
    let visible = format!("[^{BAD}{WS}{INVISIBLE}]");
    let middle = max.saturating_sub(2);
    json!({
        "type": "string",
        "description": format!(
            "{what}: 1–{max} characters after trimming surrounding white space; no control characters, no \
             bidirectional controls (U+202A–U+202E, U+2066–U+2069), at least one visible character \
             (white space and zero-width or other default-ignorable characters alone are refused)."
        ),
        "pattern": format!("^[{WS}]*(?={inner}*{visible}){edge}(?:{inner}{{0,{middle}}}{edge})?[{WS}]*$"),
    })
}

const SLUG_PATTERN: &str = "^[a-z0-9-]{1,64}$";

fn slug() -> Value {
    json!({"type": "string", "pattern": SLUG_PATTERN, "description": "A channel slug: 1–64 of a-z, 0-9 and -."})
}

/// A phone number written in international form. `phone`: a number libphonenumber knows to be
/// valid, starting with `+`, at most 32 characters; a pattern could only approximate that.
fn phone(description: &str) -> Value {
    json!({"type": "string", "format": "phone", "description": description, "examples": ["+14155550100"]})
}

fn nullable(mut schema: Value) -> Value {
    match schema.get_mut("type") {
        Some(Value::String(kind)) => schema["type"] = json!([kind.clone(), "null"]),
        _ => return json!({"oneOf": [{"type": "null"}, schema]}),
    }
    schema
}

/// IPv4 and IPv6 addresses, and CIDR ranges without host bits (`10.0.0.0/8`, not `10.0.0.1/8`).
fn ip_entry() -> Value {
    json!({
        "type": "string",
        "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}, {"format": "ip-network"}],
        "description": "An IPv4 or IPv6 address, or a CIDR range whose host bits are zero (`203.0.113.0/24`, `2001:db8::/32`).",
        "examples": ["203.0.113.0/24"],
    })
}

fn scope_list(scopes: &[String]) -> Value {
    json!({
        "type": "array", "minItems": 1,
        "items": {"type": "string", "enum": scopes},
        "description": "A non-empty subset of the scope catalogue; `*` grants every scope. A key acting on keys may only grant scopes it holds.",
    })
}

/// `"all"`, or a non-empty list of the org's channel slugs (`channel`: a slug of the org's).
fn channels_schema(org_channels: bool) -> Value {
    let mut item = slug();
    if org_channels {
        item["format"] = json!("channel");
        item["description"] = json!("One of the org's channel slugs.");
    }
    json!({
        "description": "`\"all\"` (every channel of the org) or a non-empty list of the org's channel slugs.",
        "oneOf": [
            {"type": "string", "enum": ["all"]},
            {"type": "array", "minItems": 1, "maxItems": 1000, "items": item},
        ],
    })
}

fn expiry() -> Value {
    json!({
        "type": ["string", "null"], "format": "date-time",
        "description": "RFC 3339, strictly in the future and within 100 years; null = never expires.",
    })
}

fn list_of(item: &Value, description: &str) -> Value {
    json!({"type": ["array", "null"], "maxItems": 1000, "items": item, "description": description})
}

fn meta() -> Value {
    json!({
        "type": ["object", "null"], "additionalProperties": true,
        "description": "Caller data: a JSON object of at most 4 KiB serialized.",
    })
}

fn rate_limit() -> Value {
    json!({
        "type": ["integer", "null"], "minimum": 1, "maximum": 1000,
        "description": "Requests per second, 1–1000; null = the platform default.",
    })
}

/// `(schema, property, its rule)` for every request field the server checks.
#[allow(clippy::too_many_lines, reason = "one table: a row per field")]
fn rules(configured: &Configured<'_>) -> Vec<(&'static str, &'static str, Value)> {
    let key_name = display_name("The key's name", configured.max_name_length);
    let channels = || json!({"oneOf": [{"type": "null"}, channels_schema(true)]});
    let ip_allowlist = || {
        list_of(
            &ip_entry(),
            "IPv4/IPv6 addresses and CIDR ranges the key may be used from; empty or null = any address.",
        )
    };
    let phone_allowlist = || {
        list_of(
            &phone("A sender number registered in the org (normalized to E.164)."),
            "Sender numbers registered in the org that the key may send from (checked for `messages:send`); empty or null = any of the org's.",
        )
    };
    vec![
        ("CreateOrg", "name", display_name("The organization's name", 100)),
        (
            "AddPhoneNumber",
            "number",
            phone(
                "A phone number in international form (`+1 415 555 0100`); stored as E.164. 409 if already registered.",
            ),
        ),
        ("AddChannel", "slug", slug()),
        ("AddChannel", "name", display_name("The channel's name", 100)),
        ("CreateKey", "name", key_name.clone()),
        ("CreateKey", "scopes", nullable(scope_list(configured.scopes))),
        (
            "CreateKey",
            "hmac_required",
            json!({"type": ["boolean", "null"], "description": "Require a signature on every request; a signing secret is generated. Default false."}),
        ),
        ("CreateKey", "rate_limit", rate_limit()),
        ("CreateKey", "expires_at", expiry()),
        ("CreateKey", "ip_allowlist", ip_allowlist()),
        ("CreateKey", "phone_allowlist", phone_allowlist()),
        ("CreateKey", "channels", channels()),
        (
            "CreateKey",
            "environment",
            json!({"type": ["string", "null"], "enum": ["live", "test", null], "description": "`live` (default) or `test`; appears in the key."}),
        ),
        (
            "CreateKey",
            "external_id",
            json!({"type": ["string", "null"], "maxLength": 256, "description": "Your own reference, at most 256 characters."}),
        ),
        ("CreateKey", "meta", meta()),
        ("UpdateKey", "name", key_name),
        ("UpdateKey", "scopes", scope_list(configured.scopes)),
        ("UpdateKey", "rate_limit", rate_limit()),
        ("UpdateKey", "expires_at", expiry()),
        ("UpdateKey", "ip_allowlist", ip_allowlist()),
        ("UpdateKey", "phone_allowlist", phone_allowlist()),
        ("UpdateKey", "channels", channels()),
        ("UpdateKey", "meta", meta()),
        (
            "RollKeyBody",
            "grace_seconds",
            json!({
                "type": ["integer", "null"], "minimum": 0, "maximum": 604_800,
                "description": "Seconds the old key stays valid (0–604800); 0 or absent revokes it at once.",
            }),
        ),
        (
            "AddMember",
            "email",
            json!({
                "type": "string", "maxLength": 254,
                "pattern": format!(r"^[{WS}]*[^{BAD}{WS}]+@[^{BAD}{WS}@.][^{BAD}{WS}@]*\.[^{BAD}{WS}@]*[^{BAD}{WS}@.][{WS}]*$"),
                "description": "An email address: `local@domain.tld` (surrounding white space is trimmed; compared case-insensitively).",
            }),
        ),
        (
            "AddMember",
            "password",
            json!({"type": "string", "minLength": 10, "maxLength": 1024, "description": "10–1024 characters."}),
        ),
        ("AddMember", "role", json!({"type": "string", "enum": ["owner", "admin", "user", "readonly"]})),
        (
            "VerifyBody",
            "key",
            json!({
                "type": ["string", "null"],
                "description": "The key as the caller sent it, never trimmed. Absent or malformed: the answer is `INVALID_API_KEY`.",
            }),
        ),
        (
            "VerifyBody",
            "scope",
            json!({
                "description": "One scope or a list; every one is required. Absent: no scope is checked.",
                "oneOf": [{"type": "null"}, {"type": "string"}, {"type": "array", "items": {"type": "string"}}],
            }),
        ),
        (
            "VerifyBody",
            "client_ip",
            json!({
                "description": "The caller's IP address; empty or null = unknown (refused by a key with an IP allowlist).",
                "oneOf": [{"type": "null"}, {"type": "string", "enum": [""]}, {"type": "string", "format": "ipv4"}, {"type": "string", "format": "ipv6"}],
            }),
        ),
        (
            "VerifyBody",
            "sender",
            json!({"type": ["string", "null"], "description": "The sender number of a `messages:send` call (E.164)."}),
        ),
        (
            "VerifyBody",
            "channels",
            json!({
                "type": ["array", "null"], "maxItems": 100, "items": {"type": "string"},
                "description": "The channels the call targets, at most 100; slugs that are not the org's are a `CHANNEL_SCOPE_VIOLATION`.",
            }),
        ),
        ("SignedRequestBody", "method", json!({"type": "string", "description": "The request's method."})),
        (
            "LookupKey",
            "key",
            json!({"type": "string", "description": "The full key. Sent in the body so it never lands in an access log."}),
        ),
    ]
}

/// Query parameters: `limit`, `cursor`, filters.
fn query_rules(doc: &mut Value) {
    let limit = json!({"type": "integer", "minimum": 1, "maximum": 100, "default": 20});
    let cursor = json!({"type": "string", "pattern": r"^(c\+?[0-9a-zA-Z]{1,12})?$", "description": "The `next_cursor` of the previous page."});
    let short = json!({"type": "string", "maxLength": 100});
    let time = json!({
        "description": "RFC 3339, inclusive; empty = no bound.",
        "anyOf": [{"type": "string", "enum": [""]}, {"type": "string", "format": "date-time"}],
    });
    let table = [
        ("/v1/orgs/{org}/keys", "status", json!({"type": "string", "enum": ["", "active", "revoked", "expired"]})),
        ("/v1/orgs/{org}/keys", "created_by", short.clone()),
        (
            "/v1/orgs/{org}/keys",
            "q",
            json!({
                "type": "string", "maxLength": 64,
                "pattern": format!("^(?![{WS}]*[^_]+_(?:live|test)_[0-9A-Za-z]{{32,}}[{WS}]*$)"),
                "description": "Keys whose name contains it (case-insensitive) or whose prefix starts with it; at most 64 characters. A full key is refused: look it up with `POST /v1/keys/lookup`.",
            }),
        ),
        ("/v1/orgs/{org}/keys", "limit", limit.clone()),
        ("/v1/orgs/{org}/keys", "cursor", cursor.clone()),
        ("/v1/orgs/{org}/audit", "action", short.clone()),
        ("/v1/orgs/{org}/audit", "target", short.clone()),
        ("/v1/orgs/{org}/audit", "actor", short),
        ("/v1/orgs/{org}/audit", "since", time.clone()),
        ("/v1/orgs/{org}/audit", "until", time),
        ("/v1/orgs/{org}/audit", "limit", limit),
        ("/v1/orgs/{org}/audit", "cursor", cursor),
    ];
    for (path, name, schema) in table {
        let Some(Value::Array(parameters)) = doc.pointer_mut(&format!("/paths/{}/get/parameters", escape(path))) else {
            continue;
        };
        for parameter in parameters.iter_mut().filter(|p| p["name"] == name) {
            parameter["schema"] = schema.clone();
        }
    }
}

/// Answers carry every field (`null` when unset, never left out), and their closed sets are
/// enums, so generated types need no optional fields or open strings the server never sends.
fn answer_rules(doc: &mut Value) {
    let Some(Value::Object(schemas)) = doc.pointer_mut("/components/schemas") else { return };
    let is_answer = |name: &str| {
        name.ends_with("View")
            || name.ends_with("Response")
            || name.ends_with("Envelope")
            || name.starts_with("ListResponse_")
    };
    let names: Vec<String> = schemas.keys().filter(|name| is_answer(name)).cloned().collect();
    for name in names {
        let schema = &mut schemas[&name];
        // A page's items are the view itself, not an inlined copy of it.
        if let Some(view) = name.strip_prefix("ListResponse_") {
            schema["properties"]["data"]["items"] = json!({"$ref": format!("#/components/schemas/{view}")});
        }
        if let Some(Value::Object(properties)) = schema.get("properties") {
            let required: Vec<Value> = properties.keys().map(|key| json!(key)).collect();
            schema["required"] = Value::Array(required);
        }
    }
    let closed_sets = [
        ("KeyView", "environment", json!({"type": "string", "enum": ["live", "test"]})),
        ("KeyView", "status", json!({"type": "string", "enum": ["active", "revoked", "expired"]})),
        ("KeyView", "meta", meta()),
        ("MemberView", "role", json!({"type": "string", "enum": ["owner", "admin", "user", "readonly"]})),
    ];
    for (schema, property, rule) in closed_sets {
        if let Some(slot) = schemas.get_mut(schema).and_then(|s| s.pointer_mut(&format!("/properties/{property}"))) {
            *slot = rule;
        }
    }
}

/// A JSON pointer token (RFC 6901).
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn verify_valid() -> Value {
    json!({
        "type": "object",
        "description": "The key may make this call.",
        "required": ["valid", "code", "key_id", "org_id", "name", "scopes", "channels", "environment", "meta", "rate_limit"],
        "additionalProperties": false,
        "properties": {
            "valid": {"type": "boolean", "const": true},
            "code": {"type": "string", "const": "VALID"},
            "key_id": {"type": "string", "examples": ["key_01J…"]},
            "org_id": {"type": "string"},
            "name": {"type": "string"},
            "scopes": {"type": "array", "items": {"type": "string"}, "description": "The key's scopes."},
            "channels": {
                "description": "The effective channels: `\"all\"`, or the slugs this call may use.",
                "oneOf": [{"type": "string", "enum": ["all"]}, {"type": "array", "items": {"type": "string"}}],
            },
            "environment": {"type": "string", "enum": ["live", "test"]},
            "meta": {"type": ["object", "null"], "additionalProperties": true},
            "rate_limit": {
                "type": "object", "required": ["limit", "remaining", "reset_ms"], "additionalProperties": false,
                "properties": {
                    "limit": {"type": "integer", "minimum": 1, "description": "Requests per second."},
                    "remaining": {"type": "integer", "minimum": 0},
                    "reset_ms": {"type": "integer", "minimum": 0, "description": "Milliseconds until the budget is full again."},
                },
            },
        },
    })
}

fn verify_refused() -> Value {
    json!({
        "type": "object",
        "description": "The call must be refused, with `status`.",
        "required": ["valid", "code", "status", "message"],
        "additionalProperties": false,
        "properties": {
            "valid": {"type": "boolean", "const": false},
            "code": {"type": "string", "enum": [
                "INVALID_API_KEY", "API_KEY_INACTIVE", "API_KEY_EXPIRED", "IP_NOT_ALLOWED", "SIGNATURE_REQUIRED",
                "INVALID_SIGNATURE", "FORBIDDEN", "SENDER_NOT_ALLOWED", "CHANNEL_SCOPE_VIOLATION", "RATE_LIMITED",
            ]},
            "status": {"type": "integer", "enum": [401, 403, 429], "description": "What the platform should answer its caller."},
            "message": {"type": "string"},
            "retry_after_ms": {"type": "integer", "minimum": 0, "description": "With `RATE_LIMITED`: when to retry."},
        },
    })
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every error answers `application/problem+json`: document that once, for every operation,
/// with the statuses any request can meet (bad body, auth, size, type, database down).
struct ProblemResponses;

impl utoipa::Modify for ProblemResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
        let problem = || ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build();
        let common = [
            ("400", "Validation failed (`VALIDATION_FAILED`), naming the field"),
            ("401", "Missing or invalid credential (`UNAUTHENTICATED`)"),
            ("403", "Not allowed (`FORBIDDEN`, `CSRF_FAILED`)"),
            ("404", "Not found, or another organization's (`NOT_FOUND`)"),
            ("413", "Body over 1 MiB (`PAYLOAD_TOO_LARGE`)"),
            ("415", "Body is not JSON (`UNSUPPORTED_MEDIA_TYPE`)"),
            ("503", "Database unavailable (`SERVICE_UNAVAILABLE`)"),
        ];
        for item in openapi.paths.paths.values_mut() {
            let operations = [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete];
            for operation in operations.into_iter().flatten() {
                let responses = &mut operation.responses.responses;
                for (status, description) in common {
                    responses.entry(status.to_owned()).or_insert_with(|| {
                        RefOr::T(
                            ResponseBuilder::new()
                                .description(description)
                                .content("application/problem+json", problem())
                                .build(),
                        )
                    });
                }
                for (status, response) in responses.iter_mut() {
                    if let (true, RefOr::T(response)) = (status.as_str() >= "400", response) {
                        response.content.clear();
                        response.content.insert("application/problem+json".to_owned(), problem());
                    }
                }
            }
        }
    }
}
