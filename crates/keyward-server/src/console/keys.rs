//! Settings → API keys: the list (with search and filters) and one key's page. Both only read;
//! their dialogs (create, edit, roll, revoke, look up) call the JSON API.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keyward_core::ids::KeyId;
use keyward_core::record::{self, Channels, KeyRecord, KeyStatus};
use keyward_store::{AuditFilter, Cursor, KeyFilter, Page, StatusFilter};
use serde::Deserialize;
use time::OffsetDateTime;

use super::pages::{
    actor_names, change_rows, html, query_string, render_forbidden, render_not_found, ChangeRow, Moment, Nav,
    SelectOption,
};
use super::ConsoleUser;
use crate::api::keys::{search_param, KeyView};
use crate::app::AppState;
use crate::problem::ApiError;

pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub scopes: Vec<String>,
    pub hmac: bool,
    pub status: &'static str,
    pub revoked_at: Option<Moment>,
    pub expires: Option<Moment>,
    pub last_used: Option<Moment>,
    pub created: Moment,
    pub created_by: String,
    pub can_revoke: bool,
    /// The key as the API shows it (no secret), for the Edit dialog to start from.
    pub json: String,
}

pub struct ScopeOption {
    pub name: String,
    pub description: &'static str,
    pub checked: bool,
}

pub struct ChannelOption {
    pub slug: String,
    pub name: String,
}

/// What the Create and Edit dialogs offer: the catalogue, the org's numbers and channels.
struct FormChoices {
    scopes: Vec<ScopeOption>,
    numbers: Vec<String>,
    channels: Vec<ChannelOption>,
}

async fn form_choices(state: &AppState, user: &ConsoleUser) -> Result<FormChoices, ApiError> {
    let org = state.store.org(&user.org.id);
    let defaults = state.config.catalogue.defaults();
    let scopes = state
        .config
        .catalogue
        .scopes()
        .iter()
        .filter(|s| s.as_str() != keyward_core::validate::ALL_SCOPES)
        .map(|s| ScopeOption { description: describe(s), checked: defaults.contains(s), name: s.clone() })
        .collect();
    Ok(FormChoices {
        scopes,
        numbers: org.phone_numbers().await?.into_iter().map(|n| n.number).collect(),
        channels: org.channels().await?.into_iter().map(|c| ChannelOption { slug: c.slug, name: c.name }).collect(),
    })
}

#[derive(Template)]
#[template(path = "api_keys.html")]
struct ApiKeysPage {
    nav: Nav,
    keys: Vec<KeyRow>,
    next_query: Option<String>,
    first_query: String,
    first_page: bool,
    filtered: bool,
    search: String,
    search_error: String,
    statuses: Vec<SelectOption>,
    creators: Vec<SelectOption>,
    scopes: Vec<ScopeOption>,
    numbers: Vec<String>,
    channels: Vec<ChannelOption>,
    default_rate_limit: u32,
    signature_header: String,
    timestamp_header: String,
}

/// The descriptions of seed 000's scope table; catalogue scopes without one show no text.
fn describe(scope: &str) -> &'static str {
    match scope {
        "messages:send" => "Send messages",
        "templates:read" => "Read templates",
        "templates:write" => "Create and edit templates",
        "contacts:read" => "Read contacts",
        "contacts:write" => "Create, edit and delete contacts",
        "blacklist:read" => "Read the blacklist",
        "blacklist:write" => "Create, edit and delete blacklist entries",
        "library_assets:read" => "Read media library assets",
        "library_assets:write" => "Upload media library assets",
        "keys:read" => "Read this organization's API keys",
        "keys:write" => "Create, edit and revoke this organization's API keys",
        _ => "",
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    cursor: Option<String>,
    q: Option<String>,
    status: Option<String>,
    created_by: Option<String>,
}

fn status_label(status: KeyStatus) -> &'static str {
    match status {
        KeyStatus::Active => "ACTIVE",
        KeyStatus::Revoked => "REVOKED",
        KeyStatus::Expired => "EXPIRED",
    }
}

fn key_json(key: &KeyRecord, now: OffsetDateTime) -> String {
    serde_json::to_string(&KeyView::from_record(key, now)).unwrap_or_else(|_| "{}".to_owned())
}

