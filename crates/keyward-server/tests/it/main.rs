//! Black-box tests of the HTTP API: a real server on an ephemeral port over a temporary SQLite file.

mod keys;
mod support;
mod verify;
