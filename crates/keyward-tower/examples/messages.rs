//! A platform's API behind keyward: `POST /v1/messages` needs `messages:send`, `GET
//! /v1/templates` needs `templates:read`, `/healthz` needs no key.
//!
//! Remote mode (asks a running `keyward serve` on every request):
//!
//! ```text
//! KEYWARD_URL=http://127.0.0.1:8080 KEYWARD_OPERATOR_TOKEN=kwop_… \
//!     cargo run -p keyward-tower --example messages
//! ```
//!
//! Over HTTPS (`keyward serve` with `tls_cert` / `tls_key`), with `KEYWARD_CA_FILE` when the
//! certificate comes from a private CA rather than one the system trusts:
//!
//! ```text
//! KEYWARD_URL=https://keyward.internal:8443 KEYWARD_CA_FILE=/etc/keyward/ca.pem KEYWARD_OPERATOR_TOKEN=kwop_… \
//!     cargo run -p keyward-tower --example messages
//! ```
//!
//! Embedded mode (verifies in this process, on keyward's own database, read-only):
//!
//! ```text
//! KEYWARD_DATABASE_URL=sqlite:///var/lib/keyward/keyward.db \
//!     cargo run -p keyward-tower --example messages -- --embedded
//! ```
//!
//! Then `curl -H 'Authorization: Bearer kw_live_…' -X POST http://127.0.0.1:3000/v1/messages`.

use std::net::SocketAddr;

use axum::routing::{get, post};
use axum::{Json, Router};
use keyward_tower::{Embedded, KeyChannels, KeywardLayer, VerifiedKey};
use serde_json::{json, Value};

async fn send_message(key: VerifiedKey) -> Json<Value> {
    // The org is the tenant: everything this handler does is scoped by it.
    let channels = match key.channels() {
        KeyChannels::All => json!("all"),
        KeyChannels::Only(list) => json!(list),
    };
    Json(json!({ "queued": true, "org_id": key.org_id(), "key_id": key.id(), "channels": channels }))
}

async fn list_templates(key: VerifiedKey) -> Json<Value> {
    // A check beyond the layer's: only keys that may also write see drafts.
    Json(json!({ "org_id": key.org_id(), "drafts_visible": key.grants("templates:write"), "data": [] }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (send, read) = if std::env::args().any(|arg| arg == "--embedded") {
        // KEYWARD_DATABASE_URL, KEYWARD_CONFIG, KEYWARD_MASTER_KEY, as `keyward serve` reads them.
        let verifier = Embedded::from_env().await?;
        (KeywardLayer::embedded(verifier.clone()), KeywardLayer::embedded(verifier))
    } else {
        let url = std::env::var("KEYWARD_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".to_owned());
        let token = std::env::var("KEYWARD_OPERATOR_TOKEN").map_err(|_| "set KEYWARD_OPERATOR_TOKEN")?;
        let mut remote = KeywardLayer::remote_builder(&url, &token);
        if let Some(path) = std::env::var_os("KEYWARD_CA_FILE") {
            remote = remote.add_root_certificate(std::fs::read(path)?);
        }
        let layer = remote.build()?;
        (layer.clone(), layer)
    };
    let app = Router::new()
        .route("/v1/messages", post(send_message))
        .route_layer(send.require_scope("messages:send"))
        .merge(
            Router::new().route("/v1/templates", get(list_templates)).route_layer(read.require_scope("templates:read")),
        )
        .route("/healthz", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    // Connect info gives the layer the client's address, for keys with an IP allowlist.
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
    Ok(())
}
