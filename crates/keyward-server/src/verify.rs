//! `POST /v1/verify`: the hot path. The body is parsed borrowing from the request bytes, the
//! verifier answers from its cache, and the answer is written straight from the cached policy.

use std::borrow::Cow;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::LazyLock;
use std::time::Instant;

use axum::body::{Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, MethodRouter};
use futures_util::FutureExt as _;
use keyward_core::policy::{EffectiveChannels, KeyPolicy, VerifyRequest, MAX_REQUESTED_CHANNELS};
use keyward_core::signing::{SignedRequest, EMPTY_BODY_SHA256};
use keyward_core::Code;
use keyward_runtime::{Outcome, Prerendered, RateInfo};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::app::{self, AppState};
use crate::auth;
use crate::extract;
use crate::problem::ApiError;
use crate::telemetry;

/// The verification question. Unknown fields are refused: a misspelt `scope` must not turn
/// into "no scope required".
// No Debug: it holds secrets that must never reach a log line.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyBody<'a> {
    #[serde(borrow, default, deserialize_with = "optional_text")]
    #[schema(value_type = String)]
    pub key: Option<Cow<'a, str>>,
    /// One scope or a list; all are required.
    #[serde(borrow, default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub scope: Option<Scopes<'a>>,
    #[serde(borrow, default, deserialize_with = "optional_text")]
    #[schema(value_type = Option<String>)]
    pub client_ip: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "optional_text")]
    #[schema(value_type = Option<String>)]
    pub sender: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "optional_text_list")]
    #[schema(value_type = Option<Vec<String>>)]
    pub channels: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow, default, deserialize_with = "signed_request_object")]
    pub request: Option<SignedRequestBody<'a>>,
}

/// A string borrowed from the body unless it holds an escape. serde's own `Cow<str>` borrows
/// only as a field of exactly that type: inside an `Option` or a list it always copies, which
/// was a verification's two allocations for the key and the client IP (callgrind).
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

fn optional_text<'de: 'a, 'a, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Cow<'a, str>>, D::Error> {
    Ok(Option::<Text<'a>>::deserialize(deserializer)?.map(|text| text.0))
}

fn optional_text_list<'de: 'a, 'a, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<Cow<'a, str>>>, D::Error> {
    Ok(Option::<Vec<Text<'a>>>::deserialize(deserializer)?.map(|list| list.into_iter().map(|text| text.0).collect()))
}

/// `request` is an object or null. serde would also fill the struct from an array
/// (`"request": []`), which the schema refuses.
fn signed_request_object<'de: 'a, 'a, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SignedRequestBody<'a>>, D::Error> {
    struct ObjectVisitor;
    impl<'de> Visitor<'de> for ObjectVisitor {
        type Value = Option<SignedRequestBody<'de>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object with method, path, timestamp and signature")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
            deserializer.deserialize_any(self)
        }
        fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            SignedRequestBody::deserialize(de::value::MapAccessDeserializer::new(map)).map(Some)
        }
    }
    deserializer.deserialize_option(ObjectVisitor)
}

/// The signed parts of the platform's request.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignedRequestBody<'a> {
    #[serde(borrow, default)]
    #[schema(value_type = String)]
    pub method: Cow<'a, str>,
    /// The request target exactly as sent (path and query).
    #[serde(borrow, default)]
    #[schema(value_type = String)]
    pub path: Cow<'a, str>,
    /// Decimal Unix seconds.
    #[serde(borrow, default)]
    #[schema(value_type = String)]
    pub timestamp: Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "optional_text")]
    #[schema(value_type = Option<String>)]
    pub signature: Option<Cow<'a, str>>,
    /// Lowercase hex SHA-256 of the body; defaults to the empty body's.
    #[serde(borrow, default, deserialize_with = "optional_text")]
    #[schema(value_type = Option<String>)]
    pub body_sha256: Option<Cow<'a, str>>,
}

