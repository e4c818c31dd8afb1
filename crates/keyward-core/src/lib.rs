//! keyward-core: the pure domain of keyward — key format, hashing, secrets, validation, policy checks,
//! request signatures and rate-limit arithmetic.
//! It does no I/O, reads no clock and holds no global state: time and randomness are parameters.
//! Start reading at [`policy::verify`], the ordered checks behind `POST /v1/verify`.
#![forbid(unsafe_code)]

pub mod audit;
pub mod base62;
pub mod code;
pub mod crypto;
pub mod ids;
pub mod key;
pub mod keyring;
pub mod password;
pub mod phone;
pub mod policy;
pub mod ratelimit;
pub mod record;
pub mod signing;
pub mod validate;

pub use code::Code;
