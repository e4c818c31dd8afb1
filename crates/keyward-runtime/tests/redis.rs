//! The Redis limiter and replay store against real servers: the shared one at
//! `KEYWARD_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`, random keys so parallel runs never
//! collide), and throw-away `redis-server` children on free ports for outages, which are killed
//! and restarted without touching the shared one.

use std::fmt::Write as _;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use keyward_core::ids::KeyId;
use keyward_core::ratelimit::Quota;
use keyward_core::signing::SignatureBytes;
use keyward_runtime::redis::{RedisRateLimiter, RedisReplayStore, RedisShared, ReplayFallback};
use keyward_runtime::shared::{Budget, LocalRateLimiter, RateLimiter, ReplayStore, ReplayUnavailable, SharedHealth};
use keyward_runtime::{Clock, SystemClock};

fn shared_url() -> String {
    std::env::var("KEYWARD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn fresh_key() -> KeyId {
    KeyId::generate(&mut rand::thread_rng())
}

fn fresh_signature() -> SignatureBytes {
    rand::random()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut text, byte| {
        let _ = write!(text, "{byte:02x}");
        text
    })
}

fn now_unix() -> i64 {
    SystemClock.now().unix_timestamp()
}

async fn limiter(nodes: u32) -> RedisRateLimiter {
    let limiter = RedisRateLimiter::connect(&shared_url(), nodes).await.expect("a well-formed URL");
    assert_eq!(
        limiter.health(),
        SharedHealth::Shared,
        "these tests need a Redis at {} (set KEYWARD_TEST_REDIS_URL)",
        shared_url()
    );
    limiter
}

async fn replay_store(tolerance_seconds: i64) -> RedisReplayStore {
    let store = RedisReplayStore::connect(&shared_url(), tolerance_seconds, ReplayFallback::Refuse).await.expect("URL");
    assert_eq!(store.health(), SharedHealth::Shared, "these tests need a Redis at {}", shared_url());
    store
}

/// A plain command to a Redis, for what the store must have left there.
async fn raw(url: &str, command: &[&str]) -> redis::Value {
    try_raw(url, command).await.unwrap_or_else(|| panic!("no answer from the Redis at {url}"))
}

async fn try_raw(url: &str, command: &[&str]) -> Option<redis::Value> {
    let client = redis::Client::open(url).ok()?;
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    let mut cmd = redis::cmd(command[0]);
    for part in &command[1..] {
        cmd.arg(*part);
    }
    cmd.query_async(&mut conn).await.ok()
}

fn integer(reply: &redis::Value) -> i64 {
    match reply {
        redis::Value::Int(n) => *n,
        other => panic!("not an integer reply: {other:?}"),
    }
}

