//! keyward-server: the HTTP face of keyward — the JSON API, `/v1/verify`, health, metrics and
//! OpenAPI — plus the key-management operations the CLI shares ([`Keyward`]).
//! It is not the domain (keyward-core) nor storage (keyward-store-*): handlers stay thin.
//! Start reading at [`app::build_app`], the route table.
#![forbid(unsafe_code)]

pub mod answer;
pub mod api;
pub mod app;
pub mod auth;
pub mod config;
pub mod console;
pub mod extract;
pub mod gateway;
mod manage;
pub mod master_key;
pub mod net;
pub mod openapi;
pub mod problem;
pub mod secrets;
pub mod telemetry;
mod throttle;
pub mod tls;
pub mod verify;

pub use app::{build_app, serve, serve_with_gateway, serve_with_tls, Deps, Keyward};
pub use manage::{CreatedKey, LoginError, NewSession};