fn key_row(key: KeyRecord, now: OffsetDateTime, names: &HashMap<String, String>) -> KeyRow {
    let status = key.status(now);
    KeyRow {
        id: key.id.to_string(),
        json: key_json(&key, now),
        prefix: key.prefix,
        scopes: key.settings.scopes,
        hmac: key.settings.hmac_required,
        status: status_label(status),
        revoked_at: key.revoked_at.map(|at| Moment::new(now, at)),
        expires: key.settings.expires_at.map(|at| Moment::new(now, at)),
        last_used: key.last_used_at.map(|at| Moment::new(now, at)),
        created: Moment::dated(key.created_at),
        created_by: names.get(&key.created_by).cloned().unwrap_or(key.created_by),
        can_revoke: status != KeyStatus::Revoked,
        name: key.settings.name,
    }
}

pub async fn list(State(state): State<AppState>, user: ConsoleUser, Query(query): Query<ListQuery>) -> Response {
    if !user.member.role.manages_keys() {
        return render_forbidden(&user);
    }
    match list_page(&state, &user, query).await {
        Ok(page) => html(StatusCode::OK, page.render()),
        Err(error) => error.into_response(),
    }
}

async fn list_page(state: &AppState, user: &ConsoleUser, query: ListQuery) -> Result<ApiKeysPage, ApiError> {
    let org = state.store.org(&user.org.id);
    let now = state.clock.now();
    let cursor = query.cursor.as_deref().and_then(Cursor::decode);
    let search_text = query.q.clone().unwrap_or_default().trim().to_owned();
    // A refused search (a pasted full key, too long) lists nothing and says why.
    let (search, search_error) = match search_param(query.q) {
        Ok(search) => (search, String::new()),
        Err(ApiError::Validation(errors)) => (
            None,
            errors
                .into_iter()
                .next()
                .map(|e| e.message)
                .unwrap_or_default()
                .replace(" with POST /v1/keys/lookup", " with Look up a full key"),
        ),
        Err(other) => return Err(other),
    };
    let status_text = query.status.filter(|s| !s.is_empty());
    let status = match status_text.as_deref() {
        Some("active") => Some(StatusFilter::Active),
        Some("revoked") => Some(StatusFilter::Revoked),
        Some("expired") => Some(StatusFilter::Expired),
        _ => None,
    };
    let created_by = query.created_by.filter(|s| !s.is_empty() && s.len() <= 100);
    let filter = KeyFilter { status, created_by: created_by.clone(), search: search.clone(), now };
    let page = if search_error.is_empty() {
        org.list_keys(&filter, Page { limit: 20, cursor }).await?
    } else {
        keyward_store::Paged { items: Vec::new(), next: None }
    };
    let names = actor_names(state, user).await?;
    let choices = form_choices(state, user).await?;
    let filters = [("q", search.as_deref()), ("status", status_text.as_deref()), ("created_by", created_by.as_deref())];
    let first_query = query_string(&filters);
    let next_query = page.next.map(|next| {
        let cursor = next.encode();
        query_string(&[("cursor", Some(cursor.as_str())), filters[0], filters[1], filters[2]])
            .trim_start_matches('?')
            .to_owned()
    });
    let statuses = [("", "Any status"), ("active", "Active"), ("expired", "Expired"), ("revoked", "Revoked")]
        .into_iter()
        .map(|(value, label)| SelectOption {
            selected: status_text.as_deref().unwrap_or("") == value,
            value: value.to_owned(),
            label: label.to_owned(),
        })
        .collect();
    let mut creators: Vec<SelectOption> = names
        .iter()
        .map(|(id, name)| SelectOption {
            selected: created_by.as_deref() == Some(id.as_str()),
            value: id.clone(),
            label: name.clone(),
        })
        .collect();
    creators.sort_by(|a, b| a.label.cmp(&b.label));
    Ok(ApiKeysPage {
        nav: Nav::new(user, "api-keys"),
        keys: page.items.into_iter().map(|k| key_row(k, now, &names)).collect(),
        next_query,
        first_query,
        first_page: cursor.is_none(),
        filtered: !search_text.is_empty() || status.is_some() || created_by.is_some(),
        search: search_text,
        search_error,
        statuses,
        creators,
        scopes: choices.scopes,
        numbers: choices.numbers,
        channels: choices.channels,
        default_rate_limit: state.config.default_rate_limit,
        signature_header: state.config.signature_header.clone(),
        timestamp_header: state.config.timestamp_header.clone(),
    })
}

/// Every field of SPEC §2, as a person reads it.
pub struct KeyDetail {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub environment: &'static str,
    pub status: &'static str,
    pub scopes: Vec<String>,
    pub hmac: bool,
    /// Empty: all recipients.
    pub channels: Vec<String>,
    pub rate_limit: String,
    pub ip_allowlist: Vec<String>,
    pub phone_allowlist: Vec<String>,
    pub expires: Option<Moment>,
    pub created: Moment,
    pub created_by: String,
    pub last_used: Option<Moment>,
    pub revoked_at: Option<Moment>,
    pub revoked_by: String,
    pub external_id: Option<String>,
    pub meta: Option<String>,
    pub rolled_from: Option<String>,
    pub rolled_to: Option<String>,
    pub can_revoke: bool,
    pub json: String,
}

