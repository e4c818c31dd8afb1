//! One error type for every handler, rendered as `application/problem+json`. Rendering has no
//! side effects; the cause of a 5xx travels in the response extensions to the logging layer.

use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keyward_core::validate::FieldError;
use keyward_core::Code;
use keyward_store::StoreError;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("{1}")]
    Code(Code, String),
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<Vec<FieldError>> for ApiError {
    fn from(errors: Vec<FieldError>) -> Self {
        Self::Validation(errors)
    }
}

impl ApiError {
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    pub fn code(code: Code, detail: impl Into<String>) -> Self {
        Self::Code(code, detail.into())
    }

    pub fn status_code(&self) -> Code {
        match self {
            Self::Validation(_) => Code::ValidationFailed,
            Self::Code(code, _) => *code,
            Self::NotFound | Self::Store(StoreError::NotFound) => Code::NotFound,
            Self::Store(StoreError::Conflict { .. }) => Code::Conflict,
            Self::Store(StoreError::KeyInactive) => Code::ApiKeyInactive,
            Self::Store(StoreError::Unavailable(_)) => Code::ServiceUnavailable,
            Self::Store(StoreError::Other(_)) | Self::Internal(_) => Code::Internal,
        }
    }

    /// The message for the caller. Never the internal cause of a 5xx.
    pub fn detail(&self) -> String {
        match self {
            Self::Validation(errors) => match errors.as_slice() {
                [one] => format!("{}: {}", one.field, one.message),
                _ => "Some fields are invalid; see errors".to_owned(),
            },
            Self::Code(_, detail) => detail.clone(),
            Self::NotFound | Self::Store(StoreError::NotFound) => "The resource does not exist".to_owned(),
            Self::Store(StoreError::Conflict { constraint }) => conflict_detail(constraint).to_owned(),
            Self::Store(StoreError::KeyInactive) => "The API key is revoked and can no longer be changed".to_owned(),
            Self::Store(StoreError::Unavailable(_)) => "The database is unavailable; try again shortly".to_owned(),
            Self::Store(StoreError::Other(_)) | Self::Internal(_) => "An internal error occurred".to_owned(),
        }
    }
}

fn conflict_detail(constraint: &str) -> &'static str {
    match constraint {
        "phone_number" => "This phone number is already registered",
        "channel_slug" => "A channel with this slug already exists",
        "member_email" => "A member with this email already exists",
        _ => "The resource already exists",
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    pub status: u16,
    pub code: &'static str,
    pub title: &'static str,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemField>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProblemField {
    pub field: String,
    pub message: String,
}

/// The cause of a 5xx, for the access log (never sent to the client).
#[derive(Debug, Clone)]
pub struct InternalCause(pub Arc<str>);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.status_code();
        let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let detail = self.detail();
        let cause = status.is_server_error().then(|| InternalCause(format!("{:#}", anyhow_chain(&self)).into()));
        let errors = match self {
            Self::Validation(errors) => {
                errors.into_iter().map(|e| ProblemField { field: e.field, message: e.message }).collect()
            }
            _ => Vec::new(),
        };
        let mut response = problem_response(status, code, detail, errors);
        if let Some(cause) = cause {
            response.extensions_mut().insert(cause);
        }
        response
    }
}

fn anyhow_chain(error: &ApiError) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

pub fn problem_response(status: StatusCode, code: Code, detail: String, errors: Vec<ProblemField>) -> Response {
    let body = Problem { status: status.as_u16(), code: code.as_str(), title: code.title(), detail, errors };
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    response
}
