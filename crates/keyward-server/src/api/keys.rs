//! API keys: create, list, get, update, revoke, roll, and look up by value.

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::Json;
use keyward_core::ids::KeyId;
use keyward_core::record::{self, KeyRecord};
use keyward_core::validate::{KeyPatchInput, NewKeyInput};
use keyward_store::{KeyFilter, StatusFilter};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{present, rfc3339, ListResponse};
use crate::app::AppState;
use crate::auth::{Caller, OrgAccess, Permission};
use crate::extract::{self, ApiJson, ApiQuery};
use crate::manage::CreatedKey;
use crate::problem::{ApiError, Problem};

/// A key as the API shows it. Never carries the key or its signing secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyView {
    pub id: String,
    pub org_id: String,
    pub name: String,
    /// The first 16 characters of the key, e.g. `kw_live_a1b2c3d4`.
    pub prefix: String,
    pub scopes: Vec<String>,
    pub hmac_required: bool,
    /// Requests per second; null = the platform default.
    pub rate_limit: Option<u32>,
    pub expires_at: Option<String>,
    pub ip_allowlist: Vec<String>,
    pub phone_allowlist: Vec<String>,
    /// `"all"` or a list of channel slugs.
    #[schema(value_type = ChannelsSchema)]
    pub channels: Value,
    pub environment: &'static str,
    pub external_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub meta: Option<serde_json::Map<String, Value>>,
    /// `active`, `revoked` or `expired`.
    pub status: &'static str,
    pub created_at: String,
    pub created_by: String,
    pub revoked_at: Option<String>,
    pub revoked_by: Option<String>,
    pub last_used_at: Option<String>,
}

impl KeyView {
    pub fn from_record(key: &KeyRecord, now: time::OffsetDateTime) -> Self {
        let settings = &key.settings;
        Self {
            id: key.id.to_string(),
            org_id: key.org_id.to_string(),
            name: settings.name.clone(),
            prefix: key.prefix.clone(),
            scopes: settings.scopes.clone(),
            hmac_required: settings.hmac_required,
            rate_limit: settings.rate_limit,
            expires_at: settings.expires_at.map(rfc3339),
            ip_allowlist: settings.ip_allowlist.iter().map(record::display_net).collect(),
            phone_allowlist: settings.phone_allowlist.clone(),
            channels: record::channels_json(&settings.channels),
            environment: settings.environment.as_str(),
            external_id: settings.external_id.clone(),
            meta: settings.meta.clone(),
            status: key.status(now).as_str(),
            created_at: rfc3339(key.created_at),
            created_by: key.created_by.clone(),
            revoked_at: key.revoked_at.map(rfc3339),
            revoked_by: key.revoked_by.clone(),
            last_used_at: key.last_used_at.map(rfc3339),
        }
    }
}

/// How channels are written: `"all"`, or a list of channel slugs (documentation only).
#[derive(Debug, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code, reason = "describes a JSON shape for OpenAPI; never constructed")]
pub enum ChannelsSchema {
    /// `"all"`.
    All(String),
    Only(Vec<String>),
}

/// `{key: {…}}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyEnvelope {
    pub key: KeyView,
}

/// The answer of create and roll: the only place `secret` and `signing_secret` ever appear.
// No Debug: it holds secrets that must never reach a log line.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedKeyResponse {
    pub key: KeyView,
    /// The full API key. Shown once.
    pub secret: String,
    /// The HMAC signing secret when the key requires signatures, else null. Shown once.
    pub signing_secret: Option<String>,
}

impl CreatedKeyResponse {
    pub fn new(created: &CreatedKey, now: time::OffsetDateTime) -> Self {
        Self {
            key: KeyView::from_record(&created.record, now),
            secret: created.secret.expose().to_owned(),
            signing_secret: created.signing_secret.as_ref().map(|s| s.expose().to_owned()),
        }
    }
}

