//! The audit log of an org, newest first.

use axum::extract::State;
use axum::Json;
use keyward_store::{AuditFilter, AuditRecord};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{rfc3339, ListResponse};
use crate::app::AppState;
use crate::auth::{OrgAccess, Permission};
use crate::extract::{self, ApiQuery};
use crate::problem::{ApiError, Problem};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ActorView {
    /// `member`, `operator`, `key`, or `anonymous` (not authenticated: a failed login).
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: String,
    pub name: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TargetView {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub name: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEventView {
    pub id: String,
    pub org_id: String,
    pub at: String,
    pub actor: ActorView,
    pub actor_ip: Option<String>,
    /// The client's `User-Agent`, when it sent one.
    pub user_agent: Option<String>,
    pub action: String,
    pub target: TargetView,
    /// Changed fields as `{field: {old, new}}`, or other non-secret details.
    #[schema(value_type = Object)]
    pub changes: Value,
    pub trace_id: String,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditEventView {
    pub fn from_record(record: AuditRecord) -> Self {
        let event = record.event;
        Self {
            id: event.id.to_string(),
            org_id: record.org_id.to_string(),
            at: rfc3339(event.at),
            actor: ActorView { kind: event.actor.kind.as_str(), id: event.actor.id, name: event.actor.name },
            actor_ip: event.actor_ip,
            user_agent: event.user_agent,
            action: event.action,
            target: TargetView { kind: event.target_type, id: event.target_id, name: event.target_name },
            changes: event.changes,
            trace_id: event.trace_id,
            prev_hash: record.prev_hash,
            hash: record.hash,
        }
    }
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Exact action, e.g. `key.revoked`.
    pub action: Option<String>,
    /// A target id (`key_…`, `usr_…`).
    pub target: Option<String>,
    /// An actor id (`usr_…`, `key_…`, `operator`).
    pub actor: Option<String>,
    /// RFC 3339, inclusive.
    pub since: Option<String>,
    /// RFC 3339, inclusive.
    pub until: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

fn time_param(field: &str, value: Option<String>) -> Result<Option<OffsetDateTime>, ApiError> {
    match value.filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(text) => OffsetDateTime::parse(&text, &Rfc3339)
            .map(Some)
            .map_err(|_| ApiError::field(field, "Must be an RFC 3339 timestamp, such as 2030-01-31T12:00:00Z")),
    }
}

fn short_param(field: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    match value.filter(|v| !v.is_empty()) {
        Some(text) if text.chars().count() > 100 => Err(ApiError::field(field, "At most 100 characters")),
        other => Ok(other),
    }
}

/// Audit events, newest first, with filters and cursor pagination.
#[utoipa::path(get, path = "/v1/orgs/{org}/audit", tag = "audit", params(("org" = String, Path), AuditQuery),
    responses((status = 200, body = ListResponse<AuditEventView>), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn list(
    State(_state): State<AppState>,
    access: OrgAccess,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<ListResponse<AuditEventView>>, ApiError> {
    access.require(Permission::ReadAudit)?;
    let filter = AuditFilter {
        action: short_param("action", query.action)?,
        target_id: short_param("target", query.target)?,
        actor_id: short_param("actor", query.actor)?,
        // Bounds at the stored precision (microseconds), so every backend filters alike.
        since: time_param("since", query.since)?.map(keyward_core::record::ceil_to_micros),
        until: time_param("until", query.until)?.map(keyward_core::record::to_micros),
    };
    let page = extract::page(query.limit.as_deref(), query.cursor.as_deref())?;
    let paged = access.store().list_audit(&filter, page).await?;
    Ok(Json(ListResponse::from_paged(paged, AuditEventView::from_record)))
}