/// `"messages:send"` or `["messages:send", "templates:read"]`, read as a slice either way (one
/// scope, the common case, without a list to allocate).
#[derive(Debug)]
pub enum Scopes<'a> {
    One(Cow<'a, str>),
    List(Vec<Cow<'a, str>>),
}

impl<'a> Scopes<'a> {
    /// The scopes asked for (the fuzz targets read a parsed body through this).
    pub fn as_slice(&self) -> &[Cow<'a, str>] {
        match self {
            Self::One(scope) => std::slice::from_ref(scope),
            Self::List(scopes) => scopes,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Scopes<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScopesVisitor;
        impl<'de> Visitor<'de> for ScopesVisitor {
            type Value = Scopes<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scope or a list of scopes")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scopes::One(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scopes::One(Cow::Owned(v.to_owned())))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut scopes = Vec::with_capacity(seq.size_hint().unwrap_or(1).min(16));
                while let Some(Text(scope)) = seq.next_element::<Text<'de>>()? {
                    scopes.push(scope);
                }
                Ok(Scopes::List(scopes))
            }
        }
        deserializer.deserialize_any(ScopesVisitor)
    }
}

#[derive(Serialize)]
struct InvalidAnswer<'m> {
    valid: bool,
    code: &'static str,
    status: u16,
    message: &'m str,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_ms: Option<u64>,
}

/// Verify a key and a request against every rule (operator token required).
#[utoipa::path(post, path = "/v1/verify", tag = "verify", request_body = VerifyBody<'_>,
    responses((status = 200, description = "The decision: `valid`, `code`, and either the key's facts or `status` and `message`"),
              (status = 400, body = crate::problem::Problem), (status = 401, body = crate::problem::Problem), (status = 503, body = crate::problem::Problem)))]
pub async fn verify(State(state): State<AppState>, request: Request) -> Response {
    answer(&state, request).await
}

/// `POST /v1/verify` for the listener to answer before the router does ([`crate::net`]): routing
/// a request costs the path it matches, two extensions and a boxed future per layer, which
/// callgrind counted as a fifth of a verification (`scripts/callgrind-verify.sh`). Anything else,
/// other methods on this path included, goes to the router.
#[derive(Debug, Clone)]
pub struct VerifyDoor(AppState);

impl VerifyDoor {
    pub fn new(state: AppState) -> Self {
        Self(state)
    }

    /// Whether `request` is a verification.
    pub fn claims<B>(&self, request: &axum::http::Request<B>) -> bool {
        request.method() == Method::POST && request.uri().path() == "/v1/verify"
    }

    pub async fn answer<B>(&self, request: axum::http::Request<B>) -> Response
    where
        B: HttpBody<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        answer(&self.0, request).await
    }
}

/// The verification, with what the router's layers give other routes: panics answered as 500,
/// the answer headers, the access line as `verify_access_log` says; the body limit is
/// [`extract::json_body`]'s own.
async fn answer<B>(state: &AppState, request: axum::http::Request<B>) -> Response
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let started = Instant::now();
    let response = match AssertUnwindSafe(decide(state, request, started)).catch_unwind().await {
        // A decision's answer was made with every header already ([`json_answer`]).
        Ok(Ok(response)) => response,
        Ok(Err(error)) => with_api_headers(error.into_response()),
        Err(_) => with_api_headers(app::panicked()),
    };
    if state.config.verify_access_log {
        telemetry::log_request(&Method::POST, "/v1/verify", started, &response);
    } else {
        telemetry::log_failed_verification(&response);
    }
    response
}

/// `POST /v1/verify` in the router, for what does not come through the listener (tests driving
/// the router, other methods on the path); added after the layers, which [`VerifyDoor::answer`] does without.
pub fn route() -> MethodRouter<AppState> {
    post(verify).fallback(|| async { with_api_headers(app::method_not_allowed().await) })
}

/// The headers the layers give every API answer.
fn with_api_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// A decision's headers, made once: cloning them copies two small arrays, where inserting each
/// hashed its name and probed the map (callgrind: a fortieth of a verification).
static ANSWER_HEADERS: LazyLock<HeaderMap> = LazyLock::new(|| {
    let mut headers = HeaderMap::with_capacity(4);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers
});