/// Create input. Field types are checked by the rules so each gets its documented message.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    #[schema(value_type = String)]
    pub name: Option<Value>,
    #[schema(value_type = Option<Vec<String>>)]
    pub scopes: Option<Value>,
    #[schema(value_type = Option<bool>)]
    pub hmac_required: Option<Value>,
    #[schema(value_type = Option<u32>)]
    pub rate_limit: Option<Value>,
    #[schema(value_type = Option<String>)]
    pub expires_at: Option<Value>,
    #[schema(value_type = Option<Vec<String>>)]
    pub ip_allowlist: Option<Value>,
    #[schema(value_type = Option<Vec<String>>)]
    pub phone_allowlist: Option<Value>,
    /// `"all"` or a list of the org's channel slugs.
    #[schema(value_type = Option<ChannelsSchema>)]
    pub channels: Option<Value>,
    /// `live` or `test`.
    #[schema(value_type = Option<String>)]
    pub environment: Option<Value>,
    #[schema(value_type = Option<String>)]
    pub external_id: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub meta: Option<Value>,
}

impl From<CreateKey> for NewKeyInput {
    fn from(body: CreateKey) -> Self {
        Self {
            name: body.name,
            scopes: body.scopes,
            hmac_required: body.hmac_required,
            rate_limit: body.rate_limit,
            expires_at: body.expires_at,
            ip_allowlist: body.ip_allowlist,
            phone_allowlist: body.phone_allowlist,
            channels: body.channels,
            environment: body.environment,
            external_id: body.external_id,
            meta: body.meta,
        }
    }
}

