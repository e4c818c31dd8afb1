//! The Redis implementations of [`RateLimiter`] and [`ReplayStore`], for nodes that must share
//! per-key budgets and consumed signatures.
//!
//! What: [`RedisRateLimiter`] runs one GCRA step of `keyward_core::ratelimit` per request as one
//! Lua script on Redis's own clock (`TIME`), so the nodes' clocks do not matter;
//! [`RedisReplayStore`] reserves a signature with `SET NX` until it leaves the window. Both talk
//! over one multiplexed [`ConnectionManager`]: concurrent verifications are pipelined on one
//! socket, none waits for another's round trip.
//!
//! What not: no retries, no queueing, no cluster. A call that fails or takes longer than
//! [`CALL_TIMEOUT`] is answered in-process (the limiter by a [`LocalRateLimiter::share`] of the
//! key's cell, the replay store by [`ReplayFallback`]), and the link stays in fallback — without
//! touching Redis on the hot path — until a background probe, every [`PROBE_EVERY`], sees Redis
//! answer again. Failures are counted (`keyward_redis_errors_total`), the state is a gauge
//! (`keyward_shared_state_fallback`), and only the transitions are logged, never the URL.
//!
//! Needs Redis 6.2 or later (`SET … PXAT`), a single node or a primary; Tokio.
//!
//! Start at [`RedisShared::connect`]; each type also has its own `connect`.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use keyward_core::ids::KeyId;
use keyward_core::ratelimit::{self, Quota};
use keyward_core::signing::SignatureBytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError, RedisResult, Script};

use crate::shared::{
    Budget, LocalRateLimiter, LocalReplayStore, Pending, RateLimiter, ReplayStore, ReplayUnavailable, SharedHealth,
};

/// The longest a verification waits for Redis before it is answered in-process.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(250);

/// How often the background probe pings Redis (and, in fallback, looks for its return).
pub const PROBE_EVERY: Duration = Duration::from_millis(500);

/// The GCRA burst window of `keyward_core::ratelimit`: an idle key with limit `n` accepts `n` at
/// once. The script is told it rather than assuming it.
const WINDOW_NS: u64 = 1_000_000_000;

/// One GCRA step for each of a batch of keys, atomically, on Redis's clock (one `TIME` for the
/// batch; a key twice in one batch is stepped twice, in order).
///
/// Each `KEYS[i]` holds the theoretical arrival time (TAT) as decimal Unix nanoseconds. Lua numbers
/// are doubles, exact only below 2^53, so the TAT is split into seconds and nanoseconds and the
/// arithmetic is done relative to now, where every figure is below a few seconds of nanoseconds.
/// `ARGV[1]` is the window and `ARGV[i + 1]` the emission interval of `KEYS[i]`, in nanoseconds.
/// Returns `{allowed, tat - now}` for each key in turn (the latter clamped at 0, before the step): the caller computes the
/// figures with `keyward_core::ratelimit::check` on that shifted axis, so the maths lives once.
/// An accepted step stores the new TAT and expires the key when the bucket is full again.
const GCRA_LUA: &str = r"
local now = redis.call('TIME')
local now_s = tonumber(now[1])
local now_n = tonumber(now[2]) * 1000
local window = tonumber(ARGV[1])
local out = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[i + 1])
  local rel = 0
  local stored = redis.call('GET', key)
  if stored then
    local tat_s = tonumber(string.sub(stored, 1, -10)) or 0
    local tat_n = tonumber(string.sub(stored, -9)) or 0
    rel = (tat_s - now_s) * 1000000000 + (tat_n - now_n)
    if rel < 0 then rel = 0 end
  end
  local new_rel = rel + interval
  if new_rel > window then
    out[2 * i - 1] = 0
  else
    local total = now_n + new_rel
    local new_s = now_s + math.floor(total / 1000000000)
    local new_n = total % 1000000000
    redis.call('SET', key, string.format('%.0f%09d', new_s, new_n), 'PX', math.max(1, math.ceil(new_rel / 1000000)))
    out[2 * i - 1] = 1
  end
  out[2 * i] = rel
end
return out
";

