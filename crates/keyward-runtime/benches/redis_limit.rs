//! `RedisRateLimiter::take` throughput with 64 concurrent callers on one node (one multiplexed
//! connection), against the Redis at `KEYWARD_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`).
//! Criterion's time is per take; its throughput line is takes per second.
//!
//! `cargo bench -p keyward-runtime --bench redis_limit`

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use keyward_core::ids::KeyId;
use keyward_core::ratelimit::Quota;
use keyward_runtime::redis::RedisRateLimiter;
use keyward_runtime::shared::{LocalRateLimiter, RateLimiter, SharedHealth};
use rand::SeedableRng;

const CALLERS: u64 = 64;
const KEYS: usize = 1024;

/// Runs `iters` takes split over [`CALLERS`] tasks, each on its own slice of the keys.
async fn run(limiter: Arc<dyn RateLimiter>, keys: Arc<Vec<KeyId>>, iters: u64) -> Duration {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for caller in 0..CALLERS {
        let (limiter, keys) = (Arc::clone(&limiter), Arc::clone(&keys));
        let share = iters / CALLERS + u64::from(caller < iters % CALLERS);
        tasks.spawn(async move {
            let cell = AtomicU64::new(0);
            let quota = Quota::per_second(1000);
            for i in 0..share {
                let index = usize::try_from(caller * 7919 + i).unwrap_or(0) % keys.len();
                std::hint::black_box(limiter.take(&keys[index], &cell, quota, 0).await);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    started.elapsed()
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let url = std::env::var("KEYWARD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let redis: Arc<dyn RateLimiter> = Arc::new(runtime.block_on(RedisRateLimiter::connect(&url, 1)).unwrap());
    assert_eq!(redis.health(), SharedHealth::Shared, "the bench needs a Redis at {url}");
    let local: Arc<dyn RateLimiter> = Arc::new(LocalRateLimiter::new());
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let keys = Arc::new((0..KEYS).map(|_| KeyId::generate(&mut rng)).collect::<Vec<_>>());

    let mut group = c.benchmark_group("take_64_callers");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    for (name, limiter) in [("redis", &redis), ("local", &local)] {
        group.bench_function(name, |b| {
            b.to_async(&runtime).iter_custom(|iters| run(Arc::clone(limiter), Arc::clone(&keys), iters));
        });
    }
    group.finish();
    assert_eq!(redis.health(), SharedHealth::Shared, "Redis fell back during the bench: the figures are local");
}

criterion_group!(benches, bench);
criterion_main!(benches);
