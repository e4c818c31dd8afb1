//! Organizations, their sender phone numbers and their channels.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{rfc3339, ListResponse};
use crate::app::AppState;
use crate::auth::{OperatorCaller, OrgAccess, Permission};
use crate::extract::ApiJson;
use crate::problem::{ApiError, Problem};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrg {
    pub name: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrgView {
    pub id: String,
    pub name: String,
    pub created_at: String,
}

impl OrgView {
    pub fn from_record(org: &keyward_store::OrgRecord) -> Self {
        Self { id: org.id.to_string(), name: org.name.clone(), created_at: rfc3339(org.created_at) }
    }
}

/// Create an organization (operator only).
#[utoipa::path(post, path = "/v1/orgs", tag = "orgs", request_body = CreateOrg,
    responses((status = 201, body = OrgView), (status = 400, body = Problem), (status = 401, body = Problem)))]
pub async fn create(
    State(state): State<AppState>,
    OperatorCaller(_caller): OperatorCaller,
    ApiJson(body): ApiJson<CreateOrg>,
) -> Result<(StatusCode, Json<OrgView>), ApiError> {
    let org = state.create_org(&body.name).await?;
    Ok((StatusCode::CREATED, Json(OrgView::from_record(&org))))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddPhoneNumber {
    /// Any international format; stored as E.164.
    pub number: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PhoneNumberView {
    pub id: String,
    pub number: String,
    pub created_at: String,
}

/// Register a sender phone number (normalized to E.164; 409 if already registered).
#[utoipa::path(post, path = "/v1/orgs/{org}/phone-numbers", tag = "orgs", request_body = AddPhoneNumber,
    params(("org" = String, Path)),
    responses((status = 201, body = PhoneNumberView), (status = 400, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn add_phone_number(
    State(state): State<AppState>,
    access: OrgAccess,
    ApiJson(body): ApiJson<AddPhoneNumber>,
) -> Result<(StatusCode, Json<PhoneNumberView>), ApiError> {
    access.require(Permission::WriteKeys)?;
    let store = access.store();
    let number =
        state.add_phone_number(store.as_ref(), &access.caller.actor(), &access.caller.meta, &body.number).await?;
    Ok((
        StatusCode::CREATED,
        Json(PhoneNumberView {
            id: number.id.to_string(),
            number: number.number,
            created_at: rfc3339(number.created_at),
        }),
    ))
}

/// The org's registered sender numbers.
#[utoipa::path(get, path = "/v1/orgs/{org}/phone-numbers", tag = "orgs", params(("org" = String, Path)),
    responses((status = 200, body = ListResponse<PhoneNumberView>), (status = 404, body = Problem)))]
pub async fn list_phone_numbers(access: OrgAccess) -> Result<Json<ListResponse<PhoneNumberView>>, ApiError> {
    access.require(Permission::ReadKeys)?;
    let numbers = access.store().phone_numbers().await?;
    let data = numbers
        .into_iter()
        .map(|n| PhoneNumberView { id: n.id.to_string(), number: n.number, created_at: rfc3339(n.created_at) })
        .collect();
    Ok(Json(ListResponse { data, next_cursor: None }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddChannel {
    /// `[a-z0-9-]{1,64}`.
    pub slug: String,
    pub name: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChannelView {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub created_at: String,
}

/// Create a channel (409 if the slug exists).
#[utoipa::path(post, path = "/v1/orgs/{org}/channels", tag = "orgs", request_body = AddChannel,
    params(("org" = String, Path)),
    responses((status = 201, body = ChannelView), (status = 400, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn add_channel(
    State(state): State<AppState>,
    access: OrgAccess,
    ApiJson(body): ApiJson<AddChannel>,
) -> Result<(StatusCode, Json<ChannelView>), ApiError> {
    access.require(Permission::WriteKeys)?;
    let store = access.store();
    let channel =
        state.add_channel(store.as_ref(), &access.caller.actor(), &access.caller.meta, &body.slug, &body.name).await?;
    Ok((StatusCode::CREATED, Json(channel_view(channel))))
}

fn channel_view(c: keyward_store::ChannelRecord) -> ChannelView {
    ChannelView { id: c.id.to_string(), slug: c.slug, name: c.name, created_at: rfc3339(c.created_at) }
}

/// The org's channels.
#[utoipa::path(get, path = "/v1/orgs/{org}/channels", tag = "orgs", params(("org" = String, Path)),
    responses((status = 200, body = ListResponse<ChannelView>), (status = 404, body = Problem)))]
pub async fn list_channels(access: OrgAccess) -> Result<Json<ListResponse<ChannelView>>, ApiError> {
    access.require(Permission::ReadKeys)?;
    let channels = access.store().channels().await?;
    Ok(Json(ListResponse { data: channels.into_iter().map(channel_view).collect(), next_cursor: None }))
}