/// The Redis URL could not be used. Carries the driver's reason, never the URL (it may hold a
/// password).
#[derive(Debug, thiserror::Error)]
#[error("malformed Redis URL: {reason}")]
pub struct RedisSetupError {
    reason: String,
}

/// What a signed request meets while the shared replay store is unreachable
/// (`replay_fallback` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayFallback {
    /// Answer [`ReplayUnavailable`] (the server says 503): no signature passes unchecked.
    Refuse,
    /// Remember signatures in this process until Redis is back: a replay on another node during
    /// the outage is not caught.
    Local,
}

impl ReplayFallback {
    /// `"refuse"` or `"local"`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "refuse" => Some(Self::Refuse),
            "local" => Some(Self::Local),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Refuse => "refuse",
            Self::Local => "local",
        }
    }
}

/// One Redis connection and its health, shared by a limiter and a replay store built from the
/// same URL. A background probe (holding only a weak reference) ends when the last user drops.
#[derive(Clone)]
pub struct RedisShared {
    link: Arc<Link>,
}

impl RedisShared {
    /// Parses `url` and connects. Fails only on a URL that cannot be used: a Redis that is down
    /// at start leaves the link in fallback, and the probe connects when it comes up.
    pub async fn connect(url: &str) -> Result<Self, RedisSetupError> {
        Ok(Self { link: Link::open(url).await? })
    }

    /// A limiter on this connection; while Redis is unreachable each key gets `limit / nodes`
    /// on this node.
    pub fn rate_limiter(&self, nodes: u32) -> RedisRateLimiter {
        let (queue, queued) = tokio::sync::mpsc::channel(MAX_QUEUED);
        tokio::spawn(run_batches(Arc::clone(&self.link), queued));
        RedisRateLimiter { link: Arc::clone(&self.link), queue, fallback: LocalRateLimiter::share(nodes) }
    }

    /// A replay store on this connection, for signatures valid `tolerance_seconds` either side
    /// of their timestamp.
    pub fn replay_store(&self, tolerance_seconds: i64, fallback: ReplayFallback) -> RedisReplayStore {
        RedisReplayStore {
            link: Arc::clone(&self.link),
            tolerance_seconds,
            mode: fallback,
            fallback: LocalReplayStore::fallback(tolerance_seconds),
        }
    }

    pub fn health(&self) -> SharedHealth {
        self.link.health()
    }
}

impl fmt::Debug for RedisShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisShared").field("redis", &self.link.addr).field("health", &self.health()).finish()
    }
}

/// Per-key GCRA budgets shared by every node through Redis.
///
/// Requests are batched: a queue collects the takes that arrive while earlier batches are in
/// flight, and one script call steps them all. One Redis call per verification would cost Redis
/// more CPU per request than the verification itself; batching keeps one node at close to its
/// local-limit throughput, and adds no wait when the node is idle (a lone take is a batch of one).
pub struct RedisRateLimiter {
    link: Arc<Link>,
    queue: tokio::sync::mpsc::Sender<Take>,
    fallback: LocalRateLimiter,
}

/// One queued take: the Redis key, the key's emission interval, and where the answer goes
/// (`None`: Redis failed, answer locally).
struct Take {
    key: String,
    interval_ns: u64,
    answer: tokio::sync::oneshot::Sender<Option<(i64, i64)>>,
}

/// The most takes one script call steps.
const MAX_BATCH: usize = 256;
/// Script calls in flight at once on the connection.
const MAX_BATCHES_IN_FLIGHT: usize = 2;
/// Takes waiting for a batch; past this a take is answered locally rather than queued.
const MAX_QUEUED: usize = 8_192;

