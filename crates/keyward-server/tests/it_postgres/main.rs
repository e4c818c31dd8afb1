//! The HTTP suite of `tests/it` again, on the real PostgreSQL (a schema of its own per test):
//! every answer on PostgreSQL is the same as on SQLite.

const BACKEND: support::Backend = support::Backend::Postgres;

#[path = "../it/audit.rs"]
mod audit;
#[path = "../it/config.rs"]
mod config;
#[path = "../it/delegation.rs"]
mod delegation;
#[path = "../it/gateway.rs"]
mod gateway;
#[path = "../it/keys.rs"]
mod keys;
#[path = "../it/session.rs"]
mod session;
#[path = "../it/support.rs"]
mod support;
#[path = "../it/tenancy.rs"]
mod tenancy;
#[path = "../it/verify.rs"]
mod verify;