/// Create a key. The answer carries the key and signing secret, this once.
#[utoipa::path(post, path = "/v1/orgs/{org}/keys", tag = "keys", request_body = CreateKey, params(("org" = String, Path)),
    responses((status = 201, body = CreatedKeyResponse), (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn create(
    State(state): State<AppState>,
    access: OrgAccess,
    ApiJson(body): ApiJson<CreateKey>,
) -> Result<(StatusCode, Json<CreatedKeyResponse>), ApiError> {
    access.require(Permission::WriteKeys)?;
    let store = access.store();
    let ceiling = access.caller.principal.scope_ceiling();
    let created =
        state.create_key(store.as_ref(), &access.caller.actor(), &access.caller.meta, &body.into(), ceiling).await?;
    Ok((StatusCode::CREATED, Json(CreatedKeyResponse::new(&created, state.clock.now()))))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListKeysQuery {
    /// `active`, `revoked` or `expired`.
    pub status: Option<String>,
    /// `usr_…`, `key_…` or `operator`.
    pub created_by: Option<String>,
    /// Keys whose name contains it (case-insensitive) or whose prefix starts with it.
    pub q: Option<String>,
    /// 1–100, default 20.
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// The org's keys, newest first.
#[utoipa::path(get, path = "/v1/orgs/{org}/keys", tag = "keys", params(("org" = String, Path), ListKeysQuery),
    responses((status = 200, body = ListResponse<KeyView>), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    access: OrgAccess,
    ApiQuery(query): ApiQuery<ListKeysQuery>,
) -> Result<Json<ListResponse<KeyView>>, ApiError> {
    access.require(Permission::ReadKeys)?;
    let status = match query.status.as_deref() {
        None | Some("") => None,
        Some("active") => Some(StatusFilter::Active),
        Some("revoked") => Some(StatusFilter::Revoked),
        Some("expired") => Some(StatusFilter::Expired),
        Some(_) => return Err(ApiError::field("status", "Status must be active, revoked or expired")),
    };
    let created_by = query.created_by.filter(|s| !s.is_empty());
    if created_by.as_ref().is_some_and(|s| s.chars().count() > 100) {
        return Err(ApiError::field("created_by", "Too long to be an actor id"));
    }
    let search = search_param(query.q)?;
    let page = extract::page(query.limit.as_deref(), query.cursor.as_deref())?;
    let now = state.clock.now();
    let filter = KeyFilter { status, created_by, search, now };
    let paged = access.store().list_keys(&filter, page).await?;
    Ok(Json(ListResponse::from_paged(paged, |key| KeyView::from_record(&key, now))))
}

/// The list's search text, trimmed; empty is no search. A full key does not belong in a URL
/// (access logs, history): it is refused, pointing at `POST /v1/keys/lookup`.
pub fn search_param(q: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(q) = q.map(|q| q.trim().to_owned()).filter(|q| !q.is_empty()) else { return Ok(None) };
    if q.chars().count() > 64 {
        return Err(ApiError::field("q", "Search for at most 64 characters: a name or the start of a prefix"));
    }
    if looks_like_a_full_key(&q) {
        return Err(ApiError::field("q", "That looks like a full key: look it up with POST /v1/keys/lookup instead"));
    }
    Ok(Some(q))
}

/// `{prefix}_{live|test}_` followed by at least 32 base62 characters.
fn looks_like_a_full_key(text: &str) -> bool {
    let mut parts = text.splitn(3, '_');
    let (Some(prefix), Some(environment), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    !prefix.is_empty()
        && matches!(environment, "live" | "test")
        && rest.len() >= 32
        && rest.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The key id from the path; a malformed id is simply not found.
fn key_id(params: &std::collections::HashMap<String, String>) -> Result<KeyId, ApiError> {
    params.get("id").and_then(|id| KeyId::parse(id).ok()).ok_or(ApiError::NotFound)
}

type PathParams = Path<std::collections::HashMap<String, String>>;

/// One key (no secret).
#[utoipa::path(get, path = "/v1/orgs/{org}/keys/{id}", tag = "keys", params(("org" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = KeyEnvelope), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    access: OrgAccess,
    Path(params): PathParams,
) -> Result<Json<KeyEnvelope>, ApiError> {
    access.require(Permission::ReadKeys)?;
    let id = key_id(&params)?;
    let key = access.store().find_key(&id).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(KeyEnvelope { key: KeyView::from_record(&key, state.clock.now()) }))
}

/// Edit input: absent fields stay; `null` clears `rate_limit`, `expires_at` and `meta`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateKey {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub name: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<String>>)]
    pub scopes: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<ChannelsSchema>)]
    pub channels: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<String>>)]
    pub ip_allowlist: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<String>>)]
    pub phone_allowlist: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>)]
    pub rate_limit: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub expires_at: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    pub meta: Option<Value>,
}