/// Gathers queued takes into batches: [`MAX_BATCHES_IN_FLIGHT`] workers, each taking whatever
/// is queued (up to [`MAX_BATCH`]) and stepping it in one script call. They end when the limiter
/// (the only sender) is dropped.
async fn run_batches(link: Arc<Link>, queue: tokio::sync::mpsc::Receiver<Take>) {
    let script = Arc::new(Script::new(GCRA_LUA));
    let queue = Arc::new(tokio::sync::Mutex::new(queue));
    let workers: Vec<_> = (0..MAX_BATCHES_IN_FLIGHT)
        .map(|_| {
            let (link, script, queue) = (Arc::clone(&link), Arc::clone(&script), Arc::clone(&queue));
            tokio::spawn(async move {
                let mut batch = Vec::with_capacity(MAX_BATCH);
                loop {
                    // The lock is held only while waiting for takes, not during the call.
                    if queue.lock().await.recv_many(&mut batch, MAX_BATCH).await == 0 {
                        return;
                    }
                    step_batch(&link, &script, &mut batch).await;
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.await;
    }
}

async fn step_batch(link: &Link, script: &Script, takes: &mut Vec<Take>) {
    let answers = match link.usable() {
        Some(mut conn) => {
            let mut invocation = script.prepare_invoke();
            invocation.arg(WINDOW_NS);
            for take in takes.iter() {
                invocation.key(take.key.as_str()).arg(take.interval_ns);
            }
            link.call(invocation.invoke_async::<Vec<i64>>(&mut conn)).await.filter(|flat| flat.len() == 2 * takes.len())
        }
        None => None,
    };
    for (n, take) in takes.drain(..).enumerate() {
        let answer = answers.as_ref().map(|flat| (flat[2 * n], flat[2 * n + 1]));
        let _ = take.answer.send(answer);
    }
}

impl RedisRateLimiter {
    /// A limiter with a connection of its own; see [`RedisShared::connect`].
    pub async fn connect(url: &str, nodes: u32) -> Result<Self, RedisSetupError> {
        Ok(RedisShared::connect(url).await?.rate_limiter(nodes))
    }

    async fn take_shared(&self, key: &KeyId, cell: &AtomicU64, quota: Quota, now_ns: u64) -> Budget {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let take = Take { key: rate_key(key), interval_ns: emission_interval_ns(quota), answer };
        if self.queue.try_send(take).is_ok() {
            if let Ok(Some((allowed, tat_after_now_ns))) = answered.await {
                // Mirror Redis's state into this node's cell: a refusal before the limit step
                // can report the budget without a round trip, and a fallback starts from it.
                let ahead = u64::try_from(tat_after_now_ns).unwrap_or(0);
                let step = if allowed == 1 { emission_interval_ns(quota) } else { 0 };
                cell.fetch_max(now_ns.saturating_add(ahead).saturating_add(step), Ordering::AcqRel);
                return shared_budget(quota, allowed == 1, tat_after_now_ns);
            }
        }
        // Redis failed (the link is now in fallback), or the queue is full: answer locally.
        self.fallback.take_now(cell, quota, now_ns)
    }
}

impl RateLimiter for RedisRateLimiter {
    /// `now_ns` is used only when answering locally: Redis steps on its own clock.
    fn take<'a>(&'a self, key: &'a KeyId, cell: &'a AtomicU64, quota: Quota, now_ns: u64) -> Pending<'a, Budget> {
        match self.link.health() {
            SharedHealth::Fallback => Pending::ready(self.fallback.take_now(cell, quota, now_ns)),
            _ => Pending::Wait(Box::pin(self.take_shared(key, cell, quota, now_ns))),
        }
    }

    fn health(&self) -> SharedHealth {
        self.link.health()
    }
}

impl fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("redis", &self.link.addr)
            .field("health", &self.link.health())
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}

/// Consumed signatures shared by every node through Redis. A signature timestamped before this
/// node started is not refused for that: the shared store remembers across restarts.
pub struct RedisReplayStore {
    link: Arc<Link>,
    tolerance_seconds: i64,
    mode: ReplayFallback,
    /// Used only in [`ReplayFallback::Local`] mode, while Redis is unreachable.
    fallback: LocalReplayStore,
}

impl RedisReplayStore {
    /// A replay store with a connection of its own; see [`RedisShared::connect`].
    pub async fn connect(url: &str, tolerance_seconds: i64, fallback: ReplayFallback) -> Result<Self, RedisSetupError> {
        Ok(RedisShared::connect(url).await?.replay_store(tolerance_seconds, fallback))
    }

    fn reserve_unshared(&self, signature: &SignatureBytes, timestamp: i64) -> Result<bool, ReplayUnavailable> {
        match self.mode {
            ReplayFallback::Refuse => Err(ReplayUnavailable),
            ReplayFallback::Local => Ok(self.fallback.reserve_now(signature, timestamp)),
        }
    }

    async fn reserve_shared(
        &self,
        mut conn: ConnectionManager,
        signature: &SignatureBytes,
        timestamp: i64,
    ) -> Result<bool, ReplayUnavailable> {
        // Consumed on this node while Redis was down (local fallback): Redis never saw it.
        if self.fallback.contains_now(signature) {
            return Ok(false);
        }
        // PXAT puts the expiry on Redis's clock too (no clock read here); one already in the
        // past stores nothing and still answers OK, like a 1 ms expiry would.
        let mut set = redis::cmd("SET");
        set.arg(replay_key(signature))
            .arg(1)
            .arg("NX")
            .arg("PXAT")
            .arg(forget_at_ms(timestamp, self.tolerance_seconds));
        match self.link.call(set.query_async::<Option<String>>(&mut conn)).await {
            Some(reply) => Ok(reply.is_some()),
            None => self.reserve_unshared(signature, timestamp),
        }
    }
}

impl ReplayStore for RedisReplayStore {
    fn reserve<'a>(
        &'a self,
        signature: &'a SignatureBytes,
        timestamp: i64,
    ) -> Pending<'a, Result<bool, ReplayUnavailable>> {
        match self.link.usable() {
            Some(conn) => Pending::Wait(Box::pin(self.reserve_shared(conn, signature, timestamp))),
            None => Pending::ready(self.reserve_unshared(signature, timestamp)),
        }
    }

    fn release<'a>(&'a self, signature: &'a SignatureBytes) -> Pending<'a, ()> {
        // It may have been reserved locally during an outage that has ended since.
        self.fallback.release_now(signature);
        match self.link.usable() {
            Some(mut conn) => Pending::Wait(Box::pin(async move {
                let mut del = redis::cmd("DEL");
                del.arg(replay_key(signature));
                // A failure has been counted and has flipped the link; the key expires anyway.
                let _ = self.link.call(del.query_async::<i64>(&mut conn)).await;
            })),
            None => Pending::ready(()),
        }
    }

    fn sweep(&self, now_unix: i64) {
        self.fallback.sweep_now(now_unix);
    }

    fn health(&self) -> SharedHealth {
        self.link.health()
    }
}