/// One line of a key's recent activity.
pub struct KeyEventRow {
    pub at: Moment,
    pub actor_name: String,
    pub action: String,
    pub changes: Vec<ChangeRow>,
}

#[derive(Template)]
#[template(path = "key_detail.html")]
struct KeyDetailPage {
    nav: Nav,
    key: KeyDetail,
    events: Vec<KeyEventRow>,
    scopes: Vec<ScopeOption>,
    numbers: Vec<String>,
    channels: Vec<ChannelOption>,
    default_rate_limit: u32,
    signature_header: String,
    timestamp_header: String,
}

pub async fn detail(State(state): State<AppState>, user: ConsoleUser, Path(id): Path<String>) -> Response {
    if !user.member.role.manages_keys() {
        return render_forbidden(&user);
    }
    let Ok(id) = KeyId::parse(&id) else { return render_not_found(&user) };
    match detail_page(&state, &user, &id).await {
        Ok(Some(page)) => html(StatusCode::OK, page.render()),
        Ok(None) => render_not_found(&user),
        Err(error) => error.into_response(),
    }
}

async fn detail_page(state: &AppState, user: &ConsoleUser, id: &KeyId) -> Result<Option<KeyDetailPage>, ApiError> {
    let org = state.store.org(&user.org.id);
    let Some(key) = org.find_key(id).await? else { return Ok(None) };
    let now = state.clock.now();
    let names = actor_names(state, user).await?;
    let filter = AuditFilter { target_id: Some(id.to_string()), ..AuditFilter::default() };
    let events = org.list_audit(&filter, Page { limit: 20, cursor: None }).await?.items;
    let linked = |action: &str, field: &str| {
        events
            .iter()
            .find(|record| record.event.action == action)
            .and_then(|record| record.event.changes.get(field))
            .and_then(|value| value.as_str())
            .map(str::to_owned)
    };
    let (rolled_to, rolled_from) = (linked("key.rolled", "rolled_to"), linked("key.created", "rolled_from"));
    let status = key.status(now);
    let settings = &key.settings;
    let name_of = |id: &str| names.get(id).cloned().unwrap_or_else(|| id.to_owned());
    let detail = KeyDetail {
        id: key.id.to_string(),
        name: settings.name.clone(),
        prefix: key.prefix.clone(),
        environment: settings.environment.as_str(),
        status: status_label(status),
        scopes: settings.scopes.clone(),
        hmac: settings.hmac_required,
        channels: match &settings.channels {
            Channels::All => Vec::new(),
            Channels::Only(list) => list.clone(),
        },
        rate_limit: settings.rate_limit.map_or_else(
            || format!("Default ({}/s)", state.config.default_rate_limit),
            |limit| format!("{limit} requests/second"),
        ),
        ip_allowlist: settings.ip_allowlist.iter().map(record::display_net).collect(),
        phone_allowlist: settings.phone_allowlist.clone(),
        expires: settings.expires_at.map(|at| Moment::new(now, at)),
        created: Moment::new(now, key.created_at),
        created_by: name_of(&key.created_by),
        last_used: key.last_used_at.map(|at| Moment::new(now, at)),
        revoked_at: key.revoked_at.map(|at| Moment::new(now, at)),
        revoked_by: key.revoked_by.as_deref().map(name_of).unwrap_or_default(),
        external_id: settings.external_id.clone(),
        meta: settings.meta.as_ref().and_then(|meta| serde_json::to_string_pretty(meta).ok()),
        rolled_from,
        rolled_to,
        can_revoke: status != KeyStatus::Revoked,
        json: key_json(&key, now),
    };
    let events = events
        .into_iter()
        .map(|record| {
            let event = record.event;
            KeyEventRow {
                at: Moment::new(now, event.at),
                actor_name: event.actor.name,
                action: event.action,
                changes: change_rows(&event.changes),
            }
        })
        .collect();
    let choices = form_choices(state, user).await?;
    Ok(Some(KeyDetailPage {
        nav: Nav::new(user, "api-keys"),
        key: detail,
        events,
        scopes: choices.scopes,
        numbers: choices.numbers,
        channels: choices.channels,
        default_rate_limit: state.config.default_rate_limit,
        signature_header: state.config.signature_header.clone(),
        timestamp_header: state.config.timestamp_header.clone(),
    }))
}
