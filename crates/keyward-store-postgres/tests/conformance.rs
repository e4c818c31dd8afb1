//! The PostgreSQL backend against the shared story, plus what only a shared server database must
//! promise: the change feed in commit order, wake-ups over LISTEN/NOTIFY, a quick `Unavailable`
//! when the server is down, and one audit chain under writers on several nodes.
//!
//! Needs a PostgreSQL server: `KEYWARD_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) names a database the tests connect to in order to
//! create (and drop) a fresh database of their own for each test.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keyward_core::ids::{EventId, KeyId, MemberId, OrgId, PhoneNumberId};
use keyward_core::key::{Environment, KeyHash};
use keyward_core::record::{Actor, Channels, KeyPatch, KeyRecord, KeySettings, Role};
use keyward_store::{
    conformance, verify_chain, Change, MemberRecord, NewAuditEvent, OrgRecord, PhoneNumberRecord, RevokeKey, Store,
    StoreError,
};
use keyward_store_postgres::{PostgresStore, LISTENER_APPLICATION_NAME};
use serde_json::Value;
use time::macros::datetime;
use time::OffsetDateTime;
use tokio_postgres::NoTls;

const T0: OffsetDateTime = datetime!(2026-02-01 09:00:00.250000 UTC);

fn admin_url() -> String {
    std::env::var("KEYWARD_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// `url` with its database replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("the test URL has a scheme");
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let query = tail.find('?').map_or("", |at| &tail[at..]);
    format!("{scheme}://{authority}/{database}{query}")
}

/// A raw connection (not the store's), driven in the background.
async fn raw(url: &str, application_name: &str) -> tokio_postgres::Client {
    let mut config: tokio_postgres::Config = url.parse().expect("a valid URL");
    config.application_name(application_name);
    let (client, connection) = config.connect(NoTls).await.expect("connect to the test server");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Fresh databases, dropped when this goes out of scope (a failed test included).
#[derive(Default)]
struct Databases {
    names: Mutex<Vec<String>>,
}

impl Databases {
    /// A new, empty database; returns its URL.
    async fn create(&self) -> String {
        let random = RandomState::new().build_hasher().finish();
        let name = format!("keyward_t_{}_{random:016x}", std::process::id());
        let admin = raw(&admin_url(), "keyward-tests").await;
        admin.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("CREATE DATABASE");
        self.names.lock().expect("not poisoned").push(name.clone());
        with_database(&admin_url(), &name)
    }
}

impl Drop for Databases {
    fn drop(&mut self) {
        let names = std::mem::take(&mut *self.names.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        if names.is_empty() {
            return;
        }
        // Drop cannot wait on the test's runtime: clean up on a thread with a runtime of its own.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            runtime.block_on(async {
                let admin = raw(&admin_url(), "keyward-tests").await;
                for name in names {
                    if let Err(error) =
                        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await
                    {
                        eprintln!("could not drop test database {name}: {error}");
                    }
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// The shared story's databases: each a fresh database on the test server; each `open` is a
/// store of its own, as another node would have.
#[derive(Default)]
struct PgBackend {
    databases: Databases,
}

#[async_trait::async_trait]
impl conformance::Backend for PgBackend {
    async fn create_database(&self) -> String {
        self.databases.create().await
    }

    async fn open(&self, database: &str) -> Arc<dyn Store> {
        Arc::new(PostgresStore::connect(database).expect("connect"))
    }
}

async fn migrated_store(databases: &Databases) -> (String, PostgresStore) {
    let url = databases.create().await;
    let store = PostgresStore::connect(&url).expect("connect");
    store.migrate().await.expect("migrate");
    (url, store)
}

fn org_record(id: &str) -> OrgRecord {
    OrgRecord { id: OrgId::parse(id).expect("a valid org id"), name: "Acme".to_owned(), created_at: T0 }
}

fn event(name: &str, action: &str, target_id: &str) -> NewAuditEvent {
    NewAuditEvent {
        id: EventId::parse(&format!("evt_{name}")).expect("a valid event id"),
        at: T0,
        actor: Actor::operator(),
        actor_ip: None,
        user_agent: None,
        action: action.to_owned(),
        target_type: action.split('.').next().unwrap_or_default().to_owned(),
        target_id: target_id.to_owned(),
        target_name: format!("name of {target_id}"),
        changes: Value::Null,
        trace_id: format!("{:032x}", name.len()),
    }
}

fn key(name: &str, org: &OrgId, hash: u8) -> KeyRecord {
    KeyRecord {
        id: KeyId::parse(&format!("key_{name}")).expect("a valid key id"),
        org_id: org.clone(),
        prefix: format!("kw_live_{name}"),
        hash: KeyHash([hash; 32]),
        hash_version: 1,
        sealed_signing_secret: None,
        seal_version: 1,
        settings: KeySettings {
            name: format!("key {name}"),
            scopes: vec!["messages:send".to_owned()],
            hmac_required: false,
            rate_limit: None,
            expires_at: None,
            ip_allowlist: Vec::new(),
            phone_allowlist: Vec::new(),
            channels: Channels::All,
            environment: Environment::Live,
            external_id: None,
            meta: None,
        },
        created_at: T0,
        created_by: "operator".to_owned(),
        revoked_at: None,
        revoked_by: None,
        last_used_at: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_passes_the_conformance_story() {
    conformance::run_all(&PgBackend::default()).await;
}

/// tx1 draws the lower sequence but commits after tx2: a follower reading in between must still
/// get both. The feed trigger's lock makes tx2 wait for tx1; without it, tx2's change would be
/// read first and tx1's skipped forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_commits_after_a_later_one_still_reaches_a_follower() {
    let databases = Databases::default();
    let (url, store) = migrated_store(&databases).await;
    let start = store.latest_change().await.expect("latest_change");
    let insert = "INSERT INTO change_log (org_id, key_hash, at) VALUES ('org_a', $1, now())";

    let first = raw(&url, "keyward-tx1").await;
    first.batch_execute("BEGIN").await.expect("BEGIN");
    first.execute(insert, &[&vec![1_u8; 32]]).await.expect("tx1 inserts");

    let second = raw(&url, "keyward-tx2").await;
    let late = tokio::spawn(async move {
        second.batch_execute("BEGIN").await?;
        second.execute(insert, &[&vec![2_u8; 32]]).await?;
        second.batch_execute("COMMIT").await
    });
    // Until tx2 has committed, or is stuck behind tx1.
    let watcher = raw(&url, "keyward-watcher").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let waiting: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'keyward-tx2' \
                 AND wait_event_type = 'Lock' AND datname = current_database()",
                &[],
            )
            .await
            .expect("pg_stat_activity")
            .get(0);
        if waiting > 0 || late.is_finished() {
            break;
        }
        assert!(Instant::now() < deadline, "tx2 neither committed nor waited");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let mut seen = Vec::new();
    let mut cursor = start;
    for _ in 0..5 {
        let (changes, next) = store.changes_since(cursor).await.expect("changes_since");
        seen.extend(changes);
        cursor = next;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.batch_execute("COMMIT").await.expect("tx1 commits");
    late.await.expect("the task ran").expect("tx2 commits");

    let expected = [Change::Key(KeyHash([1; 32])), Change::Key(KeyHash([2; 32]))];
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen.len() < expected.len() && Instant::now() < deadline {
        let (changes, next) = store.changes_since(cursor).await.expect("changes_since");
        seen.extend(changes);
        cursor = next;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, expected, "both changes reach the follower, in commit order, none skipped");
    assert_eq!(store.changes_since(cursor).await.expect("changes_since"), (Vec::new(), cursor));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_changes_wakes_up_on_another_nodes_change_and_closes_with_its_connection() {
    let databases = Databases::default();
    let (url, listener) = migrated_store(&databases).await;
    let writer = PostgresStore::connect(&url).expect("connect another node");
    let mut signals = listener.listen_changes().await.expect("listen_changes").expect("PostgreSQL has wake-ups");

    let org = org_record("org_listen");
    writer.insert_org(&org).await.expect("insert org");
    let number = PhoneNumberRecord {
        id: PhoneNumberId::parse("pn_1").expect("a valid id"),
        number: "+14155550100".to_owned(),
        created_at: T0,
    };
    writer
        .org(&org.id)
        .add_phone_number(&number, &event("n1", "phone_number.added", "pn_1"))
        .await
        .expect("add phone number");
    let woken = tokio::time::timeout(Duration::from_secs(2), signals.recv()).await;
    assert_eq!(woken, Ok(Some(())), "a wake-up within 2 s of the commit");

    let admin = raw(&url, "keyward-tests").await;
    let terminated = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = $1 AND datname = current_database()",
            &[&LISTENER_APPLICATION_NAME],
        )
        .await
        .expect("pg_terminate_backend");
    assert_eq!(terminated.len(), 1, "one listener connection, found by its application_name");
    let closed = tokio::time::timeout(Duration::from_secs(5), async { while signals.recv().await.is_some() {} }).await;
    assert!(closed.is_ok(), "the channel closes when the listener's connection ends");
    // The store itself is not hurt: its pooled connections are other backends.
    assert_eq!(writer.find_org(&org.id).await.expect("find_org"), Some(org));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_cannot_be_reached_is_unavailable_quickly() {
    // A port nothing listens on: bound, then released.
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("its address").port();
    let store = PostgresStore::connect(&format!("postgres://postgres@127.0.0.1:{port}/test"))
        .expect("connecting is lazy: a down database does not fail it");
    let started = Instant::now();
    let found = tokio::time::timeout(Duration::from_secs(3), store.find_key_by_hash(&KeyHash([1; 32])))
        .await
        .expect("an answer within 3 s");
    assert!(matches!(found, Err(StoreError::Unavailable(_))), "Unavailable, got {found:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    let migrated = tokio::time::timeout(Duration::from_secs(3), store.migrate()).await.expect("within 3 s");
    assert!(matches!(migrated, Err(StoreError::Unavailable(_))), "{migrated:?}");
    let listening = tokio::time::timeout(Duration::from_secs(3), store.listen_changes()).await.expect("within 3 s");
    assert!(matches!(listening, Err(StoreError::Unavailable(_))), "{listening:?}");
}

#[test]
fn a_malformed_url_is_refused_without_echoing_its_password() {
    for url in [
        "postgres://keyward:s3cret@db.internal:notaport/keyward",
        "postgres://keyward:s3cret@db.internal/keyward?nosuchoption=1",
        "mysql://keyward:s3cret@db.internal/keyward",
        "postgres://keyward:s3cret@db.internal/keyward?sslmode=require",
    ] {
        match PostgresStore::connect(url) {
            Err(StoreError::Other(error)) => {
                let message = error.to_string();
                assert!(!message.contains("s3cret"), "{message}");
                assert!(message.contains("keyward:***@db.internal"), "names the URL: {message}");
            }
            other => panic!("{url} is refused as Other, got {other:?}"),
        }
    }
}

/// Writers on two nodes at once: every event lands in one unbroken chain, and a key change
/// decided on a stale read is re-decided, never lost nor applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_on_two_nodes_keep_one_audit_chain() {
    let databases = Databases::default();
    let (url, first) = migrated_store(&databases).await;
    let second = PostgresStore::connect(&url).expect("connect another node");
    let (first, second) = (Arc::new(first), Arc::new(second));
    let org = org_record("org_busy");
    first.insert_org(&org).await.expect("insert org");
    let shared = key("shared", &org.id, 250);
    first.org(&org.id).insert_key(&shared, &event("shared", "key.created", "key_shared")).await.expect("insert key");
    let retitled = key("retitled", &org.id, 251);
    first.org(&org.id).insert_key(&retitled, &event("retitled", "key.created", "key_retitled")).await.expect("insert");

    let node = |n: usize| Arc::clone(if n % 2 == 0 { &first } else { &second });
    let mut writes = Vec::new();
    for n in 0..40_usize {
        let (store, org_id) = (node(n), org.id.clone());
        writes.push(tokio::spawn(async move {
            let view = store.org(&org_id);
            match n % 4 {
                0 => {
                    let hash = u8::try_from(n).expect("small");
                    let new = key(&format!("w{n}"), &org_id, hash);
                    view.insert_key(&new, &event(&format!("w{n}"), "key.created", new.id.as_str())).await
                }
                1 => view.record_event(&event(&format!("w{n}"), "member.login_failed", "usr_nobody")).await,
                2 => {
                    let number = PhoneNumberRecord {
                        id: PhoneNumberId::parse(&format!("pn_{n}")).expect("a valid id"),
                        number: format!("+1415555{n:04}"),
                        created_at: T0,
                    };
                    view.add_phone_number(&number, &event(&format!("w{n}"), "phone_number.added", "pn")).await
                }
                _ => {
                    let member = MemberRecord {
                        id: MemberId::parse(&format!("usr_w{n}")).expect("a valid id"),
                        org_id: org_id.clone(),
                        email: format!("w{n}@example.com"),
                        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$x".to_owned(),
                        role: Role::User,
                        created_at: T0,
                    };
                    view.add_member(&member, &event(&format!("w{n}"), "member.added", "usr")).await
                }
            }
        }));
    }
    // Ten revocations of one key from both nodes: one wins, the others see it revoked.
    let mut revokes = Vec::new();
    for n in 0..10_usize {
        let (store, org_id, id) = (node(n), org.id.clone(), shared.id.clone());
        revokes.push(tokio::spawn(async move {
            let by = Actor::operator();
            let revoke =
                RevokeKey { id: &id, at: T0 + time::Duration::seconds(i64::try_from(n).expect("small")), by: &by };
            store.org(&org_id).revoke_key(&revoke, &event(&format!("r{n}"), "key.revoked", "key_shared")).await
        }));
    }
    // Six renames of another: each applied on the row as it then is, or refused as contended.
    let mut renames = Vec::new();
    for n in 0..6_usize {
        let (store, org_id, id) = (node(n), org.id.clone(), retitled.id.clone());
        renames.push(tokio::spawn(async move {
            let patch = KeyPatch { name: Some(format!("name {n}")), ..KeyPatch::default() };
            store.org(&org_id).update_key(&id, &patch, event(&format!("u{n}"), "key.updated", "key_retitled")).await
        }));
    }

    for write in writes {
        write.await.expect("the task ran").expect("no concurrent write is lost");
    }
    let mut outcomes = Vec::new();
    for revoke in revokes {
        outcomes.push(revoke.await.expect("the task ran").expect("revoke_key"));
    }
    assert!(outcomes.windows(2).all(|pair| pair[0] == pair[1]), "every revoker sees the one revocation");
    let mut applied = Vec::new();
    for rename in renames {
        match rename.await.expect("the task ran") {
            Ok(key) => applied.push(key.settings.name),
            Err(StoreError::Unavailable(_)) => {} // kept losing the race: retryable
            Err(other) => panic!("update_key: {other:?}"),
        }
    }
    assert!(!applied.is_empty(), "at least one rename lands");

    let chain = second.org(&org.id).audit_chain().await.expect("audit_chain");
    let count = |action: &str| chain.iter().filter(|record| record.event.action == action).count();
    assert_eq!(count("key.revoked"), 1, "one revocation event");
    assert_eq!(count("key.updated"), applied.len(), "one event per applied rename");
    assert_eq!(chain.len(), 2 + 40 + 1 + applied.len());
    assert_eq!(verify_chain(&chain), Ok(chain.len()), "the chain holds under concurrent writers on two nodes");
    let stored = first.org(&org.id).find_key(&retitled.id).await.expect("find_key").expect("the key is there");
    assert!(applied.contains(&stored.settings.name), "the stored name is one that was applied");
    // Every write that changes verification reached the feed: 2 + 10 keys, 10 numbers, 1
    // revocation, the renames.
    let (changes, _) = first.changes_since(0).await.expect("changes_since");
    assert_eq!(changes.len(), 2 + 10 + 10 + 1 + applied.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_edited_by_hand_is_an_error_not_a_panic() {
    let databases = Databases::default();
    let (url, store) = migrated_store(&databases).await;
    let org = org_record("org_edited");
    store.insert_org(&org).await.expect("insert org");
    let k = key("edited", &org.id, 7);
    store.org(&org.id).insert_key(&k, &event("edited", "key.created", "key_edited")).await.expect("insert key");

    let raw = raw(&url, "keyward-tests").await;
    raw.batch_execute("UPDATE orgs SET created_at = 'infinity'").await.expect("edit the org");
    assert!(matches!(store.list_orgs().await, Err(StoreError::Other(_))), "a time out of range");
    raw.batch_execute("UPDATE api_keys SET channels = '{\"not\": \"channels\"}'").await.expect("edit the key");
    assert!(matches!(store.find_key_by_hash(&k.hash).await, Err(StoreError::Other(_))), "JSON of another shape");
    raw.batch_execute("UPDATE api_keys SET channels = '\"all\"', hash = '\\x01'").await.expect("edit the key");
    assert!(matches!(store.org(&org.id).find_key(&k.id).await, Err(StoreError::Other(_))), "a short hash");
}
