//! The web console: server-rendered pages (askama templates in `templates/`, embedded at compile
//! time) with one small script and one stylesheet, served under a strict Content-Security-Policy.
//! Forms inside dialogs talk to the same JSON API as every other client, with the session's
//! CSRF token; pages only read.

mod audit;
mod keys;
mod members;
mod pages;

use axum::extract::{Form, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use keyward_core::Code;
use keyward_store::{MemberRecord, OrgRecord};
use serde::Deserialize;

use crate::api::session::session_cookie;
use crate::app::AppState;
use crate::auth::{session_token_for, RequestMeta};
use crate::manage::LoginError;

pub use pages::{render_forbidden, render_login, render_not_found};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's routes (pages and assets).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_page).post(login_submit))
        .route("/logout", post(logout))
        .route("/settings", get(|| async { Redirect::to("/settings/api-keys") }))
        .route("/settings/api-keys", get(keys::list))
        .route("/settings/api-keys/{id}", get(keys::detail))
        .route("/settings/audit-log", get(audit::log))
        .route("/settings/audit-log/export.csv", get(audit::export_csv))
        .route("/settings/audit-log/export.jsonl", get(audit::export_jsonl))
        .route("/settings/members", get(members::list))
        .route("/settings/numbers", get(pages::numbers))
        .route("/settings/{*rest}", get(pages::not_found))
        .route("/assets/app.css", get(stylesheet))
        .route("/assets/app.js", get(script))
        .layer(axum::middleware::from_fn(security_headers))
}

/// CSP without `unsafe-inline`, no framing, no referrer leaks, no caching of pages that show keys.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", include_str!("../../assets/app.css"))
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", include_str!("../../assets/app.js"))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

/// A logged-in console user.
#[derive(Debug, Clone)]
pub struct ConsoleUser {
    pub member: MemberRecord,
    pub org: OrgRecord,
    pub csrf_token: String,
    /// The session's token hash (what logout deletes).
    pub session: keyward_core::key::KeyHash,
}

impl ConsoleUser {
    /// The session behind the cookie (named for HTTPS or plain HTTP), if it is valid.
    async fn from_headers(headers: &HeaderMap, https: bool, state: &AppState) -> Option<Self> {
        let token = session_token_for(headers, https)?;
        let (session, member, pepper) = state.find_session(token).await.ok()??;
        if session.expires_at <= state.clock.now() {
            return None;
        }
        let org = state.store.find_org(&member.org_id).await.ok()??;
        Some(Self { csrf_token: pepper.csrf_token(token), member, org, session: pepper.hash })
    }
}

/// Pages need a session: without one they send the browser to the login page.
impl axum::extract::FromRequestParts<AppState> for ConsoleUser {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let https = crate::auth::is_https(parts, state);
        Self::from_headers(&parts.headers, https, state).await.ok_or_else(|| Redirect::to("/login").into_response())
    }
}

async fn home(State(state): State<AppState>, meta: RequestMeta, headers: HeaderMap) -> Response {
    match ConsoleUser::from_headers(&headers, meta.https, &state).await {
        Some(user) if user.member.role.manages_keys() => Redirect::to("/settings/api-keys").into_response(),
        Some(user) => render_forbidden(&user),
        None => Redirect::to("/login").into_response(),
    }
}

async fn login_page(State(state): State<AppState>, meta: RequestMeta, headers: HeaderMap) -> Response {
    if ConsoleUser::from_headers(&headers, meta.https, &state).await.is_some() {
        return Redirect::to("/").into_response();
    }
    render_login(StatusCode::OK, "", None)
}

// No Debug: it holds secrets that must never reach a log line.
#[derive(Deserialize)]
struct LoginForm {
    email: String,
    password: String,
}

/// A cross-site form cannot log a victim in to the attacker's account: the browser's `Origin`
/// (or `Referer`) must name this host.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else { return false };
    let origin = headers.get(header::ORIGIN).or_else(|| headers.get(header::REFERER)).and_then(|v| v.to_str().ok());
    origin.is_none_or(|origin| {
        let rest = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        rest.split('/').next() == Some(host)
    })
}

async fn login_submit(
    State(state): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if !same_origin(&headers) {
        return render_login(StatusCode::FORBIDDEN, &form.email, Some("This form was sent from another site."));
    }
    match state.login(&form.email, &form.password, &meta).await {
        Ok(session) => {
            let mut response = Redirect::to("/").into_response();
            response
                .headers_mut()
                .insert(header::SET_COOKIE, session_cookie(&session.token, session.max_age_seconds, meta.https));
            response
        }
        Err(LoginError::Throttled { retry_after_seconds }) => {
            let mut response = render_login(
                StatusCode::TOO_MANY_REQUESTS,
                &form.email,
                Some("Too many failed attempts. Wait a few minutes, then try again."),
            );
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_seconds));
            response
        }
        Err(LoginError::Api(error)) if error.status_code() == Code::InvalidCredentials => {
            render_login(StatusCode::UNAUTHORIZED, &form.email, Some("The email or password is not correct."))
        }
        Err(LoginError::Api(error)) => error.into_response(),
    }
}

// No Debug: it holds secrets that must never reach a log line.
#[derive(Deserialize)]
struct LogoutForm {
    csrf_token: String,
}

async fn logout(
    State(state): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
    Form(form): Form<LogoutForm>,
) -> Response {
    if let Some(user) = ConsoleUser::from_headers(&headers, meta.https, &state).await {
        if keyward_core::key::ct_eq(form.csrf_token.as_bytes(), user.csrf_token.as_bytes()) {
            let hash = user.session;
            let principal = crate::auth::Principal::Member {
                id: user.member.id.clone(),
                org_id: user.org.id.clone(),
                email: user.member.email.clone(),
                role: user.member.role,
                session: hash,
            };
            if let Err(error) = state.logout(&principal, &hash, &meta).await {
                return error.into_response();
            }
        } else {
            return (StatusCode::FORBIDDEN, "CSRF check failed").into_response();
        }
    }
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(header::SET_COOKIE, session_cookie("", 0, meta.https));
    response
}
