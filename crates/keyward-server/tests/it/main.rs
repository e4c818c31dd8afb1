//! Black-box tests of the HTTP API: a real server on an ephemeral port over a temporary SQLite file.
//! `tests/it_postgres` runs these same modules on PostgreSQL.

const BACKEND: support::Backend = support::Backend::Sqlite;

mod audit;
mod config;
mod delegation;
mod gateway;
mod hardening;
mod keys;
mod session;
mod support;
mod tenancy;
mod verify;