async fn decide<B>(state: &AppState, request: axum::http::Request<B>, started: Instant) -> Result<Response, ApiError>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if !auth::is_operator(request.headers(), state)? {
        return Err(ApiError::code(Code::Unauthenticated, "POST /v1/verify takes the operator token"));
    }
    let bytes: Bytes = extract::json_body(request).await?;
    let body: VerifyBody<'_> = extract::parse_json(&bytes)?;
    if body.channels.as_ref().is_some_and(|list| list.len() > MAX_REQUESTED_CHANNELS) {
        return Err(ApiError::field("channels", "At most 100 channels may be named in one request"));
    }
    let client_ip = match body.client_ip.as_deref() {
        None | Some("") => None,
        Some(text) => Some(text.parse().map_err(|_| ApiError::field("client_ip", "Not an IP address"))?),
    };
    let uppercase_method;
    let signature = match &body.request {
        Some(signed) if signed.signature.is_some() => {
            let method: &str = if signed.method.bytes().any(|b| b.is_ascii_lowercase()) {
                uppercase_method = signed.method.to_ascii_uppercase();
                &uppercase_method
            } else {
                &signed.method
            };
            Some(SignedRequest {
                timestamp: &signed.timestamp,
                method,
                path_and_query: &signed.path,
                body_sha256: signed.body_sha256.as_deref().unwrap_or(EMPTY_BODY_SHA256),
                signature: signed.signature.as_deref().unwrap_or_default(),
            })
        }
        _ => None,
    };
    let request = VerifyRequest {
        scopes: body.scope.as_ref().map_or(&[], Scopes::as_slice),
        client_ip,
        sender: body.sender.as_deref(),
        channels: body.channels.as_deref(),
        signature,
    };
    let key = body.key.as_deref().unwrap_or("");
    let (code, answer) = state.verifier.verify(key, &request, render).await;
    state.verify_metrics.record(code, started);
    state.refusal_log.record(code, key, &state.config.key_format, client_ip, state.clock.as_ref());
    answer
}

fn render(outcome: Outcome<'_, '_>) -> (Code, Result<Response, ApiError>) {
    match outcome {
        Outcome::Valid { policy, prerendered, channels, rate } => {
            let bytes = with_scratch(|out| write_valid(out, policy, prerendered, &channels, rate));
            (Code::Valid, Ok(json_answer(bytes)))
        }
        Outcome::Invalid(failure) => {
            let code = failure.denial.code;
            let answer = InvalidAnswer {
                valid: false,
                code: code.as_str(),
                status: code.verify_status(),
                message: &failure.denial.message,
                retry_after_ms: failure.retry_after_ms,
            };
            (code, json_response(&answer))
        }
        Outcome::Unavailable => (
            Code::ServiceUnavailable,
            Err(ApiError::code(Code::ServiceUnavailable, "The key store is unavailable; try again shortly")),
        ),
    }
}

fn json_response(answer: &impl Serialize) -> Result<Response, ApiError> {
    let mut bytes = Vec::with_capacity(256);
    serde_json::to_writer(&mut bytes, answer).map_err(|e| ApiError::Internal(e.into()))?;
    Ok(json_answer(Bytes::from(bytes)))
}

/// A 200 with a JSON body and every API answer header.
fn json_answer(bytes: Bytes) -> Response {
    let mut response = Response::new(axum::body::Body::from(bytes));
    *response.headers_mut() = ANSWER_HEADERS.clone();
    response
}

/// Past this, a thread's answer buffer is given back after use (a key with a huge `meta`).
const SCRATCH_KEEP: usize = 16 * 1024;

/// Renders into this thread's reused buffer and copies the answer out once, at its size: one
/// allocation an answer, where a fresh `Vec` turned into `Bytes` cost two (the vector, then
/// the shared header `Bytes` puts on a vector with spare room).
fn with_scratch(write: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(1024));
    }
    SCRATCH.with_borrow_mut(|out| {
        out.clear();
        write(out);
        let bytes = Bytes::copy_from_slice(out);
        if out.capacity() > SCRATCH_KEEP {
            *out = Vec::with_capacity(1024);
        }
        bytes
    })
}

