//! One typed context per template. Templates escape everything; the SPEC's texts sit verbatim
//! in `templates/` so a grep finds them.

use std::collections::HashMap;

use askama::Template;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::ConsoleUser;
use crate::app::AppState;
use crate::auth::RequestMeta;
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
    pub(super) fn new(user: &ConsoleUser, active: &'static str) -> Self {
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

pub(super) fn html(status: StatusCode, rendered: Result<String, askama::Error>) -> Response {
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

/// "3 minutes ago" (or "in 3 hours") for near times, a date for others.
pub(super) fn relative(now: OffsetDateTime, at: OffsetDateTime) -> String {
    let seconds = (now - at).whole_seconds();
    if seconds < -59 {
        let ahead = -seconds;
        return match ahead {
            60..=3599 => ahead_of(ahead / 60, "minute"),
            3600..=86_399 => ahead_of(ahead / 3600, "hour"),
            86_400..=2_591_999 => ahead_of(ahead / 86_400, "day"),
            _ => date(at),
        };
    }
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

fn ahead_of(n: i64, unit: &str) -> String {
    if n == 1 {
        format!("in 1 {unit}")
    } else {
        format!("in {n} {unit}s")
    }
}

pub(super) fn date(at: OffsetDateTime) -> String {
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
pub(super) fn exact(at: OffsetDateTime) -> String {
    format!("{} {:02}:{:02}:{:02} UTC", at.date(), at.hour(), at.minute(), at.second())
}

pub(super) fn iso(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

/// A moment shown relative, with the exact time on hover.
pub struct Moment {
    pub text: String,
    pub exact: String,
    pub iso: String,
}

impl Moment {
    pub(super) fn new(now: OffsetDateTime, at: OffsetDateTime) -> Self {
        Self { text: relative(now, at), exact: exact(at), iso: iso(at) }
    }

    /// A moment shown as a date (expiries, creation), with the exact time on hover.
    pub(super) fn dated(at: OffsetDateTime) -> Self {
        Self { text: date(at), exact: exact(at), iso: iso(at) }
    }
}

#[derive(Template)]
#[template(path = "not_found.html")]
struct NotFoundPage {
    nav: Nav,
}

/// The HTML 404 page of the console, with its navigation.
pub fn render_not_found(user: &ConsoleUser) -> Response {
    html(StatusCode::NOT_FOUND, NotFoundPage { nav: Nav::new(user, "") }.render())
}

/// Any other `/settings/…` path: an HTML page, not the API's problem+json.
pub async fn not_found(State(state): State<AppState>, meta: RequestMeta, headers: HeaderMap) -> Response {
    match ConsoleUser::from_headers(&headers, meta.https, &state).await {
        Some(user) => render_not_found(&user),
        None => Redirect::to("/login").into_response(),
    }
}

/// Names for actor ids: members by email, the operator as such.
pub(super) async fn actor_names(state: &AppState, user: &ConsoleUser) -> Result<HashMap<String, String>, ApiError> {
    let members = state.store.org(&user.org.id).members().await?;
    let mut names: HashMap<String, String> = members.into_iter().map(|m| (m.id.to_string(), m.email)).collect();
    names.insert("operator".to_owned(), "Operator".to_owned());
    Ok(names)
}

pub struct SelectOption {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

/// `?a=1&b=2` from the pairs that have a value (`""` when none has).
pub(super) fn query_string(pairs: &[(&str, Option<&str>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(name, value)| value.filter(|v| !v.is_empty()).map(|v| format!("{name}={}", url_component(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// Percent-encodes a query value.
pub(super) fn url_component(value: &str) -> String {
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

/// One changed field of an audit event: `old → new`, or a detail with no old value.
pub struct ChangeRow {
    pub field: String,
    pub old: String,
    pub new: String,
    pub is_diff: bool,
}

/// `{field: {old, new}}` as rows; other details (`{reason: …}`) as rows without an old value.
pub(super) fn change_rows(changes: &serde_json::Value) -> Vec<ChangeRow> {
    use serde_json::Value;
    match changes {
        Value::Null => Vec::new(),
        Value::Object(fields) => fields
            .iter()
            .map(|(field, value)| match value {
                Value::Object(diff) if diff.len() == 2 && diff.contains_key("old") && diff.contains_key("new") => {
                    ChangeRow {
                        field: field.clone(),
                        old: shown(&diff["old"]),
                        new: shown(&diff["new"]),
                        is_diff: true,
                    }
                }
                other => ChangeRow { field: field.clone(), old: String::new(), new: shown(other), is_diff: false },
            })
            .collect(),
        other => vec![ChangeRow { field: "details".to_owned(), old: String::new(), new: shown(other), is_diff: false }],
    }
}

/// A JSON value as a person reads it: strings bare, lists comma-separated, nothing as "none".
fn shown(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Null => "none".to_owned(),
        Value::String(text) => text.clone(),
        Value::Array(items) if items.is_empty() => "none".to_owned(),
        Value::Array(items) => items.iter().map(shown).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
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
