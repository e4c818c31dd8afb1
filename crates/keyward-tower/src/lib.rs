//! keyward-tower: keyward's API-key verification as a tower [`Layer`](tower::Layer) for axum and
//! hyper services, so a platform's own API refuses a bad key before its handlers run.
//!
//! Two modes, one layer ([`KeywardLayer`]):
//! - **remote** ([`KeywardLayer::remote`]): each request asks a keyward server's `POST /v1/verify`
//!   over a pooled HTTP/1 connection, with the operator token, in plain HTTP or over `https://`
//!   (rustls; keyward's certificate checked against the system's roots, or a private CA given to
//!   [`KeywardLayer::remote_builder`]). keyward unreachable, slow or presenting a certificate
//!   that does not check out: 503, never a pass (fail closed).
//! - **embedded** ([`KeywardLayer::embedded`] with an [`Embedded`] verifier): the verifier runs in
//!   this process against keyward's own database, read-only, following its change feed. A cached
//!   verification makes no network hop and touches no database; a revocation made through any
//!   keyward node is seen within the feed's poll (25 ms on SQLite; PostgreSQL's `NOTIFY` wakes it).
//!
//! The key comes in `Authorization: Bearer <key>` or `X-API-Key: <key>` (both at once: 400). A
//! verified key reaches handlers as a request extension, [`VerifiedKey`] (id, org, name, scopes,
//! channels, displayable prefix, rate budget), which is also an axum extractor. A refusal is
//! answered by the layer with keyward's own status and `application/problem+json` body, rendered
//! by the same code as keyward's gateway (`Retry-After` and `RateLimit-*` where known); a pass
//! gets `RateLimit-*` on its response unless the handler set them.
//!
//! ```no_run
//! use axum::{routing::post, Router};
//! use keyward_tower::{KeywardLayer, VerifiedKey};
//!
//! async fn send(key: VerifiedKey) -> String {
//!     format!("sent for {}", key.org_id())
//! }
//!
//! # async fn run() -> Result<(), keyward_tower::Error> {
//! let keyward = KeywardLayer::remote("http://127.0.0.1:8080", "kwop_…operator token…")?
//!     .require_scope("messages:send");
//! let app: Router = Router::new().route("/v1/messages", post(send)).route_layer(keyward);
//! # Ok(()) }
//! ```
//!
//! Client IPs (for keys with an IP allowlist) come from axum's
//! `ConnectInfo<SocketAddr>` (serve with `into_make_service_with_connect_info`), or from
//! `X-Forwarded-For` when the peer is a trusted proxy ([`KeywardLayer::trusted_proxies`]; the
//! embedded mode starts from the config file's `trusted_proxies`).
//!
//! Not handled here: request signatures (a key that requires HMAC is refused with
//! `SIGNATURE_REQUIRED`) and the `sender`/`channels` checks of a request body — use keyward's
//! gateway or call `/v1/verify` for those.
#![forbid(unsafe_code)]

mod embedded;
mod key;
mod layer;
mod remote;

pub use embedded::{Embedded, EmbeddedBuilder};
pub use key::{KeyChannels, RateLimit, VerifiedKey};
pub use keyward_server::answer::Refusal;
pub use layer::{KeywardLayer, KeywardService, ResponseFuture};
pub use remote::RemoteBuilder;

/// Why a layer or an embedded verifier could not be set up. Never holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting given in code or read from the environment is not usable.
    #[error("{0}")]
    Config(String),
    /// keyward's database could not be opened or read.
    #[error("keyward's database: {}", chain(.0))]
    Store(#[from] keyward_store::StoreError),
}

/// An error and its causes on one line, as keyward's binary reports them.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
