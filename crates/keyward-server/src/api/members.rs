//! Organization members (operator or the org's owners).

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use keyward_core::ids::MemberId;
use keyward_store::MemberRecord;
use serde::{Deserialize, Serialize};

use super::{rfc3339, ListResponse};
use crate::app::AppState;
use crate::auth::{OrgAccess, Permission};
use crate::extract::ApiJson;
use crate::problem::{ApiError, Problem};

type PathParams = Path<HashMap<String, String>>;

// No Debug: it holds secrets that must never reach a log line.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    pub email: String,
    /// At least 10 characters.
    pub password: String,
    /// `owner`, `admin`, `user` or `readonly`.
    pub role: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MemberView {
    pub id: String,
    pub org_id: String,
    pub email: String,
    pub role: &'static str,
    pub created_at: String,
}

impl MemberView {
    pub fn from_record(member: &MemberRecord) -> Self {
        Self {
            id: member.id.to_string(),
            org_id: member.org_id.to_string(),
            email: member.email.clone(),
            role: member.role.as_str(),
            created_at: rfc3339(member.created_at),
        }
    }
}

/// Add a member (duplicate email → 409).
#[utoipa::path(post, path = "/v1/orgs/{org}/members", tag = "members", request_body = AddMember, params(("org" = String, Path)),
    responses((status = 201, body = MemberView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem)))]
pub async fn add(
    State(state): State<AppState>,
    access: OrgAccess,
    ApiJson(body): ApiJson<AddMember>,
) -> Result<(StatusCode, Json<MemberView>), ApiError> {
    access.require(Permission::ManageMembers)?;
    let store = access.store();
    let member = state
        .add_member(
            store.as_ref(),
            &access.caller.actor(),
            &access.caller.meta,
            &body.email,
            &body.password,
            &body.role,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(MemberView::from_record(&member))))
}

/// The org's members.
#[utoipa::path(get, path = "/v1/orgs/{org}/members", tag = "members", params(("org" = String, Path)),
    responses((status = 200, body = ListResponse<MemberView>), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn list(access: OrgAccess) -> Result<Json<ListResponse<MemberView>>, ApiError> {
    access.require(Permission::ManageMembers)?;
    let members = access.store().members().await?;
    Ok(Json(ListResponse { data: members.iter().map(MemberView::from_record).collect(), next_cursor: None }))
}

/// Remove a member and end its sessions.
#[utoipa::path(delete, path = "/v1/orgs/{org}/members/{id}", tag = "members", params(("org" = String, Path), ("id" = String, Path)),
    responses((status = 204, description = "Done"), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn remove(
    State(state): State<AppState>,
    access: OrgAccess,
    Path(params): PathParams,
) -> Result<StatusCode, ApiError> {
    access.require(Permission::ManageMembers)?;
    let id = params.get("id").and_then(|id| MemberId::parse(id).ok()).ok_or(ApiError::NotFound)?;
    let store = access.store();
    state.remove_member(store.as_ref(), &access.caller.actor(), &access.caller.meta, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
