//! One typed context per template. Templates escape everything; the SPEC's texts sit verbatim
//! in `templates/` so a grep finds them.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keyward_core::record::{KeyRecord, KeyStatus};
use keyward_store::{AuditFilter, Cursor, KeyFilter, Page};
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::ConsoleUser;
use crate::app::AppState;
use crate::problem::ApiError;

/// What every signed-in page shows: who, which org, and where to go.
pub struct Nav {
    pub org_name: String,
    pub org_id: String,
    pub email: String,
    pub role: &'static str,
    pub csrf_token: String,
    pub manages_keys: bool,
    pub active: &'static str,
}

impl Nav {
    fn new(user: &ConsoleUser, active: &'static str) -> Self {
        Self {
            org_name: user.org.name.clone(),
            org_id: user.org.id.to_string(),
            email: user.member.email.clone(),
            role: user.member.role.as_str(),
            csrf_token: user.csrf_token.clone(),
            manages_keys: user.member.role.manages_keys(),
            active,
        }
    }
}

fn html(status: StatusCode, rendered: Result<String, askama::Error>) -> Response {
    match rendered {
        Ok(body) => (status, [(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"))], body)
            .into_response(),
        Err(error) => ApiError::Internal(anyhow::anyhow!("template: {error}")).into_response(),
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    email: &'a str,
    error: Option<&'a str>,
}

pub fn render_login(status: StatusCode, email: &str, error: Option<&str>) -> Response {
    html(status, LoginPage { email, error }.render())
}

#[derive(Template)]
#[template(path = "forbidden.html")]
struct ForbiddenPage {
    nav: Nav,
}

pub fn render_forbidden(user: &ConsoleUser) -> Response {
    html(StatusCode::FORBIDDEN, ForbiddenPage { nav: Nav::new(user, "") }.render())
}

/// "3 minutes ago" for recent times, a date for older ones.
fn relative(now: OffsetDateTime, at: OffsetDateTime) -> String {
    let seconds = (now - at).whole_seconds();
    match seconds {
        i64::MIN..=59 => "just now".to_owned(),
        60..=3599 => plural(seconds / 60, "minute"),
        3600..=86_399 => plural(seconds / 3600, "hour"),
        86_400..=2_591_999 => plural(seconds / 86_400, "day"),
        _ => date(at),
    }
}

fn plural(n: i64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit} ago")
    } else {
        format!("{n} {unit}s ago")
    }
}

fn date(at: OffsetDateTime) -> String {
    format!("{} {:02}, {}", month(at.month()), at.day(), at.year())
}

fn month(month: time::Month) -> &'static str {
    use time::Month::{
        April, August, December, February, January, July, June, March, May, November, October, September,
    };
    match month {
        January => "Jan",
        February => "Feb",
        March => "Mar",
        April => "Apr",
        May => "May",
        June => "Jun",
        July => "Jul",
        August => "Aug",
        September => "Sep",
        October => "Oct",
        November => "Nov",
        December => "Dec",
    }
}

/// `2030-01-01 12:00:05 UTC`, for hover titles.
fn exact(at: OffsetDateTime) -> String {
    format!("{} {:02}:{:02}:{:02} UTC", at.date(), at.hour(), at.minute(), at.second())
}

fn iso(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

/// A moment shown relative, with the exact time on hover.
pub struct Moment {
    pub text: String,
    pub exact: String,
    pub iso: String,
}

impl Moment {
    fn new(now: OffsetDateTime, at: OffsetDateTime) -> Self {
        Self { text: relative(now, at), exact: exact(at), iso: iso(at) }
    }
}

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

#[derive(Template)]
#[template(path = "api_keys.html")]
struct ApiKeysPage {
    nav: Nav,
    keys: Vec<KeyRow>,
    next_cursor: Option<String>,
    first_page: bool,
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

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    cursor: Option<String>,
}

/// Names for `created_by` ids: members by email, the operator as such.
async fn actor_names(state: &AppState, user: &ConsoleUser) -> Result<HashMap<String, String>, ApiError> {
    let members = state.store.org(&user.org.id).members().await?;
    let mut names: HashMap<String, String> = members.into_iter().map(|m| (m.id.to_string(), m.email)).collect();
    names.insert("operator".to_owned(), "Operator".to_owned());
    Ok(names)
}

fn key_row(key: KeyRecord, now: OffsetDateTime, names: &HashMap<String, String>) -> KeyRow {
    let status = key.status(now);
    KeyRow {
        id: key.id.to_string(),
        prefix: key.prefix,
        scopes: key.settings.scopes,
        hmac: key.settings.hmac_required,
        status: match status {
            KeyStatus::Active => "ACTIVE",
            KeyStatus::Revoked => "REVOKED",
            KeyStatus::Expired => "EXPIRED",
        },
        revoked_at: key.revoked_at.map(|at| Moment::new(now, at)),
        expires: key.settings.expires_at.map(|at| Moment { text: date(at), exact: exact(at), iso: iso(at) }),
        last_used: key.last_used_at.map(|at| Moment::new(now, at)),
        created: Moment { text: date(key.created_at), exact: exact(key.created_at), iso: iso(key.created_at) },
        created_by: names.get(&key.created_by).cloned().unwrap_or(key.created_by),
        can_revoke: status != KeyStatus::Revoked,
        name: key.settings.name,
    }
}

pub async fn api_keys(State(state): State<AppState>, user: ConsoleUser, Query(query): Query<PageQuery>) -> Response {
    if !user.member.role.manages_keys() {
        return render_forbidden(&user);
    }
    match api_keys_page(&state, &user, query.cursor.as_deref()).await {
        Ok(page) => html(StatusCode::OK, page.render()),
        Err(error) => error.into_response(),
    }
}

async fn api_keys_page(state: &AppState, user: &ConsoleUser, cursor: Option<&str>) -> Result<ApiKeysPage, ApiError> {
    let org = state.store.org(&user.org.id);
    let now = state.clock.now();
    let cursor = cursor.and_then(Cursor::decode);
    let page = org.list_keys(&KeyFilter { status: None, created_by: None, now }, Page { limit: 20, cursor }).await?;
    let names = actor_names(state, user).await?;
    let defaults = state.config.catalogue.defaults();
    let scopes = state
        .config
        .catalogue
        .scopes()
        .iter()
        .filter(|s| s.as_str() != keyward_core::validate::ALL_SCOPES)
        .map(|s| ScopeOption { description: describe(s), checked: defaults.contains(s), name: s.clone() })
        .collect();
    Ok(ApiKeysPage {
        nav: Nav::new(user, "api-keys"),
        keys: page.items.into_iter().map(|k| key_row(k, now, &names)).collect(),
        next_cursor: page.next.map(Cursor::encode),
        first_page: cursor.is_none(),
        scopes,
        numbers: org.phone_numbers().await?.into_iter().map(|n| n.number).collect(),
        channels: org.channels().await?.into_iter().map(|c| ChannelOption { slug: c.slug, name: c.name }).collect(),
        default_rate_limit: state.config.default_rate_limit,
        signature_header: state.config.signature_header.clone(),
        timestamp_header: state.config.timestamp_header.clone(),
    })
}

pub struct EventRow {
    pub at: Moment,
    pub actor_name: String,
    pub actor_kind: &'static str,
    pub actor_ip: String,
    pub action: String,
    pub target_name: String,
    pub target_type: String,
}

pub struct SelectOption {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "audit_log.html")]
struct AuditLogPage {
    nav: Nav,
    events: Vec<EventRow>,
    actions: Vec<SelectOption>,
    actors: Vec<SelectOption>,
    next_query: Option<String>,
    filtered: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    action: Option<String>,
    actor: Option<String>,
    cursor: Option<String>,
}

const ACTIONS: [&str; 11] = [
    "key.created",
    "key.updated",
    "key.revoked",
    "key.rolled",
    "member.login",
    "member.login_failed",
    "member.logout",
    "member.added",
    "member.removed",
    "phone_number.added",
    "channel.added",
];

pub async fn audit_log(State(state): State<AppState>, user: ConsoleUser, Query(query): Query<AuditQuery>) -> Response {
    if !user.member.role.manages_keys() {
        return render_forbidden(&user);
    }
    match audit_page(&state, &user, query).await {
        Ok(page) => html(StatusCode::OK, page.render()),
        Err(error) => error.into_response(),
    }
}

async fn audit_page(state: &AppState, user: &ConsoleUser, query: AuditQuery) -> Result<AuditLogPage, ApiError> {
    let now = state.clock.now();
    let action = query.action.filter(|a| !a.is_empty());
    let actor = query.actor.filter(|a| !a.is_empty());
    let filter = AuditFilter { action: action.clone(), actor_id: actor.clone(), ..AuditFilter::default() };
    let cursor = query.cursor.as_deref().and_then(Cursor::decode);
    let page = state.store.org(&user.org.id).list_audit(&filter, Page { limit: 50, cursor }).await?;
    let names = actor_names(state, user).await?;
    let next_query = page.next.map(|next| {
        let mut query = format!("cursor={}", next.encode());
        for (name, value) in [("action", &action), ("actor", &actor)] {
            if let Some(value) = value {
                query.push('&');
                query.push_str(name);
                query.push('=');
                query.push_str(&url_component(value));
            }
        }
        query
    });
    let mut actors: Vec<SelectOption> = names
        .iter()
        .map(|(id, name)| SelectOption {
            selected: actor.as_deref() == Some(id.as_str()),
            value: id.clone(),
            label: name.clone(),
        })
        .collect();
    actors.sort_by(|a, b| a.label.cmp(&b.label));
    Ok(AuditLogPage {
        nav: Nav::new(user, "audit-log"),
        events: page
            .items
            .into_iter()
            .map(|record| {
                let event = record.event;
                EventRow {
                    at: Moment::new(now, event.at),
                    actor_kind: event.actor.kind.as_str(),
                    actor_name: event.actor.name,
                    actor_ip: event.actor_ip.unwrap_or_default(),
                    action: event.action,
                    target_name: event.target_name,
                    target_type: event.target_type.replace('_', " "),
                }
            })
            .collect(),
        actions: ACTIONS
            .iter()
            .map(|a| SelectOption {
                value: (*a).to_owned(),
                label: (*a).to_owned(),
                selected: action.as_deref() == Some(a),
            })
            .collect(),
        actors,
        next_query,
        filtered: action.is_some() || actor.is_some(),
    })
}

/// Percent-encodes a query value (ids and action names are plain, but stay safe).
fn url_component(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~:".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[derive(Template)]
#[template(path = "numbers.html")]
struct NumbersPage {
    nav: Nav,
    numbers: Vec<(String, Moment)>,
    channels: Vec<(String, String, Moment)>,
}

pub async fn numbers(State(state): State<AppState>, user: ConsoleUser) -> Response {
    if !user.member.role.manages_keys() {
        return render_forbidden(&user);
    }
    let org = state.store.org(&user.org.id);
    let now = state.clock.now();
    let loaded = async {
        let numbers = org.phone_numbers().await?;
        let channels = org.channels().await?;
        Ok::<_, ApiError>(NumbersPage {
            nav: Nav::new(&user, "numbers"),
            numbers: numbers.into_iter().map(|n| (n.number, Moment::new(now, n.created_at))).collect(),
            channels: channels.into_iter().map(|c| (c.slug, c.name, Moment::new(now, c.created_at))).collect(),
        })
    };
    match loaded.await {
        Ok(page) => html(StatusCode::OK, page.render()),
        Err(error) => error.into_response(),
    }
}