impl fmt::Debug for RedisReplayStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisReplayStore")
            .field("redis", &self.link.addr)
            .field("health", &self.link.health())
            .field("tolerance_seconds", &self.tolerance_seconds)
            .field("fallback", &self.mode.as_str())
            .finish_non_exhaustive()
    }
}

fn rate_key(key: &KeyId) -> String {
    format!("keyward:rl:{}", key.as_str())
}

fn replay_key(signature: &SignatureBytes) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut key = String::with_capacity(15 + 2 * signature.len());
    key.push_str("keyward:replay:");
    for byte in signature {
        key.push(char::from(HEX[usize::from(byte >> 4)]));
        key.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    key
}

/// The Unix millisecond at which a signature timestamped `timestamp` has left the window: the
/// end of its last accepted second (`timestamp + tolerance`), at least 1 (Redis refuses 0).
fn forget_at_ms(timestamp: i64, tolerance_seconds: i64) -> i64 {
    timestamp.saturating_add(tolerance_seconds).saturating_add(1).saturating_mul(1000).max(1)
}

/// The GCRA emission interval of `quota`: one step from an empty bucket advances the TAT by
/// exactly one interval, so it is read from core rather than restated.
fn emission_interval_ns(quota: Quota) -> u64 {
    ratelimit::check(quota, 0, 0).new_tat_ns
}

