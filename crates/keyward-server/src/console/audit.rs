//! Settings → Audit log: filtered events with their changes and request context, and the same
//! selection downloaded as CSV or JSON lines.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keyward_store::{AuditFilter, AuditRecord, Cursor, KeyFilter, Page};
use serde::Deserialize;
use time::{Date, OffsetDateTime, Time};

use super::pages::{
    actor_names, change_rows, html, query_string, render_forbidden, ChangeRow, Moment, Nav, SelectOption,
};
use super::ConsoleUser;
use crate::api::audit::AuditEventView;
use crate::app::AppState;
use crate::problem::ApiError;

pub struct EventRow {
    pub id: String,
    pub at: Moment,
    pub actor_name: String,
    pub actor_kind: &'static str,
    pub actor_id: String,
    pub actor_ip: String,
    pub user_agent: String,
    pub action: String,
    pub target_name: String,
    pub target_type: String,
    pub target_id: String,
    /// The console page of the target, when it has one.
    pub target_link: String,
    pub trace_id: String,
    pub changes: Vec<ChangeRow>,
}

#[derive(Template)]
#[template(path = "audit_log.html")]
struct AuditLogPage {
    nav: Nav,
    events: Vec<EventRow>,
    actions: Vec<SelectOption>,
    actors: Vec<SelectOption>,
    targets: Vec<SelectOption>,
    target: String,
    since: String,
    until: String,
    next_query: Option<String>,
    /// `?…` of the filters (for the downloads), or empty.
    filter_query: String,
    filter_error: String,
    filtered: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    action: Option<String>,
    actor: Option<String>,
    target: Option<String>,
    /// `YYYY-MM-DD`, from the start of that day (UTC).
    since: Option<String>,
    /// `YYYY-MM-DD`, to the end of that day (UTC).
    until: Option<String>,
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

/// The filters as given (for the form and the links) and as the store takes them.
struct Filters {
    action: Option<String>,
    actor: Option<String>,
    target: Option<String>,
    since: Option<String>,
    until: Option<String>,
    store: AuditFilter,
    error: String,
}

fn day(text: &str) -> Option<Date> {
    Date::parse(text, time::macros::format_description!("[year]-[month]-[day]")).ok()
}

impl Filters {
    fn parse(query: &AuditQuery) -> Self {
        let given = |value: &Option<String>| {
            value.as_deref().map(str::trim).filter(|v| !v.is_empty() && v.len() <= 100).map(str::to_owned)
        };
        let (action, actor, target) = (given(&query.action), given(&query.actor), given(&query.target));
        let (since, until) = (given(&query.since), given(&query.until));
        let mut error: Option<&'static str> = None;
        let mut bound = |text: &Option<String>, end_of_day: bool| {
            let text = text.as_deref()?;
            let Some(date) = day(text) else {
                error = Some("Dates look like 2030-01-31.");
                return None;
            };
            let at = if end_of_day { Time::from_hms_micro(23, 59, 59, 999_999).ok()? } else { Time::MIDNIGHT };
            Some(date.with_time(at).assume_utc())
        };
        let since_at = bound(&since, false);
        let until_at = bound(&until, true);
        if let (Some(from), Some(to)) = (since_at, until_at) {
            if from > to {
                error = Some("The From date must not be after the To date.");
            }
        }
        let store = AuditFilter {
            action: action.clone(),
            target_id: target.clone(),
            actor_id: actor.clone(),
            since: since_at,
            until: until_at,
        };
        Self { action, actor, target, since, until, store, error: error.unwrap_or_default().to_owned() }
    }

