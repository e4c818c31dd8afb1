//! Request extractors that fail as problem+json: JSON bodies with the failing field named, and
//! query strings.

use axum::body::{Bytes, HttpBody};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use http_body_util::BodyExt as _;
use keyward_core::Code;
use serde::de::DeserializeOwned;

use crate::problem::ApiError;

/// Bodies above this are refused with 413 before they are read in full.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// `Json<T>` whose rejections are `VALIDATION_FAILED` (naming the field), 413 or 415.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let bytes = json_body(req).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Reads a JSON body: checks the content type and the size limit.
pub async fn json_body<B>(request: axum::http::Request<B>) -> Result<Bytes, ApiError>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    require_json(request.headers())?;
    // The limit is applied here, not only by the router's `DefaultBodyLimit` layer, which
    // `/v1/verify` does without.
    let body = std::pin::pin!(http_body_util::Limited::new(request.into_body(), MAX_BODY_BYTES));
    read_body(body).await.map_err(|error| {
        if error.is::<http_body_util::LengthLimitError>() {
            ApiError::code(Code::PayloadTooLarge, format!("The request body is larger than {MAX_BODY_BYTES} bytes"))
        } else {
            ApiError::code(Code::ValidationFailed, "The request body could not be read")
        }
    })
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The whole body. One that arrives as a single frame (a small JSON body, the common case) is
/// handed on as it came, without the copy and the frame list that collecting it costs.
async fn read_body<B>(mut body: std::pin::Pin<&mut B>) -> Result<Bytes, BoxError>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let mut whole: Option<Vec<u8>> = None;
    let mut first = Bytes::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(Into::into)?.into_data() else { continue };
        if first.is_empty() && whole.is_none() {
            first = data;
            if body.is_end_stream() {
                return Ok(first);
            }
        } else {
            let whole = whole.get_or_insert_with(|| std::mem::take(&mut first).into());
            whole.extend_from_slice(&data);
        }
    }
    Ok(whole.map_or(first, Bytes::from))
}

fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE);
    // What nearly every client sends, checked before parsing the header.
    if content_type.is_some_and(|v| v.as_bytes() == b"application/json") {
        return Ok(());
    }
    let is_json = content_type.and_then(|v| v.to_str().ok()).and_then(|v| v.split(';').next()).is_some_and(|mime| {
        let mime = mime.trim();
        mime.eq_ignore_ascii_case("application/json")
            || (mime.starts_with("application/") && mime.to_ascii_lowercase().ends_with("+json"))
    });
    if is_json {
        Ok(())
    } else {
        Err(ApiError::code(Code::UnsupportedMediaType, "Send the body as application/json"))
    }
}

/// Deserializes JSON, naming the field that failed (`rate_limit`, `channels[2]`, …).
pub fn parse_json<'de, T: serde::Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, ApiError> {
    // Every body is an object; serde would otherwise also fill a struct from a JSON array.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::field("body", "The body must be a JSON object"));
    }
    // Tracking the path costs allocations on every request (the verify path's hottest part
    // after HTTP): parse plainly, and only when that fails parse again to name the field.
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let Ok(value) = T::deserialize(&mut deserializer) else {
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        return Err(serde_path_to_error::deserialize::<_, T>(&mut deserializer)
            .err()
            .map_or_else(|| ApiError::field("body", "Invalid JSON"), json_error));
    };
    deserializer.end().map_err(|e| ApiError::field("body", format!("Invalid JSON: {}", plain(&e))))?;
    Ok(value)
}

fn json_error(error: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = error.path().to_string();
    let inner = error.into_inner();
    // A value JSON itself cannot hold (a number out of range such as `1e400`, a bad escape in a
    // string) is that field's error; other syntax errors, a body cut short, or a body that is
    // wrong at its top name the body.
    let unreadable_value = inner.is_syntax() && {
        let message = plain(&inner);
        ["number out of range", "invalid escape", "invalid unicode code point", "lone leading surrogate"]
            .iter()
            .any(|start| message.starts_with(start))
    };
    if (inner.is_syntax() && !unreadable_value) || inner.is_eof() || path == "." {
        ApiError::field("body", format!("Invalid JSON: {}", plain(&inner)))
    } else {
        ApiError::field(&path, plain(&inner))
    }
}

/// `serde_json`'s message without the " at line 1 column 9" suffix.
fn plain(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// A query string parsed into `T` (fields as strings; handlers validate them), failing as problem+json.
#[derive(Debug, Clone, Default)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(query)
            .map(ApiQuery)
            .map_err(|e| ApiError::field("query", format!("Invalid query string: {e}")))
    }
}

/// `limit` (1–100, default 20) and an opaque `cursor`.
pub fn page(limit: Option<&str>, cursor: Option<&str>) -> Result<keyward_store::Page, ApiError> {
    let limit = match limit {
        None => 20,
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| ApiError::field("limit", "Limit must be an integer between 1 and 100"))?,
    };
    let cursor = match cursor {
        None | Some("") => None,
        Some(text) => Some(
            keyward_store::Cursor::decode(text)
                .ok_or_else(|| ApiError::field("cursor", "Cursor is not one this API returned"))?,
        ),
    };
    Ok(keyward_store::Page { limit, cursor })
}
