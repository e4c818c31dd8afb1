//! keyward-runtime: the stateful machinery around keyward-core's pure functions — the key cache,
//! per-key rate-limit and last-used cells, the replay store, and the background tasks that keep
//! them in step with the database. It holds no rule of its own: decisions come from `keyward_core::policy`.
//! Start reading at [`Verifier::verify`].
#![forbid(unsafe_code)]

mod budget;
mod cache;
pub mod clock;
pub mod redis;
pub mod shared;
mod verifier;

pub use cache::{CachedKey, Prerendered};
pub use clock::{Clock, ManualClock, SystemClock};
pub use verifier::{
    Background, BackgroundOptions, CacheAnswer, FeedStatus, Outcome, RateInfo, SharedState, Verifier, VerifierConfig,
    VerifyFailure,
};
