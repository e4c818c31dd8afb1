//! The one place a verifier [`Outcome`] becomes an HTTP answer. `/v1/verify` renders it as a
//! JSON decision (always 200); the gateway and `/v1/authorize` as a pass or a refusal: the
//! refusal's status and problem+json body, `Retry-After` on 429, and the `RateLimit-*` headers
//! wherever the key's budget is known.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keyward_core::policy::EffectiveChannels;
use keyward_core::Code;
use keyward_runtime::{Outcome, RateInfo, VerifyFailure};

use crate::problem::problem_response;

pub const KEY_ID: HeaderName = HeaderName::from_static("x-keyward-key-id");
pub const ORG_ID: HeaderName = HeaderName::from_static("x-keyward-org-id");
pub const CHANNELS: HeaderName = HeaderName::from_static("x-keyward-channels");
const RATE_LIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATE_LIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATE_LIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// What a door does with a request: let it through with who the caller is, or refuse it.
#[derive(Debug)]
pub enum Door {
    Pass(Identity),
    Refuse(Refusal),
}

/// The verified caller, as the upstream is told in `X-Keyward-*` headers.
#[derive(Debug)]
pub struct Identity {
    pub key_id: HeaderValue,
    pub org_id: HeaderValue,
    /// Comma-separated slugs, or `*` for all.
    pub channels: HeaderValue,
    pub rate: RateInfo,
}

/// A refusal: the code (its status comes from the one table of codes), the message for the
/// caller, and what is known of the key's budget.
#[derive(Debug)]
pub struct Refusal {
    pub code: Code,
    pub message: String,
    pub retry_after_ms: Option<u64>,
    pub rate: Option<RateInfo>,
}

impl Refusal {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), retry_after_ms: None, rate: None }
    }

    /// The store (or the shared replay store) could not be reached: fail closed.
    pub fn unavailable() -> Self {
        Self::new(Code::ServiceUnavailable, "The key store is unavailable; try again shortly")
    }

    /// As a verification decision: a revoked key is 401 here, not the management API's 409.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.verify_status()).unwrap_or(StatusCode::FORBIDDEN)
    }
}

/// The code of an outcome, for the metrics.
pub fn code(outcome: &Outcome<'_, '_>) -> Code {
    match outcome {
        Outcome::Valid { .. } => Code::Valid,
        Outcome::Invalid(failure) => failure.denial.code,
        Outcome::Unavailable => Code::ServiceUnavailable,
    }
}

/// The decision of a gateway or forward-auth door.
pub fn door(outcome: Outcome<'_, '_>) -> Door {
    match outcome {
        Outcome::Valid { policy, channels, rate, .. } => Door::Pass(Identity {
            key_id: header_value(policy.key_id.as_str()),
            org_id: header_value(policy.org_id.as_str()),
            channels: channels_header(channels),
            rate,
        }),
        Outcome::Invalid(failure) => Door::Refuse(failure.into()),
        Outcome::Unavailable => Door::Refuse(Refusal::unavailable()),
    }
}