async fn takes(limiter: &dyn RateLimiter, key: &KeyId, cell: &AtomicU64, quota: Quota, count: usize) -> Vec<Budget> {
    let mut budgets = Vec::with_capacity(count);
    for _ in 0..count {
        budgets.push(limiter.take(key, cell, quota, 0).await);
    }
    budgets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_at_once_then_refused_for_one_interval() {
    let limiter = limiter(1).await;
    let (key, cell) = (fresh_key(), AtomicU64::new(0));
    let quota = Quota::per_second(20);
    let started = Instant::now();
    let budgets = takes(&limiter, &key, &cell, quota, 21).await;
    // Redis's clock moves on while the burst is sent: the wait is shorter by that much.
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    assert!(budgets[..20].iter().all(|budget| budget.allowed), "{budgets:?}");
    let refused = budgets[20];
    assert!(!refused.allowed);
    assert_eq!((refused.limit, refused.remaining), (20, 0));
    assert!((50u64.saturating_sub(elapsed_ms + 1)..=50).contains(&refused.retry_after_ms), "{refused:?}");
    // The node's cell mirrors Redis's state (here on the test's `now` of 0): about one second ahead.
    let mirrored = cell.load(std::sync::atomic::Ordering::Relaxed);
    assert!((900_000_000..=1_000_000_000).contains(&mirrored), "the cell mirrors Redis: {mirrored}");

    // The key is kept no longer than its bucket takes to fill again.
    let pttl = integer(&raw(&shared_url(), &["PTTL", &format!("keyward:rl:{key}")]).await);
    assert!((1..=1000).contains(&pttl), "PTTL {pttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_budget() {
    let (node_a, node_b) = (limiter(2).await, limiter(2).await);
    let key = fresh_key();
    let (cell_a, cell_b) = (AtomicU64::new(0), AtomicU64::new(0));
    let quota = Quota::per_second(20);
    let mut accepted = 0;
    let started = std::time::Instant::now();
    for _ in 0..20 {
        accepted += usize::from(node_a.take(&key, &cell_a, quota, 0).await.allowed);
        accepted += usize::from(node_b.take(&key, &cell_b, quota, 0).await.allowed);
    }
    // Redis's clock runs on: a slow run (a busy machine) earns one more request per 50 ms.
    let refilled = usize::try_from(started.elapsed().as_millis() / 50).unwrap_or(usize::MAX);
    assert!((20..=20 + refilled).contains(&accepted), "{accepted} accepted: 20 in total across the nodes, not 20 each");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_takes_are_atomic() {
    let limiter = Arc::new(limiter(1).await);
    let key = Arc::new(fresh_key());
    let quota = Quota::per_second(20);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let (limiter, key) = (Arc::clone(&limiter), Arc::clone(&key));
        tasks.spawn(async move { limiter.take(&key, &AtomicU64::new(0), quota, 0).await.allowed });
    }
    let started = Instant::now();
    let mut accepted = 0;
    while let Some(allowed) = tasks.join_next().await {
        accepted += usize::from(allowed.expect("task"));
    }
    // Refill is one per 50 ms; the burst is over long before unless the machine stalls.
    let refilled = usize::try_from(started.elapsed().as_millis() / 50).unwrap_or(usize::MAX);
    assert!((20..=20 + refilled).contains(&accepted), "{accepted} accepted");
}

/// The figures of a burst, request by request, are the in-process GCRA's (Redis's clock moves a
/// few microseconds between requests, so reset and retry may be a millisecond or two shorter).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_figures_match_the_local_gcra() {
    let limiter = limiter(1).await;
    for limit in [1, 3, 7, 20, 100] {
        let quota = Quota::per_second(limit);
        let (key, cell, local_cell) = (fresh_key(), AtomicU64::new(0), AtomicU64::new(0));
        let count = usize::try_from(limit).expect("small") + 2;
        let started = Instant::now();
        let shared = takes(&limiter, &key, &cell, quota, count).await;
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let local = LocalRateLimiter::new();
        let now = 1_767_225_600_000_000_000;
        for (index, redis) in shared.iter().enumerate() {
            let expected = local.take_now(&local_cell, quota, now);
            let context = format!("limit {limit}, request {index}: {redis:?} vs {expected:?}");
            if elapsed_ms < 1000 / u64::from(limit) {
                assert_eq!(
                    (redis.allowed, redis.limit, redis.remaining),
                    (expected.allowed, expected.limit, expected.remaining),
                    "{context}"
                );
            }
            assert!(
                redis.reset_ms <= expected.reset_ms && redis.reset_ms + elapsed_ms + 1 >= expected.reset_ms,
                "{context}"
            );
            assert!(
                redis.retry_after_ms <= expected.retry_after_ms
                    && redis.retry_after_ms + elapsed_ms + 1 >= expected.retry_after_ms,
                "{context}"
            );
        }
    }
}

/// After a pause the bucket has refilled by the time that passed, as the local GCRA says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refill_matches_the_local_gcra() {
    let limiter = limiter(1).await;
    let quota = Quota::per_second(10);
    let (key, cell, local_cell) = (fresh_key(), AtomicU64::new(0), AtomicU64::new(0));
    let local = LocalRateLimiter::new();
    let start_ns = 1_767_225_600_000_000_000_u64;
    let started = Instant::now();
    for _ in 0..5 {
        assert!(limiter.take(&key, &cell, quota, 0).await.allowed);
        local.take_now(&local_cell, quota, start_ns);
    }
    // Redis's first step happened somewhere in [0, done]: its bucket is up to `done` younger.
    let done = started.elapsed();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let before = started.elapsed();
    let redis = limiter.take(&key, &cell, quota, 0).await;
    let after = started.elapsed();
    // Bracket Redis's step between two local ones.
    let early_cell = AtomicU64::new(local_cell.load(std::sync::atomic::Ordering::Relaxed));
    let early = local.take_now(
        &early_cell,
        quota,
        start_ns + u64::try_from(before.saturating_sub(done).as_nanos()).expect("short"),
    );
    let late = local.take_now(&local_cell, quota, start_ns + u64::try_from(after.as_nanos()).expect("short"));
    assert!(redis.allowed);
    assert!((early.remaining..=late.remaining).contains(&redis.remaining), "{redis:?} {early:?} {late:?}");
    assert!(
        (late.reset_ms.saturating_sub(2)..=early.reset_ms + 2).contains(&redis.reset_ms),
        "{redis:?} {early:?} {late:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_is_reserved_once_across_stores() {
    let (first, second) = (replay_store(300).await, replay_store(300).await);
    let signature = fresh_signature();
    let timestamp = now_unix();
    assert_eq!(first.reserve(&signature, timestamp).await, Ok(true));
    assert_eq!(second.reserve(&signature, timestamp).await, Ok(false), "another node sees the replay");
    assert_eq!(first.reserve(&signature, timestamp).await, Ok(false));

    let pttl = integer(&raw(&shared_url(), &["PTTL", &format!("keyward:replay:{}", hex(&signature))]).await);
    assert!((1..=301_000).contains(&pttl), "PTTL {pttl} outside the window");

    second.release(&signature).await;
    assert_eq!(first.reserve(&signature, timestamp).await, Ok(true), "released, so reservable again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_from_before_the_node_started_are_not_refused() {
    let store = replay_store(300).await;
    let signature = fresh_signature();
    assert_eq!(store.reserve(&signature, now_unix() - 200).await, Ok(true));
    let pttl = integer(&raw(&shared_url(), &["PTTL", &format!("keyward:replay:{}", hex(&signature))]).await);
    assert!((1..=101_000).contains(&pttl), "kept only until the window closes: PTTL {pttl}");
    // One that has already left the window leaves nothing behind.
    let stale = fresh_signature();
    assert_eq!(store.reserve(&stale, now_unix() - 1000).await, Ok(true));
    assert_eq!(raw(&shared_url(), &["EXISTS", &format!("keyward:replay:{}", hex(&stale))]).await, redis::Value::Int(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_serves_both() {
    let shared = RedisShared::connect(&shared_url()).await.expect("URL");
    let (limiter, store) = (shared.rate_limiter(1), shared.replay_store(300, ReplayFallback::Local));
    assert_eq!(
        (shared.health(), limiter.health(), store.health()),
        (SharedHealth::Shared, SharedHealth::Shared, SharedHealth::Shared)
    );
    assert!(limiter.take(&fresh_key(), &AtomicU64::new(0), Quota::per_second(5), 0).await.allowed);
    assert_eq!(store.reserve(&fresh_signature(), now_unix()).await, Ok(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_url_is_the_only_setup_error() {
    for url in ["not a url", "http://127.0.0.1:6379", "redis://:hunter2@127.0.0.1:99999"] {
        let error = RedisRateLimiter::connect(url, 1).await.expect_err(url);
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert!(RedisReplayStore::connect(url, 300, ReplayFallback::Refuse).await.is_err(), "{url}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_at_start_is_fallback_not_failure() {
    let url = format!("redis://:hunter2@127.0.0.1:{}", free_port());
    let limiter = RedisRateLimiter::connect(&url, 4).await.expect("Redis being down is not a setup error");
    let refuse = RedisReplayStore::connect(&url, 300, ReplayFallback::Refuse).await.expect("setup");
    let local = RedisReplayStore::connect(&url, 300, ReplayFallback::Local).await.expect("setup");
    assert_eq!(
        (limiter.health(), refuse.health(), local.health()),
        (SharedHealth::Fallback, SharedHealth::Fallback, SharedHealth::Fallback)
    );
    for debug in [format!("{limiter:?}"), format!("{refuse:?}"), format!("{local:?}")] {
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    let (key, cell) = (fresh_key(), AtomicU64::new(0));
    let budgets = takes(&limiter, &key, &cell, Quota::per_second(20), 6).await;
    assert_eq!(budgets.iter().filter(|budget| budget.allowed).count(), 5, "20 / 4 nodes on this one");
    assert_eq!(budgets[0].limit, 5);

    let signature = fresh_signature();
    assert_eq!(refuse.reserve(&signature, now_unix()).await, Err(ReplayUnavailable));
    assert_eq!(local.reserve(&signature, now_unix() - 100).await, Ok(true), "no refusal of what came before");
    assert_eq!(local.reserve(&signature, now_unix()).await, Ok(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_falls_back_and_recovers() {
    let logs = Logs::install();
    let mut server = Throwaway::start().await;
    let addr = format!("127.0.0.1:{}", server.port);
    let shared = RedisShared::connect(&server.url()).await.expect("URL");
    let limiter = shared.rate_limiter(2);
    let refuse = shared.replay_store(300, ReplayFallback::Refuse);
    let local = RedisReplayStore::connect(&server.url(), 300, ReplayFallback::Local).await.expect("URL");
    let quota = Quota::per_second(20);
    assert_eq!((limiter.health(), local.health()), (SharedHealth::Shared, SharedHealth::Shared));
    let first = limiter.take(&fresh_key(), &AtomicU64::new(0), quota, 0).await;
    assert_eq!((first.allowed, first.limit, first.remaining), (true, 20, 19));

    server.kill();
    let (key, cell) = (fresh_key(), AtomicU64::new(0));
    let now_ns = 1_767_225_600_000_000_000;
    let mut accepted = 0;
    for _ in 0..15 {
        let budget = limiter.take(&key, &cell, quota, now_ns).await;
        assert_eq!(budget.limit, 10, "this node's share while Redis is down: {budget:?}");
        accepted += usize::from(budget.allowed);
    }
    assert_eq!(accepted, 10);
    assert_eq!((limiter.health(), shared.health()), (SharedHealth::Fallback, SharedHealth::Fallback));

    let signature = fresh_signature();
    assert_eq!(refuse.reserve(&signature, now_unix()).await, Err(ReplayUnavailable));
    assert_eq!(local.reserve(&signature, now_unix()).await, Ok(true));
    assert_eq!(local.reserve(&signature, now_unix()).await, Ok(false));
    assert_eq!(local.health(), SharedHealth::Fallback);
    local.release(&signature).await;
    assert_eq!(local.reserve(&signature, now_unix()).await, Ok(true), "released locally");
    let consumed_in_outage = fresh_signature();
    assert_eq!(local.reserve(&consumed_in_outage, now_unix()).await, Ok(true));

    server.restart().await;
    let back = Instant::now();
    while limiter.health() != SharedHealth::Shared || local.health() != SharedHealth::Shared {
        assert!(
            back.elapsed() < Duration::from_millis(2500),
            "not shared again {:?} after Redis came back",
            back.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Shared again: the full limit, on the (empty) restarted Redis, from both nodes.
    let other = shared.rate_limiter(2);
    let budgets = takes(&limiter, &key, &cell, quota, 10).await;
    let more = takes(&other, &key, &AtomicU64::new(0), quota, 11).await;
    assert!(
        budgets.iter().chain(&more[..10]).all(|budget| budget.allowed && budget.limit == 20),
        "{budgets:?} {more:?}"
    );
    assert!(!more[10].allowed);
    assert_eq!(refuse.reserve(&signature, now_unix()).await, Ok(true));
    assert_eq!(local.reserve(&signature, now_unix()).await, Ok(false), "the shared store again");
    assert_eq!(
        local.reserve(&consumed_in_outage, now_unix()).await,
        Ok(false),
        "a signature consumed during the outage stays consumed, though Redis never saw it"
    );

    // One warning when each link (`shared`, and `local`'s own) went down, one notice when it came
    // back: not one per failed request or probe.
    assert_eq!(logs.count(tracing::Level::WARN, &addr), 2, "{:?}", logs.lines());
    assert_eq!(logs.count(tracing::Level::INFO, &addr), 2, "{:?}", logs.lines());
    assert!(logs.lines().iter().all(|line| !line.contains("hunter2")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_times_out_into_fallback() {
    let server = Throwaway::start().await;
    let limiter = RedisRateLimiter::connect(&server.url(), 2).await.expect("URL");
    let quota = Quota::per_second(20);
    assert_eq!(limiter.take(&fresh_key(), &AtomicU64::new(0), quota, 0).await.limit, 20);

    server.signal("-STOP");
    let asked = Instant::now();
    let budget = limiter.take(&fresh_key(), &AtomicU64::new(0), quota, 0).await;
    assert!(asked.elapsed() < Duration::from_secs(1), "bounded by the call timeout: {:?}", asked.elapsed());
    assert_eq!((budget.allowed, budget.limit), (true, 10), "answered locally");
    assert_eq!(limiter.health(), SharedHealth::Fallback);

    server.signal("-CONT");
    let back = Instant::now();
    while limiter.health() != SharedHealth::Shared {
        assert!(back.elapsed() < Duration::from_millis(2500), "not shared again {:?} after Redis woke", back.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(limiter.take(&fresh_key(), &AtomicU64::new(0), quota, 0).await.limit, 20);
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|listener| listener.local_addr()).expect("a free port").port()
}

/// A `redis-server` child on a free port with no persistence, killed on drop.
struct Throwaway {
    port: u16,
    child: Option<Child>,
}

impl Throwaway {
    async fn start() -> Self {
        let mut server = Self { port: free_port(), child: None };
        server.restart().await;
        server
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn restart(&mut self) {
        assert!(self.child.is_none());
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .current_dir(std::env::temp_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (the fault-injection tests start their own)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ping = tokio::time::timeout(Duration::from_millis(200), try_raw(&self.url(), &["PING"])).await;
            if matches!(ping, Ok(Some(redis::Value::SimpleString(ref reply))) if reply == "PONG") {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server on port {} did not start", self.port);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().expect("kill(1)");
        assert!(status.success(), "kill {signal} {pid}");
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The events of every test in this binary, as `(level, redis field, the whole line)`; installed
/// once as the global subscriber (the probe logs from other threads).
struct Logs(Mutex<Vec<(tracing::Level, String, String)>>);

impl Logs {
    fn install() -> &'static Self {
        static LOGS: OnceLock<&'static Logs> = OnceLock::new();
        LOGS.get_or_init(|| {
            let logs: &'static Logs = Box::leak(Box::new(Logs(Mutex::new(Vec::new()))));
            tracing::subscriber::set_global_default(LogSubscriber(logs)).expect("the only subscriber");
            logs
        })
    }

    fn count(&self, level: tracing::Level, redis: &str) -> usize {
        self.0.lock().expect("logs").iter().filter(|(l, r, _)| *l == level && r == redis).count()
    }

    fn lines(&self) -> Vec<String> {
        self.0.lock().expect("logs").iter().map(|(_, _, line)| line.clone()).collect()
    }
}

struct LogSubscriber(&'static Logs);

#[derive(Default)]
struct LineVisitor {
    redis: String,
    line: String,
}

impl tracing::field::Visit for LineVisitor {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let value = format!("{value:?}");
        if field.name() == "redis" {
            self.redis.clone_from(&value);
        }
        let _ = write!(self.line, "{}={value} ", field.name());
    }
}

impl tracing::Subscriber for LogSubscriber {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut visitor = LineVisitor::default();
        event.record(&mut visitor);
        let level = *event.metadata().level();
        self.0 .0.lock().expect("logs").push((level, visitor.redis, format!("{level} {}", visitor.line)));
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}
