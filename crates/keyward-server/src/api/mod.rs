//! JSON API handlers, one module per resource; DTOs sit beside their handlers.

pub mod audit;
pub mod keys;
pub mod members;
pub mod orgs;
pub mod session;

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A list answer: `{"data": […], "next_cursor": "…" | null}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ListResponse<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> ListResponse<T> {
    pub fn from_paged<U>(paged: keyward_store::Paged<U>, view: impl FnMut(U) -> T) -> Self {
        Self {
            next_cursor: paged.next.map(keyward_store::Cursor::encode),
            data: paged.items.into_iter().map(view).collect(),
        }
    }
}

/// RFC 3339, UTC.
pub fn rfc3339(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC).format(&Rfc3339).unwrap_or_default()
}

/// Deserializes a field so that an explicit `null` is `Some(Value::Null)` and absence is `None`
/// (PATCH: null clears a field, absence leaves it alone).
pub fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde::Deserialize::deserialize(deserializer).map(Some)
}
