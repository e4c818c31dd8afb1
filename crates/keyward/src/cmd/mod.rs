//! One module per subcommand; each calls the same library crates as the server.

pub mod audit;
pub mod completions;
pub mod config;
pub mod keys;
pub mod master_key;
pub mod member;
pub mod migrate;
pub mod org;
pub mod serve;
pub mod sign;
