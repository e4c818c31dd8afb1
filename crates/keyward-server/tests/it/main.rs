//! Black-box tests of the HTTP API: a real server on an ephemeral port over a temporary SQLite file.

mod audit;
mod config;
mod delegation;
mod keys;
mod session;
mod support;
mod tenancy;
mod verify;