/// The `VALID` answer (SPEC §5), written directly: serde's generic serializer escaped every field
/// name and value byte by byte, the largest part of rendering a verification (callgrind). The
/// key's own members were rendered once, when it was cached ([`prerender`]); what varies by
/// request (channels, the rate limit) is written here.
/// `valid_answers_are_the_json_serde_writes` holds it to `serde_json`'s output.
fn write_valid(
    out: &mut Vec<u8>,
    policy: &KeyPolicy,
    prerendered: &Prerendered,
    channels: &EffectiveChannels<'_, '_>,
    rate: RateInfo,
) {
    out.extend_from_slice(br#"{"valid":true,"code":"VALID","#);
    if prerendered.is_empty() {
        // A verifier made without the server's `prerender`: the same members, rendered now.
        let rendered = prerender(policy);
        write_members(out, &rendered, channels, rate);
    } else {
        write_members(out, prerendered, channels, rate);
    }
}

fn write_members(out: &mut Vec<u8>, prerendered: &Prerendered, channels: &EffectiveChannels<'_, '_>, rate: RateInfo) {
    out.extend_from_slice(prerendered.before());
    if *channels == EffectiveChannels::All {
        out.extend_from_slice(br#""all""#);
    } else {
        out.push(b'[');
        let mut first = true;
        channels.for_each(|slug| {
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
            push_json_str(out, slug);
        });
        out.push(b']');
    }
    out.extend_from_slice(prerendered.after());
    let mut number = itoa::Buffer::new();
    out.extend_from_slice(br#","rate_limit":{"limit":"#);
    out.extend_from_slice(number.format(rate.limit).as_bytes());
    out.extend_from_slice(br#","remaining":"#);
    out.extend_from_slice(number.format(rate.remaining).as_bytes());
    out.extend_from_slice(br#","reset_ms":"#);
    out.extend_from_slice(number.format(rate.reset_ms).as_bytes());
    out.extend_from_slice(b"}}");
}

/// The members of a `VALID` answer that depend only on the key: up to `"channels":`, and from
/// `environment` to `meta`. The verifier calls it once for each key it caches.
pub fn prerender(policy: &KeyPolicy) -> Prerendered {
    let mut before = Vec::with_capacity(128);
    before.extend_from_slice(br#""key_id":"#);
    push_json_str(&mut before, policy.key_id.as_str());
    before.extend_from_slice(br#","org_id":"#);
    push_json_str(&mut before, policy.org_id.as_str());
    before.extend_from_slice(br#","name":"#);
    push_json_str(&mut before, &policy.name);
    before.extend_from_slice(br#","scopes":["#);
    push_json_list(&mut before, policy.scopes.iter().map(String::as_str));
    before.extend_from_slice(br#"],"channels":"#);
    let mut after = Vec::with_capacity(64);
    after.extend_from_slice(br#","environment":"#);
    push_json_str(&mut after, policy.environment.as_str());
    after.extend_from_slice(br#","meta":"#);
    match &policy.meta {
        // A map of JSON values always serializes.
        Some(meta) => serde_json::to_writer(&mut after, meta).expect("a JSON object serializes"),
        None => after.extend_from_slice(b"null"),
    }
    Prerendered::new(&before, &after)
}

fn push_json_list<'s>(out: &mut Vec<u8>, items: impl Iterator<Item = &'s str>) {
    for (n, item) in items.enumerate() {
        if n > 0 {
            out.push(b',');
        }
        push_json_str(out, item);
    }
}

/// A JSON string: copied as it is when no byte needs escaping (ids, scopes, most names), else
/// escaped by `serde_json`. The scan counts over every byte instead of stopping at the first that
/// needs escaping (which almost none do), so the compiler does it sixteen bytes at a time.
fn push_json_str(out: &mut Vec<u8>, text: &str) {
    let to_escape = text.bytes().filter(|&b| b < 0x20 || b == b'"' || b == b'\\').count();
    if to_escape == 0 {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, text).expect("a string serializes");
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::sync::Arc;

    use keyward_core::ids::{KeyId, OrgId};
    use keyward_core::key::Environment;
    use keyward_core::ratelimit::Quota;
    use keyward_core::record::Channels;
    use serde_json::{json, Value};

    use super::*;

    fn policy(name: &str, scopes: &[&str], meta: Option<Value>) -> KeyPolicy {
        KeyPolicy {
            key_id: KeyId::parse("key_answertest").unwrap(),
            org_id: OrgId::parse("org_answertest").unwrap(),
            name: name.to_owned(),
            revoked: false,
            expires_at: None,
            ip_allowlist: Vec::new(),
            signing_key: None,
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            phone_allowlist: Vec::new(),
            org_phone_numbers: Arc::from(Vec::new()),
            org_channels: Arc::from(vec!["sms".to_owned(), "whatsapp".to_owned()]),
            channels: Channels::All,
            environment: Environment::Test,
            meta: meta.map(|meta| meta.as_object().expect("an object").clone()),
            quota: Quota::per_second(80),
        }
    }

    /// The answer as serde writes it, members in the SPEC's order: what [`write_valid`] must match.
    #[derive(Serialize)]
    struct Reference<'p> {
        valid: bool,
        code: &'static str,
        key_id: &'p str,
        org_id: &'p str,
        name: &'p str,
        scopes: &'p [String],
        channels: Value,
        environment: &'static str,
        meta: Option<&'p serde_json::Map<String, Value>>,
        rate_limit: Value,
    }

    #[test]
    fn valid_answers_are_the_json_serde_writes() {
        let rate = RateInfo { limit: 80, remaining: 0, reset_ms: 12_500 };
        let tricky = "quote \" back \\ slash \u{1} tab\t é 🔑 \u{7f} \u{2028}";
        let requested = [Cow::Borrowed("sms"), Cow::Owned(tricky.to_owned())];
        let key_channels = ["whatsapp".to_owned()];
        let cases = [
            (policy("payments", &["messages:send", "templates:read"], None), EffectiveChannels::All),
            (
                policy(tricky, &[], Some(json!({ "team": tricky, "n": [1, 2.5, null] }))),
                EffectiveChannels::Key(&key_channels),
            ),
            (policy("", &[tricky, "*"], Some(json!({}))), EffectiveChannels::Requested(&requested)),
        ];
        for (policy, channels) in &cases {
            let mut written = Vec::new();
            write_valid(&mut written, policy, &prerender(policy), channels, rate);
            let mut unrendered = Vec::new();
            write_valid(&mut unrendered, policy, &Prerendered::default(), channels, rate);
            assert_eq!(written, unrendered, "rendered when cached or on the spot, the same answer");
            let text = String::from_utf8(written).expect("UTF-8");
            let mut listed = Vec::new();
            channels.for_each(|slug| listed.push(slug.to_owned()));
            let reference = Reference {
                valid: true,
                code: "VALID",
                key_id: policy.key_id.as_str(),
                org_id: policy.org_id.as_str(),
                name: &policy.name,
                scopes: &policy.scopes,
                channels: if *channels == EffectiveChannels::All { json!("all") } else { json!(listed) },
                environment: "test",
                meta: policy.meta.as_ref(),
                rate_limit: json!({ "limit": 80, "remaining": 0, "reset_ms": 12_500 }),
            };
            assert_eq!(text, serde_json::to_string(&reference).expect("serializes"));
        }
    }

    #[test]
    fn body_strings_are_borrowed_unless_escaped_and_read_the_same_either_way() {
        let text = r#"{"key":"kw_live_abc","scope":["messages:send","a\u0021"],"client_ip":"203.0.113.7",
            "sender":"+1\u0034","channels":["sms","wh\u0061tsapp"],
            "request":{"method":"POST","path":"/","timestamp":"1","signature":"v1=ab","body_sha256":"\u0061b"}}"#;
        let body: VerifyBody<'_> = extract::parse_json(text.as_bytes()).expect("parses");
        let borrowed = |cow: &Cow<'_, str>| matches!(cow, Cow::Borrowed(_));
        let key = body.key.as_ref().expect("key");
        assert!(borrowed(key) && key == "kw_live_abc");
        let scopes = body.scope.as_ref().expect("scopes").as_slice();
        assert_eq!(scopes, ["messages:send", "a!"]);
        assert!(borrowed(&scopes[0]) && !borrowed(&scopes[1]));
        assert!(borrowed(body.client_ip.as_ref().expect("client_ip")));
        assert_eq!(body.sender.as_deref(), Some("+14"));
        assert_eq!(body.channels.as_deref().expect("channels"), ["sms", "whatsapp"]);
        let signed = body.request.as_ref().expect("request");
        assert_eq!((signed.signature.as_deref(), signed.body_sha256.as_deref()), (Some("v1=ab"), Some("ab")));

        let one: VerifyBody<'_> = extract::parse_json(br#"{"key":null,"scope":"messages:send"}"#).expect("parses");
        assert!(one.key.is_none());
        assert_eq!(one.scope.as_ref().expect("scope").as_slice(), ["messages:send"]);
        assert!(extract::parse_json::<VerifyBody<'_>>(br#"{"key":7}"#).is_err(), "a key is a string");
    }
}
