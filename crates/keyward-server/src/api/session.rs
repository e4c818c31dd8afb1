//! Console login and logout: `POST /v1/session` sets the `keyward_session` cookie
//! (`__Host-keyward_session` over TLS) and returns the CSRF token the console sends back in `X-CSRF-Token`.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::members::MemberView;
use super::orgs::OrgView;
use crate::app::AppState;
use crate::auth::{session_cookie_name, Caller, Principal, RequestMeta};
use crate::extract::ApiJson;
use crate::manage::LoginError;
use crate::problem::{ApiError, Problem};

// No Debug: it holds secrets that must never reach a log line.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub email: String,
    pub password: String,
}

// No Debug: it holds secrets that must never reach a log line.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionView {
    pub member: MemberView,
    pub org: OrgView,
    /// Send it as `X-CSRF-Token` on every unsafe request made with the cookie.
    pub csrf_token: String,
}

/// Log in. Wrong credentials → 401 `INVALID_CREDENTIALS`; repeated failures → 429 with `Retry-After`.
#[utoipa::path(post, path = "/v1/session", tag = "session", request_body = Login, security(()),
    responses((status = 200, body = SessionView), (status = 401, body = Problem), (status = 429, body = Problem)))]
pub async fn create(
    State(state): State<AppState>,
    meta: RequestMeta,
    ApiJson(body): ApiJson<Login>,
) -> Result<Response, ApiError> {
    let session = match state.login(&body.email, &body.password, &meta).await {
        Ok(session) => session,
        Err(LoginError::Throttled { retry_after_seconds }) => {
            let mut response =
                ApiError::code(keyward_core::Code::TooManyAttempts, "Too many failed logins; wait before trying again")
                    .into_response();
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_seconds));
            return Ok(response);
        }
        Err(LoginError::Api(error)) => return Err(error),
    };
    let cookie = session_cookie(&session.token, session.max_age_seconds, meta.https);
    let view = SessionView {
        member: MemberView::from_record(&session.member),
        org: OrgView::from_record(&session.org),
        csrf_token: session.csrf_token,
    };
    let mut response = (StatusCode::OK, Json(view)).into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// `keyward_session=…; HttpOnly; SameSite=Strict; Path=/; Max-Age=…`; over TLS
/// `__Host-keyward_session=…` with `Secure` too (and never a `Domain`, which `__Host-` forbids).
pub fn session_cookie(token: &str, max_age_seconds: i64, secure: bool) -> HeaderValue {
    let name = session_cookie_name(secure);
    let secure = if secure { "; Secure" } else { "" };
    let text = format!("{name}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_seconds}{secure}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("keyward_session=; Max-Age=0"))
}

/// Log out: ends the session server-side and clears the cookie.
#[utoipa::path(delete, path = "/v1/session", tag = "session",
    responses((status = 204, description = "Done"), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn delete(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let Principal::Member { session, .. } = &caller.principal else {
        return Err(ApiError::code(keyward_core::Code::Forbidden, "Only a console session can log out"));
    };
    state.logout(&caller.principal, session, &caller.meta).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(header::SET_COOKIE, session_cookie("", 0, caller.meta.https));
    Ok(response)
}