    fn pairs(&self) -> [(&'static str, Option<&str>); 5] {
        [
            ("action", self.action.as_deref()),
            ("actor", self.actor.as_deref()),
            ("target", self.target.as_deref()),
            ("since", self.since.as_deref()),
            ("until", self.until.as_deref()),
        ]
    }
}

fn target_link(target_type: &str, target_id: &str) -> String {
    match target_type {
        "api_key" => format!("/settings/api-keys/{target_id}"),
        "member" => "/settings/members".to_owned(),
        "phone_number" | "channel" => "/settings/numbers".to_owned(),
        _ => String::new(),
    }
}

fn event_row(record: AuditRecord, now: OffsetDateTime) -> EventRow {
    let event = record.event;
    EventRow {
        id: event.id.to_string(),
        at: Moment::new(now, event.at),
        actor_kind: event.actor.kind.as_str(),
        actor_name: event.actor.name,
        actor_id: event.actor.id,
        actor_ip: event.actor_ip.unwrap_or_default(),
        user_agent: event.user_agent.unwrap_or_default(),
        action: event.action,
        target_link: target_link(&event.target_type, &event.target_id),
        target_name: event.target_name,
        target_type: event.target_type.replace('_', " "),
        target_id: event.target_id,
        trace_id: event.trace_id,
        changes: change_rows(&event.changes),
    }
}

pub async fn log(State(state): State<AppState>, user: ConsoleUser, Query(query): Query<AuditQuery>) -> Response {
    if !user.member.role.manages_keys() {
        return render_forbidden(&user);
    }
    match log_page(&state, &user, &query).await {
        Ok(page) => html(StatusCode::OK, page.render()),
        Err(error) => error.into_response(),
    }
}

async fn log_page(state: &AppState, user: &ConsoleUser, query: &AuditQuery) -> Result<AuditLogPage, ApiError> {
    let now = state.clock.now();
    let filters = Filters::parse(query);
    let org = state.store.org(&user.org.id);
    let cursor = query.cursor.as_deref().and_then(Cursor::decode);
    let page = if filters.error.is_empty() {
        org.list_audit(&filters.store, Page { limit: 50, cursor }).await?
    } else {
        keyward_store::Paged { items: Vec::new(), next: None }
    };
    let names = actor_names(state, user).await?;
    let pairs = filters.pairs();
    let next_query = page.next.map(|next| {
        let cursor = next.encode();
        let mut all = vec![("cursor", Some(cursor.as_str()))];
        all.extend(pairs);
        query_string(&all).trim_start_matches('?').to_owned()
    });
    let mut actors: Vec<SelectOption> = names
        .iter()
        .map(|(id, name)| SelectOption {
            selected: filters.actor.as_deref() == Some(id.as_str()),
            value: id.clone(),
            label: name.clone(),
        })
        .collect();
    actors.push(SelectOption {
        selected: filters.actor.as_deref() == Some("anonymous"),
        value: "anonymous".to_owned(),
        label: "Unauthenticated (failed logins)".to_owned(),
    });
    actors.sort_by(|a, b| a.label.cmp(&b.label));
    // Suggestions for the target box: the newest keys, then the members.
    let keys = org
        .list_keys(&KeyFilter { status: None, created_by: None, search: None, now }, Page { limit: 50, cursor: None })
        .await?;
    let mut targets: Vec<SelectOption> = keys
        .items
        .into_iter()
        .map(|key| SelectOption { value: key.id.to_string(), label: key.settings.name, selected: false })
        .collect();
    targets.extend(names.iter().filter(|(id, _)| id.starts_with("usr_")).map(|(id, name)| SelectOption {
        value: id.clone(),
        label: name.clone(),
        selected: false,
    }));
    Ok(AuditLogPage {
        nav: Nav::new(user, "audit-log"),
        events: page.items.into_iter().map(|record| event_row(record, now)).collect(),
        actions: ACTIONS
            .iter()
            .map(|a| SelectOption {
                value: (*a).to_owned(),
                label: (*a).to_owned(),
                selected: filters.action.as_deref() == Some(a),
            })
            .collect(),
        actors,
        targets,
        target: filters.target.clone().unwrap_or_default(),
        since: filters.since.clone().unwrap_or_default(),
        until: filters.until.clone().unwrap_or_default(),
        next_query,
        filter_query: query_string(&pairs),
        filtered: pairs.iter().any(|(_, value)| value.is_some()),
        filter_error: filters.error,
    })
}

/// The most events one download holds; a larger log is downloaded a time range at a time.
const EXPORT_LIMIT: usize = 100_000;

/// Every event matching the filters, newest first.
async fn matching(state: &AppState, user: &ConsoleUser, filter: &AuditFilter) -> Result<Vec<AuditRecord>, ApiError> {
    let org = state.store.org(&user.org.id);
    let mut events = Vec::new();
    let mut cursor = None;
    loop {
        let page = org.list_audit(filter, Page { limit: 100, cursor }).await?;
        events.extend(page.items);
        match page.next {
            Some(next) if events.len() < EXPORT_LIMIT => cursor = Some(next),
            _ => break,
        }
    }
    events.truncate(EXPORT_LIMIT);
    Ok(events)
}

#[derive(Debug, Clone, Copy)]
enum Format {
    Csv,
    JsonLines,
}

pub async fn export_csv(state: State<AppState>, user: ConsoleUser, query: Query<AuditQuery>) -> Response {
    export(state, user, query, Format::Csv).await
}

pub async fn export_jsonl(state: State<AppState>, user: ConsoleUser, query: Query<AuditQuery>) -> Response {
    export(state, user, query, Format::JsonLines).await
}

async fn export(
    State(state): State<AppState>,
    user: ConsoleUser,
    Query(query): Query<AuditQuery>,
    format: Format,
) -> Response {
    if !user.member.role.manages_keys() {
        return render_forbidden(&user);
    }
    let filters = Filters::parse(&query);
    if !filters.error.is_empty() {
        return ApiError::field("since", filters.error).into_response();
    }
    let events = match matching(&state, &user, &filters.store).await {
        Ok(events) => events,
        Err(error) => return error.into_response(),
    };
    let now = state.clock.now();
    let stamp = format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    let (body, content_type, extension) = match format {
        Format::Csv => (csv(&events), "text/csv; charset=utf-8", "csv"),
        Format::JsonLines => (json_lines(events), "application/x-ndjson", "jsonl"),
    };
    let disposition = format!("attachment; filename=\"audit-log-{}-{stamp}.{extension}\"", user.org.id);
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

const CSV_COLUMNS: [&str; 15] = [
    "at",
    "action",
    "actor_type",
    "actor_id",
    "actor_name",
    "actor_ip",
    "user_agent",
    "target_type",
    "target_id",
    "target_name",
    "changes",
    "trace_id",
    "id",
    "prev_hash",
    "hash",
];

/// RFC 4180: one header line, CRLF line ends, fields quoted when they need it. A field that a
/// spreadsheet would run as a formula (`=`, `+`, `-`, `@` first) is prefixed with `'`.
fn csv(events: &[AuditRecord]) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push_str("\r\n");
    for record in events {
        let event = &record.event;
        let fields = [
            super::pages::iso(event.at),
            event.action.clone(),
            event.actor.kind.as_str().to_owned(),
            event.actor.id.clone(),
            event.actor.name.clone(),
            event.actor_ip.clone().unwrap_or_default(),
            event.user_agent.clone().unwrap_or_default(),
            event.target_type.clone(),
            event.target_id.clone(),
            event.target_name.clone(),
            if event.changes.is_null() { String::new() } else { event.changes.to_string() },
            event.trace_id.clone(),
            event.id.to_string(),
            record.prev_hash.clone(),
            record.hash.clone(),
        ];
        let cells: Vec<String> = fields.iter().map(|field| csv_cell(field)).collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

fn csv_cell(field: &str) -> String {
    let guarded =
        if field.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{field}") } else { field.to_owned() };
    if guarded.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

/// One event per line, as `GET /v1/orgs/{org}/audit` shows it.
fn json_lines(events: Vec<AuditRecord>) -> String {
    let mut out = String::new();
    for record in events {
        if let Ok(line) = serde_json::to_string(&AuditEventView::from_record(record)) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::csv_cell;

    #[test]
    fn csv_cells_are_quoted_and_formulas_defused() {
        let cases = [
            ("plain", "plain"),
            ("a,b", "\"a,b\""),
            ("say \"hi\"", "\"say \"\"hi\"\"\""),
            ("two\nlines", "\"two\nlines\""),
            ("=HYPERLINK(\"x\")", "\"'=HYPERLINK(\"\"x\"\")\""),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("", ""),
        ];
        for (field, expected) in cases {
            assert_eq!(csv_cell(field), expected, "{field:?}");
        }
    }
}