/// Edit a key; 409 `API_KEY_INACTIVE` when it is revoked.
#[utoipa::path(patch, path = "/v1/orgs/{org}/keys/{id}", tag = "keys", request_body = UpdateKey,
    params(("org" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = KeyEnvelope), (status = 400, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn update(
    State(state): State<AppState>,
    access: OrgAccess,
    Path(params): PathParams,
    ApiJson(body): ApiJson<UpdateKey>,
) -> Result<Json<KeyEnvelope>, ApiError> {
    access.require(Permission::WriteKeys)?;
    let id = key_id(&params)?;
    let input = KeyPatchInput {
        name: body.name,
        scopes: body.scopes,
        channels: body.channels,
        ip_allowlist: body.ip_allowlist,
        phone_allowlist: body.phone_allowlist,
        rate_limit: body.rate_limit,
        expires_at: body.expires_at,
        meta: body.meta,
    };
    let store = access.store();
    let ceiling = access.caller.principal.scope_ceiling();
    let key =
        state.update_key(store.as_ref(), &access.caller.actor(), &access.caller.meta, &id, &input, ceiling).await?;
    Ok(Json(KeyEnvelope { key: KeyView::from_record(&key, state.clock.now()) }))
}

/// Revoke a key: immediate, irreversible, idempotent.
#[utoipa::path(post, path = "/v1/orgs/{org}/keys/{id}/revoke", tag = "keys", params(("org" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = KeyEnvelope), (status = 404, body = Problem)))]
pub async fn revoke(
    State(state): State<AppState>,
    access: OrgAccess,
    Path(params): PathParams,
) -> Result<Json<KeyEnvelope>, ApiError> {
    access.require(Permission::WriteKeys)?;
    let id = key_id(&params)?;
    let store = access.store();
    let ceiling = access.caller.principal.scope_ceiling();
    let key = state.revoke_key(store.as_ref(), &access.caller.actor(), &access.caller.meta, &id, ceiling).await?;
    Ok(Json(KeyEnvelope { key: KeyView::from_record(&key, state.clock.now()) }))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollKeyBody {
    /// 0–604800 seconds the old key stays valid; 0 (the default) revokes it at once.
    #[serde(default)]
    #[schema(value_type = Option<i64>)]
    pub grace_seconds: Option<Value>,
}

/// Replace a key with a new one with the same settings and a new signing secret.
#[utoipa::path(post, path = "/v1/orgs/{org}/keys/{id}/roll", tag = "keys", request_body = Option<RollKeyBody>,
    params(("org" = String, Path), ("id" = String, Path)),
    responses((status = 201, body = CreatedKeyResponse), (status = 400, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn roll(
    State(state): State<AppState>,
    access: OrgAccess,
    Path(params): PathParams,
    request: Request,
) -> Result<(StatusCode, Json<CreatedKeyResponse>), ApiError> {
    access.require(Permission::WriteKeys)?;
    let id = key_id(&params)?;
    let body: RollKeyBody = optional_json(request).await?;
    let grace_seconds = match body.grace_seconds {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => {
            keyward_core::validate::whole_number(&n).and_then(|n| i64::try_from(n).ok()).ok_or_else(grace_error)?
        }
        Some(_) => return Err(grace_error()),
    };
    let store = access.store();
    let ceiling = access.caller.principal.scope_ceiling();
    let created = state
        .roll_key(store.as_ref(), &access.caller.actor(), &access.caller.meta, &id, grace_seconds, ceiling)
        .await?;
    Ok((StatusCode::CREATED, Json(CreatedKeyResponse::new(&created, state.clock.now()))))
}

fn grace_error() -> ApiError {
    ApiError::field("grace_seconds", "Grace period must be an integer between 0 and 604800 seconds")
}

/// A JSON body that may be left out entirely.
async fn optional_json<T: Default + serde::de::DeserializeOwned>(request: Request) -> Result<T, ApiError> {
    let has_body = request.headers().get(axum::http::header::CONTENT_LENGTH).is_none_or(|len| len != "0")
        && request.headers().contains_key(axum::http::header::CONTENT_TYPE);
    if !has_body {
        return Ok(T::default());
    }
    let bytes: Bytes = extract::json_body(request).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    extract::parse_json(&bytes)
}

// No Debug: it holds secrets that must never reach a log line.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupKey {
    /// The full key. Sent in the body so it never lands in an access log.
    pub key: String,
}

/// Look a key up by its value: its metadata, or 404.
#[utoipa::path(post, path = "/v1/keys/lookup", tag = "keys", request_body = LookupKey,
    responses((status = 200, body = KeyEnvelope), (status = 404, body = Problem)))]
pub async fn lookup(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<LookupKey>,
) -> Result<Json<KeyEnvelope>, ApiError> {
    caller.require(Permission::ReadKeys)?;
    let parsed = state.config.key_format.parse(&body.key).ok_or(ApiError::NotFound)?;
    let key = state.find_key_by_value(&parsed).await?.ok_or(ApiError::NotFound)?;
    // Another org's key looks exactly like no key.
    if caller.principal.org_id().is_some_and(|own| *own != key.org_id) {
        return Err(ApiError::NotFound);
    }
    Ok(Json(KeyEnvelope { key: KeyView::from_record(&key, state.clock.now()) }))
}