/// The figures of a step the script decided, computed by core on an axis where now is
/// `WINDOW_NS` (any instant that keeps the arithmetic clear of zero would do).
fn shared_budget(quota: Quota, allowed: bool, tat_after_now_ns: i64) -> Budget {
    // A sane TAT is at most one window ahead; a corrupted value must not overflow the maths.
    let ahead = u64::try_from(tat_after_now_ns).unwrap_or(0).min(2 * WINDOW_NS);
    let step = ratelimit::check(quota, WINDOW_NS + ahead, WINDOW_NS);
    debug_assert_eq!(step.allowed, allowed, "the script and keyward_core::ratelimit disagree");
    Budget { allowed, ..Budget::from_step(quota, &step) }
}

/// How many links are in fallback in this process: the gauge is 1 while any is.
static LINKS_IN_FALLBACK: AtomicUsize = AtomicUsize::new(0);

fn fallback_entered() {
    LINKS_IN_FALLBACK.fetch_add(1, Ordering::AcqRel);
    metrics::gauge!("keyward_shared_state_fallback").set(1.0);
}

fn fallback_left() {
    if LINKS_IN_FALLBACK.fetch_sub(1, Ordering::AcqRel) == 1 {
        metrics::gauge!("keyward_shared_state_fallback").set(0.0);
    }
}

/// Why a call to Redis failed, for the one warning of a transition.
enum Cause {
    Redis(RedisError),
    TimedOut,
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Redis(error) => fmt::Display::fmt(error, f),
            Self::TimedOut => write!(f, "no answer within {} ms", CALL_TIMEOUT.as_millis()),
        }
    }
}

struct Link {
    client: Client,
    /// `host:port` (or the socket path): what the logs name, without credentials.
    addr: String,
    /// Set once the first connection succeeds; it reconnects by itself after that.
    manager: OnceLock<ConnectionManager>,
    /// In fallback: requests are answered in-process and only the probe talks to Redis.
    down: AtomicBool,
}

impl Link {
    async fn open(url: &str) -> Result<Arc<Self>, RedisSetupError> {
        let client = Client::open(url).map_err(|error| RedisSetupError { reason: error.to_string() })?;
        let addr = client.get_connection_info().addr.to_string();
        let link = Arc::new(Self { client, addr, manager: OnceLock::new(), down: AtomicBool::new(false) });
        if let Err(cause) = link.manager().await {
            link.mark_down(&cause);
        }
        tokio::spawn(probe(Arc::downgrade(&link)));
        Ok(link)
    }

    fn health(&self) -> SharedHealth {
        if self.down.load(Ordering::Acquire) {
            SharedHealth::Fallback
        } else {
            SharedHealth::Shared
        }
    }

    /// The connection to use for a request, or `None` in fallback.
    fn usable(&self) -> Option<ConnectionManager> {
        if self.down.load(Ordering::Acquire) {
            return None;
        }
        self.manager.get().cloned()
    }

    /// The connection, made now if it never was.
    async fn manager(&self) -> Result<ConnectionManager, Cause> {
        if let Some(manager) = self.manager.get() {
            return Ok(manager.clone());
        }
        // No retries of its own: the probe is the retry loop, and a caller never waits on one.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(CALL_TIMEOUT)
            .set_response_timeout(CALL_TIMEOUT);
        match tokio::time::timeout(2 * CALL_TIMEOUT, ConnectionManager::new_with_config(self.client.clone(), config))
            .await
        {
            Ok(Ok(manager)) => Ok(self.manager.get_or_init(|| manager).clone()),
            Ok(Err(error)) => Err(Cause::Redis(error)),
            Err(_) => Err(Cause::TimedOut),
        }
    }

    /// Runs one request within [`CALL_TIMEOUT`]; a failure is counted and flips to fallback.
    async fn call<T>(&self, request: impl Future<Output = RedisResult<T>>) -> Option<T> {
        let cause = match self.try_call(request).await {
            Ok(value) => return Some(value),
            Err(cause) => cause,
        };
        self.mark_down(&cause);
        None
    }