impl From<VerifyFailure> for Refusal {
    fn from(failure: VerifyFailure) -> Self {
        Self {
            code: failure.denial.code,
            message: failure.denial.message.into_owned(),
            retry_after_ms: failure.retry_after_ms,
            rate: failure.rate,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = problem_response(status, self.code, self.message, Vec::new());
        let headers = response.headers_mut();
        if let Some(ms) = self.retry_after_ms {
            // Whole seconds, rounded up: a client that waits that long is accepted.
            headers.insert(axum::http::header::RETRY_AFTER, number(ms.div_ceil(1000).max(1)));
        }
        if let Some(rate) = self.rate {
            rate_limit_headers(headers, rate);
        }
        response
    }
}

/// `RateLimit-Limit`, `-Remaining` and `-Reset` (seconds until the budget is full again, rounded up).
pub fn rate_limit_headers(headers: &mut HeaderMap, rate: RateInfo) {
    headers.insert(RATE_LIMIT_LIMIT, number(rate.limit.into()));
    headers.insert(RATE_LIMIT_REMAINING, number(rate.remaining.into()));
    headers.insert(RATE_LIMIT_RESET, number(rate.reset_ms.div_ceil(1000)));
}

/// Numbers below this are written out once, in [`SMALL_NUMBERS`].
const SMALL: u64 = 10_000;
/// The digits of 0 to 9 999 (38 890 bytes).
const SMALL_NUMBERS_LEN: usize = 10 + 90 * 2 + 900 * 3 + 9000 * 4;
/// `0123456789101112…99989999`: every number below [`SMALL`] one after the other, so that a
/// header holding one is a slice of a static string: no allocation, no reference count, where
/// `HeaderValue::from(u64)` allocates a buffer per header on every answer.
static SMALL_NUMBERS: &str = match std::str::from_utf8(&small_numbers()) {
    Ok(text) => text,
    Err(_) => panic!("decimal digits are ASCII"),
};

#[allow(clippy::large_stack_arrays, reason = "evaluated once, at compile time, into the static")]
const fn small_numbers() -> [u8; SMALL_NUMBERS_LEN] {
    let mut digits = [0; SMALL_NUMBERS_LEN];
    let mut at = 0;
    let mut n = 0;
    while n < SMALL {
        let width = decimal_width(n);
        let mut rest = n;
        let mut i = width;
        while i > 0 {
            i -= 1;
            #[allow(clippy::cast_possible_truncation, reason = "a decimal digit")]
            let digit = (rest % 10) as u8;
            digits[at + i] = b'0' + digit;
            rest /= 10;
        }
        at += width;
        n += 1;
    }
    digits
}

const fn decimal_width(n: u64) -> usize {
    match n {
        0..=9 => 1,
        10..=99 => 2,
        100..=999 => 3,
        _ => 4,
    }
}

/// Where `n` (below [`SMALL`]) starts in [`SMALL_NUMBERS`].
fn small_number_start(n: u64) -> usize {
    #[allow(clippy::cast_possible_truncation, reason = "below SMALL")]
    let n = n as usize;
    match n {
        0..=9 => n,
        10..=99 => 10 + (n - 10) * 2,
        100..=999 => 190 + (n - 100) * 3,
        _ => 2890 + (n - 1000) * 4,
    }
}

/// A number as a header value, without allocating when it is small (as budgets and seconds are).
pub fn number(n: u64) -> HeaderValue {
    if n < SMALL {
        let start = small_number_start(n);
        if let Some(text) = SMALL_NUMBERS.get(start..start + decimal_width(n)) {
            return HeaderValue::from_static(text);
        }
    }
    HeaderValue::from(n)
}

/// The identity headers, replacing any the client sent.
pub fn identity_headers(headers: &mut HeaderMap, identity: &Identity) {
    headers.insert(KEY_ID, identity.key_id.clone());
    headers.insert(ORG_ID, identity.org_id.clone());
    headers.insert(CHANNELS, identity.channels.clone());
}

fn channels_header(channels: EffectiveChannels<'_, '_>) -> HeaderValue {
    if channels == EffectiveChannels::All {
        return HeaderValue::from_static("*");
    }
    let mut list = String::new();
    channels.for_each(|slug| {
        if !list.is_empty() {
            list.push(',');
        }
        list.push_str(slug);
    });
    header_value(&list)
}

/// Ids and slugs are ASCII by construction; anything else would be a bug, not a header.
fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_header_reads_as_the_number_written_out_on_both_sides_of_the_table() {
        for n in (0..=SMALL + 10).chain([99_999, 100_000, u64::from(u32::MAX), u64::MAX]) {
            assert_eq!(number(n).to_str().ok(), Some(n.to_string().as_str()), "{n}");
        }
    }
}