    async fn try_call<T>(&self, request: impl Future<Output = RedisResult<T>>) -> Result<T, Cause> {
        match tokio::time::timeout(CALL_TIMEOUT, request).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(Cause::Redis(error)),
            Err(_) => Err(Cause::TimedOut),
        }
    }

    fn mark_down(&self, cause: &Cause) {
        metrics::counter!("keyward_redis_errors_total").increment(1);
        if !self.down.swap(true, Ordering::AcqRel) {
            fallback_entered();
            tracing::warn!(
                redis = %self.addr,
                error = %cause,
                "Redis unreachable: rate limits fall back to this node's share, signed requests to replay_fallback",
            );
        }
    }

    fn mark_up(&self) {
        if self.down.swap(false, Ordering::AcqRel) {
            fallback_left();
            tracing::info!(redis = %self.addr, "Redis reachable again: rate limits and replays are shared");
        }
    }

    /// One PING. A first failure makes the connection manager reconnect, so a second attempt
    /// right away sees a Redis that has just come back instead of waiting for the next tick.
    async fn probe_once(&self) {
        let mut outcome = Err(Cause::TimedOut);
        for _ in 0..2 {
            outcome = match self.manager().await {
                Ok(mut conn) => self.try_call(redis::cmd("PING").query_async::<String>(&mut conn)).await.map(drop),
                Err(cause) => Err(cause),
            };
            if outcome.is_ok() {
                break;
            }
        }
        match outcome {
            Ok(()) => self.mark_up(),
            Err(cause) => self.mark_down(&cause),
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if *self.down.get_mut() {
            fallback_left();
        }
    }
}

async fn probe(link: Weak<Link>) {
    let mut every = tokio::time::interval(PROBE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        every.tick().await;
        let Some(link) = link.upgrade() else { return };
        link.probe_once().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_and_window_are_cores() {
        for limit in [1, 3, 7, 20, 333, 999, 1000] {
            let quota = Quota::per_second(limit);
            assert_eq!(emission_interval_ns(quota), WINDOW_NS / u64::from(limit));
            // A burst of `limit` at one instant passes and the next is refused: the window is one second.
            let mut tat = 0;
            for _ in 0..limit {
                let step = ratelimit::check(quota, tat, 5 * WINDOW_NS);
                assert!(step.allowed);
                tat = step.new_tat_ns;
            }
            assert!(!ratelimit::check(quota, tat, 5 * WINDOW_NS).allowed);
        }
    }

    /// The script's verdict and figures, restated over exact integers: what `shared_budget`
    /// turns them into must be what core computes on the real axis.
    #[test]
    fn shared_figures_match_core_on_any_axis() {
        let now = 1_767_225_600_123_456_789_u64;
        for limit in [1, 3, 7, 20, 1000] {
            let quota = Quota::per_second(limit);
            let interval = emission_interval_ns(quota);
            for offset in
                [0, 1, 999, interval - 1, interval, interval + 1, WINDOW_NS - interval, WINDOW_NS - 1, WINDOW_NS]
            {
                for tat in [now + offset, now.saturating_sub(offset)] {
                    let ahead = i64::try_from(tat.saturating_sub(now)).unwrap_or(i64::MAX);
                    let allowed = tat.max(now) - now + interval <= WINDOW_NS;
                    let real = ratelimit::check(quota, tat, now);
                    assert_eq!(
                        shared_budget(quota, allowed, ahead),
                        Budget::from_step(quota, &real),
                        "{limit} {offset}"
                    );
                }
            }
        }
    }

    #[test]
    fn keys_and_expiry() {
        let mut signature = [0u8; 32];
        signature[0] = 0xab;
        signature[31] = 0x01;
        let key = replay_key(&signature);
        assert_eq!(key.len(), 15 + 64);
        assert!(key.starts_with("keyward:replay:ab00"));
        assert!(key.ends_with("0001"));
        assert_eq!(forget_at_ms(1_700_000_000, 300), 1_700_000_301_000);
        assert_eq!(forget_at_ms(-5000, 300), 1);
        assert_eq!(forget_at_ms(i64::MAX, 300), i64::MAX);
    }

    #[test]
    fn replay_fallback_parses() {
        assert_eq!(ReplayFallback::parse("refuse"), Some(ReplayFallback::Refuse));
        assert_eq!(ReplayFallback::parse("local"), Some(ReplayFallback::Local));
        assert_eq!(ReplayFallback::parse("Local"), None);
        assert_eq!(ReplayFallback::Local.as_str(), "local");
    }
}
