//! The story every backend must pass (as atuin's `db_story`): schema and settings, tenancy,
//! cursors and filters, revoke idempotence, rolls, last-used batches, members and sessions, the
//! change feed and the audit chain written in each change's transaction; then what several
//! nodes on one database must hold: concurrent writers keep every org's audit chain, writing into
//! a missing org changes nothing, a follower behind the pruned feed forgets every org.
//! Call [`run_all`] with a [`Backend`]; it panics on the first broken promise, naming it.

mod keyring;

use std::sync::Arc;

use keyward_core::audit::{chain_hash, GENESIS};
use keyward_core::ids::{ChannelId, EventId, KeyId, MemberId, OrgId, PhoneNumberId};
use keyward_core::key::{Environment, KeyHash};
use keyward_core::record::{Actor, ActorKind, Channels, KeyPatch, KeyRecord, KeySettings, Role};
use keyward_core::validate::parse_ip_entry;
use serde_json::{json, Value};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use crate::{
    AuditFilter, AuditRecord, Change, ChannelRecord, Cursor, KeyFilter, MemberRecord, NewAuditEvent, OrgRecord,
    OrgStore, Page, PhoneNumberRecord, RevokeKey, RollKey, SessionRecord, StatusFilter, Store, StoreError,
};

/// The story's "now". Microseconds on purpose: keyward's times have microsecond precision on
/// every backend (PostgreSQL's `timestamptz`), and must round-trip exactly.
const T0: OffsetDateTime = datetime!(2026-01-15 10:00:00.123456 UTC);

fn at(seconds: i64) -> OffsetDateTime {
    T0 + Duration::seconds(seconds)
}

fn key_id(n: u8) -> KeyId {
    KeyId::parse(&format!("key_k{n}")).expect("a valid key id")
}

fn page(limit: u32, cursor: Option<Cursor>) -> Page {
    Page { limit, cursor }
}

fn key_filter(status: Option<StatusFilter>, created_by: Option<&str>) -> KeyFilter {
    KeyFilter { status, created_by: created_by.map(str::to_owned), search: None, now: T0 }
}

fn ids(keys: &[KeyRecord]) -> Vec<&str> {
    keys.iter().map(|key| key.id.as_str()).collect()
}

/// A plain key `n` of `org`: hash `[n; 32]`, id `key_k{n}`.
fn key(n: u8, org: &OrgId, created_by: &str) -> KeyRecord {
    KeyRecord {
        id: key_id(n),
        org_id: org.clone(),
        prefix: format!("kw_live_0000000{n}"),
        hash: KeyHash([n; 32]),
        hash_version: 1,
        sealed_signing_secret: None,
        seal_version: 1,
        settings: KeySettings {
            name: format!("key {n}"),
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
        created_at: at(-86_400 + i64::from(n)),
        created_by: created_by.to_owned(),
        revoked_at: None,
        revoked_by: None,
        last_used_at: None,
    }
}

/// Member `name` of `org`: id `usr_{name}`, email `{name}@example.com`, created at `at(seconds)`.
fn member(name: &str, org: &OrgId, role: Role, seconds: i64) -> MemberRecord {
    MemberRecord {
        id: MemberId::parse(&format!("usr_{name}")).expect("a valid member id"),
        org_id: org.clone(),
        email: format!("{name}@example.com"),
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA${name}"),
        role,
        created_at: at(seconds),
    }
}

/// Session `n` of `member`: token hash `[n; 32]`, CSRF hash `[n + 1; 32]`, from `at(500)` to `at(expires)`.
fn session(n: u8, member: &MemberRecord, expires: i64) -> SessionRecord {
    SessionRecord {
        token_hash: KeyHash([n; 32]),
        csrf_hash: KeyHash([n.wrapping_add(1); 32]),
        member_id: member.id.clone(),
        org_id: member.org_id.clone(),
        created_at: at(500),
        expires_at: at(expires),
    }
}

/// A member's own actor, as a login records it.
fn actor_of(member: &MemberRecord) -> Actor {
    Actor { kind: ActorKind::Member, id: member.id.as_str().to_owned(), name: member.email.clone() }
}

/// A key with every optional setting filled, to check each column round-trips.
fn full_key(n: u8, org: &OrgId) -> KeyRecord {
    let mut key = key(n, org, "usr_alice");
    key.prefix = format!("kw_test_0000000{n}");
    key.sealed_signing_secret = Some(vec![1, 2, 3, 0, 255]);
    let ips = ["10.0.0.0/8", "203.0.113.7", "2001:db8::1", "2001:db8::/32"];
    key.settings = KeySettings {
        name: "Production sender".to_owned(),
        scopes: vec!["messages:send".to_owned(), "templates:read".to_owned()],
        hmac_required: true,
        rate_limit: Some(50),
        expires_at: Some(at(30 * 86_400)),
        ip_allowlist: ips.iter().map(|ip| parse_ip_entry(ip).expect("a valid IP entry")).collect(),
        phone_allowlist: vec!["+14155550100".to_owned()],
        channels: Channels::Only(vec!["marketing".to_owned(), "alerts".to_owned()]),
        environment: Environment::Test,
        external_id: Some("crm-42".to_owned()),
        meta: json!({"team": "growth", "tier": 2, "tags": ["a", "b"]}).as_object().cloned(),
    };
    key
}

struct Story<'s> {
    store: &'s dyn Store,
    org_a: OrgId,
    org_b: OrgId,
    alice: Actor,
    operator: Actor,
    /// Events written so far; each gets the next second after [`T0`].
    events: u32,
    /// What each org's audit chain must hold, oldest first.
    audit_a: Vec<NewAuditEvent>,
    audit_b: Vec<NewAuditEvent>,
    /// Where the change feed stood before the story, and what it must report since.
    feed_start: i64,
    feed: Vec<Change>,
    /// A position in the feed taken mid-story, and how many of `feed` came before it.
    feed_mark: (i64, usize),
}

/// How the story gets its databases.
#[async_trait::async_trait]
pub trait Backend: Sync {
    /// A new, empty, unmigrated database, named so that [`Backend::open`] finds it.
    async fn create_database(&self) -> String;
    /// A store on `database` with connections of its own, as another node would have.
    async fn open(&self, database: &str) -> Arc<dyn Store>;
}

/// Every part of the story, each on a fresh database.
pub async fn run_all(backend: &dyn Backend) {
    let database = backend.create_database().await;
    run(backend.open(&database).await.as_ref()).await;
    concurrent_writers_keep_the_audit_chain(backend).await;
    writing_into_a_missing_org_is_not_found(backend).await;
    a_bulk_import_is_one_transaction(backend).await;
    a_follower_behind_the_pruned_feed_is_told_to_forget_every_org(backend).await;
    keyring::master_key_rotation_story(backend).await;
    keyring::two_nodes_rotating_at_once_record_one_version(backend).await;
}

/// Runs the single-store story. `store` must be freshly created and empty.
pub async fn run(store: &dyn Store) {
    schema_and_settings(store).await;
    let mut plot = Story {
        store,
        org_a: OrgId::parse("org_A1").expect("a valid org id"),
        org_b: OrgId::parse("org_B2").expect("a valid org id"),
        alice: Actor { kind: ActorKind::Member, id: "usr_alice".to_owned(), name: "alice@example.com".to_owned() },
        operator: Actor::operator(),
        events: 0,
        audit_a: Vec::new(),
        audit_b: Vec::new(),
        feed_start: store.latest_change().await.expect("latest_change"),
        feed: Vec::new(),
        feed_mark: (0, 0),
    };
    plot.orgs().await;
    plot.numbers_and_channels().await;
    plot.insert_keys().await;
    plot.tenancy().await;
    plot.listing().await;
    plot.update().await;
    plot.revoke().await;
    plot.roll().await;
    plot.last_used().await;
    plot.no_event_no_change().await;
    plot.members().await;
    plot.sessions().await;
    plot.remove_member().await;
    plot.record_events().await;
    plot.change_feed().await;
    plot.audit_chains().await;
    plot.audit_listing().await;
}

async fn schema_and_settings(store: &dyn Store) {
    store.migrate().await.expect("first migrate");
    store.migrate().await.expect("migrate is idempotent");
    store.ping().await.expect("ping");

    assert_eq!(store.setting("operator_token_hash").await.expect("setting"), None);
    assert!(store.put_setting_if_absent("operator_token_hash", "v1").await.expect("put setting"));
    assert!(
        !store.put_setting_if_absent("operator_token_hash", "v2").await.expect("put setting again"),
        "a second put_setting_if_absent must not overwrite"
    );
    assert_eq!(store.setting("operator_token_hash").await.expect("setting").as_deref(), Some("v1"));
}

impl Story<'_> {
    fn a(&self) -> Box<dyn OrgStore + '_> {
        self.store.org(&self.org_a)
    }

    fn b(&self) -> Box<dyn OrgStore + '_> {
        self.store.org(&self.org_b)
    }

    fn event(&mut self, actor: &Actor, action: &str, target_type: &str, target_id: &str) -> NewAuditEvent {
        self.events += 1;
        NewAuditEvent {
            id: EventId::parse(&format!("evt_e{}", self.events)).expect("a valid event id"),
            at: at(i64::from(self.events)),
            actor: actor.clone(),
            actor_ip: (actor.kind == ActorKind::Member).then(|| "203.0.113.7".to_owned()),
            user_agent: (actor.kind == ActorKind::Member).then(|| format!("Mozilla/5.0 (story {})", self.events)),
            action: action.to_owned(),
            target_type: target_type.to_owned(),
            target_id: target_id.to_owned(),
            target_name: format!("name of {target_id}"),
            changes: json!({"detail": self.events}),
            trace_id: format!("{:032x}", self.events),
        }
    }

    /// An event that reuses the first event's id, so writing it fails: the change must not land.
    fn duplicate_event(&self) -> NewAuditEvent {
        let mut event = self.audit_a.first().expect("the story has written events").clone();
        event.at = at(9_999);
        event
    }

    async fn key_a(&self, n: u8) -> KeyRecord {
        self.a().find_key(&key_id(n)).await.expect("find_key").unwrap_or_else(|| panic!("key_k{n} is in org A"))
    }

    async fn orgs(&mut self) {
        let org_a = OrgRecord { id: self.org_a.clone(), name: "Acme".to_owned(), created_at: at(-100_000) };
        let org_b = OrgRecord { id: self.org_b.clone(), name: "Acme".to_owned(), created_at: at(-90_000) };
        self.store.insert_org(&org_a).await.expect("insert org A");
        self.store.insert_org(&org_b).await.expect("org names need not be unique");
        assert!(
            matches!(self.store.insert_org(&org_a).await, Err(StoreError::Conflict { .. })),
            "a second org with the same id is a conflict"
        );
        assert_eq!(self.store.find_org(&self.org_a).await.expect("find_org"), Some(org_a.clone()));
        let missing = OrgId::parse("org_missing").expect("a valid org id");
        assert_eq!(self.store.find_org(&missing).await.expect("find_org"), None);
        let orgs = self.store.list_orgs().await.expect("list_orgs");
        assert!(orgs.contains(&org_a) && orgs.contains(&org_b), "list_orgs holds both orgs: {orgs:?}");
        let nothing = self.store.org(&missing).list_keys(&key_filter(None, None), page(10, None)).await;
        assert!(nothing.expect("list_keys of a missing org").items.is_empty());
    }

    async fn numbers_and_channels(&mut self) {
        let number = PhoneNumberRecord {
            id: PhoneNumberId::parse("pn_1").expect("a valid id"),
            number: "+14155550100".to_owned(),
            created_at: at(1),
        };
        let event = self.event(&self.alice.clone(), "phone_number.added", "phone_number", "pn_1");
        self.a().add_phone_number(&number, &event).await.expect("add phone number");
        self.audit_a.push(event);
        self.feed.push(Change::Org(self.org_a.clone()));

        let again = PhoneNumberRecord { id: PhoneNumberId::parse("pn_2").expect("a valid id"), ..number.clone() };
        let event = self.event(&self.alice.clone(), "phone_number.added", "phone_number", "pn_2");
        match self.a().add_phone_number(&again, &event).await {
            Err(StoreError::Conflict { constraint: "phone_number" }) => {}
            other => panic!("a number already in the org is a phone_number conflict, got {other:?}"),
        }
        // The same number in another org is fine: uniqueness is per org.
        let in_b = PhoneNumberRecord { id: PhoneNumberId::parse("pn_3").expect("a valid id"), ..number.clone() };
        let event = self.event(&self.operator.clone(), "phone_number.added", "phone_number", "pn_3");
        self.b().add_phone_number(&in_b, &event).await.expect("the same number in org B");
        self.audit_b.push(event);
        self.feed.push(Change::Org(self.org_b.clone()));
        assert_eq!(self.a().phone_numbers().await.expect("phone_numbers"), [number]);
        assert_eq!(self.b().phone_numbers().await.expect("phone_numbers"), [in_b]);

        let channel = ChannelRecord {
            id: ChannelId::parse("ch_1").expect("a valid id"),
            slug: "marketing".to_owned(),
            name: "Marketing".to_owned(),
            created_at: at(2),
        };
        let event = self.event(&self.alice.clone(), "channel.added", "channel", "ch_1");
        self.a().add_channel(&channel, &event).await.expect("add channel");
        self.audit_a.push(event);
        self.feed.push(Change::Org(self.org_a.clone()));
        let again = ChannelRecord { id: ChannelId::parse("ch_2").expect("a valid id"), ..channel.clone() };
        let event = self.event(&self.alice.clone(), "channel.added", "channel", "ch_2");
        match self.a().add_channel(&again, &event).await {
            Err(StoreError::Conflict { constraint: "channel_slug" }) => {}
            other => panic!("a slug already in the org is a channel_slug conflict, got {other:?}"),
        }
        assert_eq!(self.a().channels().await.expect("channels"), [channel]);
        assert!(self.b().channels().await.expect("channels").is_empty());
    }

    /// Org A: k1 (every setting), k2 (expired), k3, k4, k5, alternating creators. Org B: k9.
    async fn insert_keys(&mut self) {
        let mut expired = key(2, &self.org_a, "operator");
        expired.settings.expires_at = Some(at(-3_600));
        let keys = [
            full_key(1, &self.org_a),
            expired,
            key(3, &self.org_a, "usr_alice"),
            key(4, &self.org_a, "operator"),
            key(5, &self.org_a, "usr_alice"),
        ];
        for key in &keys {
            let event = self.event(&self.alice.clone(), "key.created", "api_key", key.id.as_str());
            self.a().insert_key(key, &event).await.expect("insert_key");
            self.audit_a.push(event);
            self.feed.push(Change::Key(key.hash));
            assert_eq!(self.a().find_key(&key.id).await.expect("find_key").as_ref(), Some(key), "key round-trips");
            assert_eq!(
                self.store.find_key_by_hash(&key.hash).await.expect("find_key_by_hash").as_ref(),
                Some(key),
                "find_key_by_hash finds {}",
                key.id
            );
        }
        let in_b = key(9, &self.org_b, "operator");
        let event = self.event(&self.operator.clone(), "key.created", "api_key", in_b.id.as_str());
        self.b().insert_key(&in_b, &event).await.expect("insert_key in B");
        self.audit_b.push(event);
        self.feed.push(Change::Key(in_b.hash));
        assert_eq!(self.store.find_key_by_hash(&KeyHash([200; 32])).await.expect("find_key_by_hash"), None);
        self.feed_mark = (self.store.latest_change().await.expect("latest_change"), self.feed.len());
    }

    /// Org B's view sees nothing of org A's keys and can change none of them.
    async fn tenancy(&mut self) {
        let foreign = key_id(1);
        let event = self.event(&self.operator.clone(), "key.updated", "api_key", foreign.as_str());
        let b = self.b();
        assert_eq!(b.find_key(&foreign).await.expect("find_key"), None, "B cannot find A's key");
        assert_eq!(ids(&b.list_keys(&key_filter(None, None), page(50, None)).await.expect("list").items), ["key_k9"]);
        let patch = KeyPatch { name: Some("stolen".to_owned()), ..KeyPatch::default() };
        assert!(matches!(b.update_key(&foreign, &patch, event.clone()).await, Err(StoreError::NotFound)));
        let revoke = RevokeKey { id: &foreign, at: at(50), by: &self.operator };
        assert!(matches!(b.revoke_key(&revoke, &event).await, Err(StoreError::NotFound)));
        let new = key(8, &self.org_b, "operator");
        let roll = RollKey { old: &foreign, new: &new, at: at(50), grace_until: None, by: &self.operator };
        assert!(matches!(b.roll_key(&roll, &event, &event).await, Err(StoreError::NotFound)));
        assert_eq!(b.find_key(&new.id).await.expect("find_key"), None, "a refused roll inserts nothing");
        assert!(
            b.list_audit(&AuditFilter::default(), page(100, None))
                .await
                .expect("list_audit")
                .items
                .iter()
                .all(|record| record.org_id == self.org_b),
            "B's audit log holds only B's events"
        );
        drop(b);
        assert_eq!(self.key_a(1).await, full_key(1, &self.org_a), "A's key is untouched");
    }

    async fn listing(&self) {
        let a = self.a();
        let all = key_filter(None, None);
        let first = a.list_keys(&all, page(2, None)).await.expect("page 1");
        assert_eq!(ids(&first.items), ["key_k5", "key_k4"], "newest first");
        let second = a.list_keys(&all, page(2, first.next)).await.expect("page 2");
        assert_eq!(ids(&second.items), ["key_k3", "key_k2"]);
        let third = a.list_keys(&all, page(2, second.next)).await.expect("page 3");
        assert_eq!(ids(&third.items), ["key_k1"]);
        assert_eq!(third.next, None, "the last page has no cursor");
        let exact = a.list_keys(&all, page(5, None)).await.expect("exact page");
        assert_eq!((exact.items.len(), exact.next), (5, None), "a full last page has no cursor either");

        let cases: [(Option<StatusFilter>, Option<&str>, &[&str]); 5] = [
            (Some(StatusFilter::Active), None, &["key_k5", "key_k4", "key_k3", "key_k1"]),
            (Some(StatusFilter::Expired), None, &["key_k2"]),
            (Some(StatusFilter::Revoked), None, &[]),
            (None, Some("usr_alice"), &["key_k5", "key_k3", "key_k1"]),
            (Some(StatusFilter::Active), Some("operator"), &["key_k4"]),
        ];
        for (status, created_by, expected) in cases {
            let listed = a.list_keys(&key_filter(status, created_by), page(10, None)).await.expect("list_keys");
            assert_eq!(ids(&listed.items), expected, "filter status={status:?} created_by={created_by:?}");
        }
        // Search: a name contains it (ASCII case folded), or a prefix starts with it.
        let searches: [(&str, Option<StatusFilter>, &[&str]); 7] = [
            ("KEY 3", None, &["key_k3"]),
            ("ey", None, &["key_k5", "key_k4", "key_k3", "key_k2"]),
            ("production SENDER", None, &["key_k1"]),
            ("kw_live_00000005", None, &["key_k5"]),
            ("kw_live_", Some(StatusFilter::Expired), &["key_k2"]),
            ("0000000", None, &[]),
            ("%", None, &[]),
        ];
        for (search, status, expected) in searches {
            let filter = KeyFilter { search: Some(search.to_owned()), ..key_filter(status, None) };
            let listed = a.list_keys(&filter, page(10, None)).await.expect("list_keys");
            assert_eq!(ids(&listed.items), expected, "search {search:?} status={status:?}");
        }
        // Filters and cursors together.
        let alice = key_filter(None, Some("usr_alice"));
        let first = a.list_keys(&alice, page(2, None)).await.expect("filtered page 1");
        assert_eq!(ids(&first.items), ["key_k5", "key_k3"]);
        let second = a.list_keys(&alice, page(2, first.next)).await.expect("filtered page 2");
        assert_eq!((ids(&second.items), second.next), (vec!["key_k1"], None));
    }

    async fn update(&mut self) {
        let before = self.key_a(1).await;
        let patch = KeyPatch {
            name: Some("Renamed".to_owned()),
            scopes: Some(before.settings.scopes.clone()), // the same value: not a change
            rate_limit: Some(None),
            ..KeyPatch::default()
        };
        let mut event = self.event(&self.alice.clone(), "key.updated", "api_key", "key_k1");
        event.changes = Value::Null;
        let updated = self.a().update_key(&key_id(1), &patch, event.clone()).await.expect("update_key");
        assert_eq!(updated.settings.name, "Renamed");
        assert_eq!(updated.settings.rate_limit, None);
        assert_eq!(self.key_a(1).await, updated, "update_key returns the stored row");
        event.changes = json!({
            "name": {"old": "Production sender", "new": "Renamed"},
            "rate_limit": {"old": 50, "new": null},
        });
        self.audit_a.push(event);
        self.feed.push(Change::Key(updated.hash));
        self.assert_audit_a("update_key writes one key.updated event with the real changes").await;

        // Nothing really changes: no event, no feed entry.
        let same = KeyPatch { name: Some("Renamed".to_owned()), ..KeyPatch::default() };
        let event = self.event(&self.alice.clone(), "key.updated", "api_key", "key_k1");
        let unchanged = self.a().update_key(&key_id(1), &same, event.clone()).await.expect("no-op update");
        assert_eq!(unchanged, updated);
        let unchanged = self.a().update_key(&key_id(1), &KeyPatch::default(), event).await.expect("empty patch");
        assert_eq!(unchanged, updated);
        self.assert_audit_a("a no-op patch writes no event").await;
    }

    async fn revoke(&mut self) {
        let feed_before = self.store.latest_change().await.expect("latest_change");
        let event = self.event(&self.alice.clone(), "key.revoked", "api_key", "key_k3");
        let revoke = RevokeKey { id: &key_id(3), at: at(100), by: &self.alice };
        let revoked = self.a().revoke_key(&revoke, &event).await.expect("revoke_key");
        assert_eq!((revoked.revoked_at, revoked.revoked_by.as_deref()), (Some(at(100)), Some("usr_alice")));
        assert_eq!(self.key_a(3).await, revoked);
        self.audit_a.push(event);
        self.feed.push(Change::Key(revoked.hash));
        assert!(self.store.latest_change().await.expect("latest_change") > feed_before);

        // Again, later and by someone else: the first revocation stands and nothing is written.
        let feed_before = self.store.latest_change().await.expect("latest_change");
        let event = self.event(&self.operator.clone(), "key.revoked", "api_key", "key_k3");
        let again = RevokeKey { id: &key_id(3), at: at(200), by: &self.operator };
        assert_eq!(self.a().revoke_key(&again, &event).await.expect("revoke again"), revoked);
        self.assert_audit_a("a second revoke writes no event").await;
        assert_eq!(self.store.latest_change().await.expect("latest_change"), feed_before);

        let patch = KeyPatch { name: Some("Back".to_owned()), ..KeyPatch::default() };
        assert!(
            matches!(self.a().update_key(&key_id(3), &patch, event.clone()).await, Err(StoreError::KeyInactive)),
            "a revoked key cannot be edited"
        );
        let new = key(6, &self.org_a, "usr_alice");
        let roll = RollKey { old: &key_id(3), new: &new, at: at(200), grace_until: None, by: &self.alice };
        assert!(
            matches!(self.a().roll_key(&roll, &event, &event).await, Err(StoreError::KeyInactive)),
            "a revoked key cannot be rolled"
        );
        assert_eq!(self.store.find_key_by_hash(&KeyHash([3; 32])).await.expect("by hash"), Some(revoked));

        // A revoked key past its expiry reports revoked, not expired.
        let mut lapsed = key(12, &self.org_a, "operator");
        lapsed.settings.expires_at = Some(at(-60));
        let created = self.event(&self.operator.clone(), "key.created", "api_key", "key_k12");
        let revoked = self.event(&self.operator.clone(), "key.revoked", "api_key", "key_k12");
        self.a().insert_key(&lapsed, &created).await.expect("insert_key");
        let revoke = RevokeKey { id: &lapsed.id, at: at(101), by: &self.operator };
        self.a().revoke_key(&revoke, &revoked).await.expect("revoke an expired key");
        self.audit_a.extend([created, revoked]);
        self.feed.extend([Change::Key(lapsed.hash), Change::Key(lapsed.hash)]);
        let cases: [(StatusFilter, &[&str]); 3] = [
            (StatusFilter::Revoked, &["key_k12", "key_k3"]),
            (StatusFilter::Expired, &["key_k2"]),
            (StatusFilter::Active, &["key_k5", "key_k4", "key_k1"]),
        ];
        for (status, expected) in cases {
            let listed = self.a().list_keys(&key_filter(Some(status), None), page(10, None)).await;
            assert_eq!(ids(&listed.expect("list_keys").items), expected, "status {status:?} after revocations");
        }
    }

    async fn roll(&mut self) {
        // Grace on a key without expiry: it now ends at the grace time.
        let (rolled, created) = self.roll_events("key_k4", "key_k6");
        let new = key(6, &self.org_a, "usr_alice");
        let grace = RollKey { old: &key_id(4), new: &new, at: at(300), grace_until: Some(at(3_900)), by: &self.alice };
        let old = self.a().roll_key(&grace, &rolled, &created).await.expect("roll with grace");
        assert_eq!((old.settings.expires_at, old.revoked_at), (Some(at(3_900)), None));
        assert_eq!(self.key_a(4).await, old, "roll_key returns the old key as stored");
        assert_eq!(self.key_a(6).await, new, "the new key is stored");
        self.audit_a.extend([rolled, created]);
        self.feed.push(Change::Key(old.hash));

        // Grace never extends: k1 expires in 30 days, before the 60-day grace.
        let (rolled, created) = self.roll_events("key_k1", "key_k7");
        let new = key(7, &self.org_a, "usr_alice");
        let late =
            RollKey { old: &key_id(1), new: &new, at: at(301), grace_until: Some(at(60 * 86_400)), by: &self.alice };
        let old = self.a().roll_key(&late, &rolled, &created).await.expect("roll with a long grace");
        assert_eq!(old.settings.expires_at, Some(at(30 * 86_400)));
        self.audit_a.extend([rolled, created]);
        self.feed.push(Change::Key(old.hash));

        // No grace: the old key is revoked at once, by the roller.
        let (rolled, created) = self.roll_events("key_k5", "key_k8");
        let new = key(8, &self.org_a, "operator");
        let now = RollKey { old: &key_id(5), new: &new, at: at(302), grace_until: None, by: &self.operator };
        let old = self.a().roll_key(&now, &rolled, &created).await.expect("roll without grace");
        assert_eq!((old.revoked_at, old.revoked_by.as_deref()), (Some(at(302)), Some("operator")));
        assert_eq!(self.key_a(8).await, new);
        self.audit_a.extend([rolled, created]);
        self.feed.push(Change::Key(old.hash));
        self.assert_audit_a("a roll writes key.rolled then key.created").await;
    }

    fn roll_events(&mut self, old: &str, new: &str) -> (NewAuditEvent, NewAuditEvent) {
        let alice = self.alice.clone();
        (self.event(&alice, "key.rolled", "api_key", old), self.event(&alice, "key.created", "api_key", new))
    }

    async fn last_used(&self) {
        let k2 = key_id(2);
        let unknown = key_id(77);
        let batches: [(&[(KeyId, OffsetDateTime)], OffsetDateTime); 4] = [
            (&[(k2.clone(), at(10))], at(10)),
            (&[(k2.clone(), at(5))], at(10)),
            (&[(k2.clone(), at(20)), (k2.clone(), at(15)), (unknown, at(30))], at(20)),
            (&[], at(20)),
        ];
        for (batch, expected) in batches {
            self.store.record_last_used(batch).await.expect("record_last_used");
            assert_eq!(self.key_a(2).await.last_used_at, Some(expected), "last_used_at only moves forward");
        }
    }

    /// A write whose audit event cannot be stored leaves no trace at all.
    async fn no_event_no_change(&self) {
        let feed_before = self.store.latest_change().await.expect("latest_change");
        let duplicate = self.duplicate_event();
        let a = self.a();

        let new = key(10, &self.org_a, "usr_alice");
        assert!(a.insert_key(&new, &duplicate).await.is_err(), "insert_key with a broken event fails");
        assert_eq!(a.find_key(&new.id).await.expect("find_key"), None, "and the key is not stored");
        assert_eq!(self.store.find_key_by_hash(&new.hash).await.expect("by hash"), None);

        let k2 = self.key_a(2).await;
        let patch = KeyPatch { name: Some("Lost".to_owned()), ..KeyPatch::default() };
        assert!(a.update_key(&k2.id, &patch, duplicate.clone()).await.is_err());
        let revoke = RevokeKey { id: &k2.id, at: at(400), by: &self.alice };
        assert!(a.revoke_key(&revoke, &duplicate).await.is_err());
        let roll = RollKey { old: &k2.id, new: &new, at: at(400), grace_until: None, by: &self.alice };
        assert!(a.roll_key(&roll, &duplicate, &duplicate).await.is_err());
        assert_eq!(self.key_a(2).await, k2, "a failed update, revoke or roll leaves the key as it was");
        assert_eq!(a.find_key(&new.id).await.expect("find_key"), None, "a failed roll inserts no key");

        // A new key whose hash is taken fails the same way, after the event would have been fine.
        let mut clash = key(11, &self.org_a, "usr_alice");
        clash.hash = k2.hash;
        let event = NewAuditEvent { id: EventId::parse("evt_clash").expect("a valid id"), ..duplicate.clone() };
        assert!(a.insert_key(&clash, &event).await.is_err(), "two keys cannot share a hash");
        let roll = RollKey { old: &k2.id, new: &clash, at: at(400), grace_until: None, by: &self.alice };
        assert!(a.roll_key(&roll, &event, &event).await.is_err());
        assert_eq!(self.key_a(2).await, k2);

        let number = PhoneNumberRecord {
            id: PhoneNumberId::parse("pn_9").expect("a valid id"),
            number: "+14155550199".to_owned(),
            created_at: at(400),
        };
        assert!(a.add_phone_number(&number, &duplicate).await.is_err());
        assert_eq!(a.phone_numbers().await.expect("phone_numbers").len(), 1);
        drop(a);
        assert_eq!(self.store.latest_change().await.expect("latest_change"), feed_before, "nothing in the feed");
        self.assert_audit_a("failed writes add no event").await;
    }

    /// Org A: alice (owner), bob (read-only). Org B: carol (admin). Emails are unique across orgs.
    async fn members(&mut self) {
        let alice = member("alice", &self.org_a, Role::Owner, 500);
        let bob = member("bob", &self.org_a, Role::ReadOnly, 501);
        let carol = member("carol", &self.org_b, Role::Admin, 502);
        for added in [&alice, &bob, &carol] {
            let event = self.event(&self.operator.clone(), "member.added", "member", added.id.as_str());
            self.store.org(&added.org_id).add_member(added, &event).await.expect("add_member");
            if added.org_id == self.org_a {
                self.audit_a.push(event);
            } else {
                self.audit_b.push(event);
            }
        }
        assert_eq!(self.a().members().await.expect("members"), [alice.clone(), bob.clone()], "oldest first");
        assert_eq!(self.b().members().await.expect("members"), std::slice::from_ref(&carol));
        assert_eq!(self.a().find_member(&bob.id).await.expect("find_member"), Some(bob.clone()), "round-trips");
        for found in [&alice, &carol] {
            let by_email = self.store.find_member_by_email(&found.email).await.expect("find_member_by_email");
            assert_eq!(by_email.as_ref(), Some(found), "login finds {} in any org", found.email);
        }
        assert_eq!(self.store.find_member_by_email("nobody@example.com").await.expect("by email"), None);

        // The same email in another org, or again in the same one, is refused, and writes nothing.
        let mut mallory = member("mallory", &self.org_b, Role::Owner, 503);
        mallory.email.clone_from(&alice.email);
        let mut twin = member("twin", &self.org_a, Role::User, 503);
        twin.email.clone_from(&alice.email);
        for refused in [&mallory, &twin] {
            let event = self.event(&self.operator.clone(), "member.added", "member", refused.id.as_str());
            match self.store.org(&refused.org_id).add_member(refused, &event).await {
                Err(StoreError::Conflict { constraint: "member_email" }) => {}
                other => panic!("an email already taken in any org is a member_email conflict, got {other:?}"),
            }
            assert_eq!(self.store.org(&refused.org_id).find_member(&refused.id).await.expect("find_member"), None);
        }
        assert_eq!(self.b().members().await.expect("members"), [carol]);
        assert_eq!(self.store.find_member_by_email(&alice.email).await.expect("by email"), Some(alice.clone()));

        // Org B's view neither sees nor removes A's members.
        let event = self.event(&self.operator.clone(), "member.removed", "member", alice.id.as_str());
        assert_eq!(self.b().find_member(&alice.id).await.expect("find_member"), None, "B cannot find A's member");
        assert!(matches!(self.b().remove_member(&alice.id, &event).await, Err(StoreError::NotFound)));
        assert_eq!(self.a().find_member(&alice.id).await.expect("find_member"), Some(alice));

        // A member whose event cannot be stored is not stored either.
        let dave = member("dave", &self.org_a, Role::User, 504);
        assert!(self.a().add_member(&dave, &self.duplicate_event()).await.is_err());
        assert_eq!(self.a().find_member(&dave.id).await.expect("find_member"), None);
        assert_eq!(self.store.find_member_by_email(&dave.email).await.expect("by email"), None);
        self.assert_audit_a("member.added events, and none for refused members").await;
    }

    async fn member_a(&self, name: &str) -> MemberRecord {
        let id = MemberId::parse(&format!("usr_{name}")).expect("a valid member id");
        self.a().find_member(&id).await.expect("find_member").unwrap_or_else(|| panic!("{name} is in org A"))
    }

    /// Logs `member` in with session `n`, recording the event in the member's org.
    async fn login(&mut self, n: u8, member: &MemberRecord, expires: i64) -> SessionRecord {
        let session = session(n, member, expires);
        let event = self.event(&actor_of(member), "member.login", "member", member.id.as_str());
        self.store.insert_session(&session, &event).await.expect("insert_session");
        if member.org_id == self.org_a {
            self.audit_a.push(event);
        } else {
            self.audit_b.push(event);
        }
        session
    }

    async fn sessions(&mut self) {
        let alice = self.member_a("alice").await;
        let bob = self.member_a("bob").await;
        let carol = self.b().members().await.expect("members").pop().expect("carol is in org B");

        let s1 = self.login(101, &alice, 3_600).await;
        self.assert_audit_a("insert_session writes member.login in the same transaction").await;
        assert_eq!(
            self.store.find_session(&s1.token_hash).await.expect("find_session"),
            Some((s1.clone(), alice.clone())),
            "find_session returns the session and its member"
        );
        assert_eq!(self.store.find_session(&s1.csrf_hash).await.expect("find_session"), None, "by token only");
        assert_eq!(self.store.find_session(&KeyHash([250; 32])).await.expect("find_session"), None);
        let s2 = self.login(103, &carol, 3_600).await;
        assert_eq!(self.store.find_session(&s2.token_hash).await.expect("find_session"), Some((s2, carol.clone())));

        // A session must name a member of its own org, and a stored one; nothing is written otherwise.
        let mut foreign = session(105, &carol, 3_600);
        foreign.org_id = self.org_a.clone();
        let mut ghost = session(107, &carol, 3_600);
        ghost.member_id = MemberId::parse("usr_ghost").expect("a valid member id");
        for refused in [&foreign, &ghost] {
            let event = self.event(&actor_of(&carol), "member.login", "member", carol.id.as_str());
            assert!(self.store.insert_session(refused, &event).await.is_err(), "{refused:?} is refused");
            assert_eq!(self.store.find_session(&refused.token_hash).await.expect("find_session"), None);
        }
        // A session whose event cannot be stored is not stored either; nor is a second one with a taken token.
        let lost = session(109, &alice, 3_600);
        assert!(self.store.insert_session(&lost, &self.duplicate_event()).await.is_err());
        assert_eq!(self.store.find_session(&lost.token_hash).await.expect("find_session"), None);
        let taken = session(101, &bob, 3_600);
        let event = self.event(&actor_of(&bob), "member.login", "member", bob.id.as_str());
        assert!(matches!(self.store.insert_session(&taken, &event).await, Err(StoreError::Conflict { .. })));
        assert_eq!(self.store.find_session(&s1.token_hash).await.expect("find_session"), Some((s1, alice.clone())));
        self.assert_audit_a("refused sessions write no event").await;

        // Logout is idempotent.
        let s3 = self.login(111, &alice, 3_600).await;
        for _ in 0..2 {
            self.store.delete_session(&s3.token_hash).await.expect("delete_session");
            assert_eq!(self.store.find_session(&s3.token_hash).await.expect("find_session"), None);
        }

        // Housekeeping at at(650): a session expired before, one expiring exactly then, and one not yet.
        let gone = self.login(113, &bob, 600).await;
        let edge = self.login(115, &alice, 650).await;
        let kept = self.login(117, &bob, 651).await;
        assert_eq!(self.store.delete_expired_sessions(at(650)).await.expect("delete_expired_sessions"), 2);
        for expired in [&gone, &edge] {
            assert_eq!(self.store.find_session(&expired.token_hash).await.expect("find_session"), None);
        }
        assert_eq!(self.store.find_session(&kept.token_hash).await.expect("find_session"), Some((kept, bob)));
        assert_eq!(self.store.delete_expired_sessions(at(650)).await.expect("again"), 0, "nothing left to expire");
        self.assert_audit_a("housekeeping writes no event").await;
    }

    /// Removing bob (who has two sessions) ends them, alone, with the event.
    async fn remove_member(&mut self) {
        let bob = self.member_a("bob").await;
        let alice = self.member_a("alice").await;
        let bobs = [session(119, &bob, 7_200), session(121, &bob, 7_200)];
        for session in &bobs {
            let event = self.event(&actor_of(&bob), "member.login", "member", bob.id.as_str());
            self.store.insert_session(session, &event).await.expect("insert_session");
            self.audit_a.push(event);
        }

        // Not with an event that cannot be stored: bob and his sessions stay.
        assert!(self.a().remove_member(&bob.id, &self.duplicate_event()).await.is_err());
        assert_eq!(self.a().find_member(&bob.id).await.expect("find_member"), Some(bob.clone()));
        assert!(self.store.find_session(&bobs[0].token_hash).await.expect("find_session").is_some());

        let event = self.event(&self.alice.clone(), "member.removed", "member", bob.id.as_str());
        let removed = self.a().remove_member(&bob.id, &event).await.expect("remove_member");
        assert_eq!(removed, bob, "remove_member returns the member as it was");
        self.audit_a.push(event);
        self.feed.push(Change::Org(self.org_a.clone()));
        for session in &bobs {
            assert_eq!(self.store.find_session(&session.token_hash).await.expect("find_session"), None);
        }
        assert_eq!(self.a().find_member(&bob.id).await.expect("find_member"), None);
        assert_eq!(self.store.find_member_by_email(&bob.email).await.expect("by email"), None);
        assert_eq!(self.a().members().await.expect("members"), [alice]);
        let s1 = &KeyHash([101; 32]);
        assert!(self.store.find_session(s1).await.expect("find_session").is_some(), "alice's session stays");

        let event = self.event(&self.alice.clone(), "member.removed", "member", bob.id.as_str());
        assert!(matches!(self.a().remove_member(&bob.id, &event).await, Err(StoreError::NotFound)));
        self.assert_audit_a("remove_member writes member.removed once").await;

        // The email is free again.
        let event = self.event(&self.operator.clone(), "member.added", "member", "usr_bob2");
        let again = MemberRecord {
            id: MemberId::parse("usr_bob2").expect("a valid id"),
            ..member("bob", &self.org_b, Role::User, 700)
        };
        self.b().add_member(&again, &event).await.expect("a removed member's email can be reused");
        self.audit_b.push(event);
    }

    /// Events with no other change (a failed login, a logout) join the chain like any other.
    async fn record_events(&mut self) {
        let alice = self.member_a("alice").await;
        let failed = self.event(&actor_of(&alice), "member.login_failed", "member", alice.id.as_str());
        self.a().record_event(&failed).await.expect("record_event");
        self.audit_a.push(failed);
        let logout = self.event(&actor_of(&alice), "member.logout", "member", alice.id.as_str());
        self.a().record_event(&logout).await.expect("record_event");
        self.audit_a.push(logout);
        let in_b = self.event(&self.operator.clone(), "member.logout", "member", "usr_carol");
        self.b().record_event(&in_b).await.expect("record_event in B");
        self.audit_b.push(in_b);
        assert!(self.a().record_event(&self.duplicate_event()).await.is_err(), "an event id is written once");
        self.assert_audit_a("record_event appends to the org's chain").await;
    }

    async fn change_feed(&self) {
        let latest = self.store.latest_change().await.expect("latest_change");
        let (changes, next) = self.store.changes_since(self.feed_start).await.expect("changes_since");
        assert_eq!(changes, self.feed, "the feed reports each org and key change once, oldest first");
        assert_eq!(next, latest);
        let (changes, next) = self.store.changes_since(latest).await.expect("changes_since latest");
        assert_eq!((changes, next), (Vec::new(), latest), "nothing after the latest change");
        // Asking from the middle gives the tail.
        let (mark, before) = self.feed_mark;
        let (tail, next) = self.store.changes_since(mark).await.expect("changes_since the mark");
        assert_eq!((tail.as_slice(), next), (&self.feed[before..], latest));
    }

    async fn audit_chains(&self) {
        for (org, expected) in [(&self.org_a, &self.audit_a), (&self.org_b, &self.audit_b)] {
            let chain = self.store.org(org).audit_chain().await.expect("audit_chain");
            let events: Vec<&NewAuditEvent> = chain.iter().map(|record| &record.event).collect();
            assert_eq!(events, expected.iter().collect::<Vec<_>>(), "{org}'s chain holds its events, oldest first");
            let mut prev = GENESIS.to_owned();
            for record in &chain {
                assert_eq!(&record.org_id, org);
                assert_eq!(record.prev_hash, prev, "{} links to the event before it", record.event.id);
                assert_eq!(
                    record.hash,
                    chain_hash(&record.prev_hash, &record.event.canonical(org)),
                    "{}",
                    record.event.id
                );
                prev.clone_from(&record.hash);
            }
        }
    }

    async fn audit_listing(&self) {
        let a = self.a();
        let newest_first: Vec<&NewAuditEvent> = self.audit_a.iter().rev().collect();
        let mut listed = Vec::new();
        let mut cursor = None;
        loop {
            let batch = a.list_audit(&AuditFilter::default(), page(4, cursor)).await.expect("list_audit");
            assert!(batch.items.len() <= 4);
            listed.extend(batch.items.into_iter().map(|record| record.event));
            cursor = batch.next;
            if cursor.is_none() {
                break;
            }
        }
        assert_eq!(listed.iter().collect::<Vec<_>>(), newest_first, "list_audit pages newest first");

        let since = self.audit_a[2].at;
        let until = self.audit_a[4].at;
        let filters = [
            AuditFilter { action: Some("key.revoked".to_owned()), ..AuditFilter::default() },
            AuditFilter { target_id: Some("key_k1".to_owned()), ..AuditFilter::default() },
            AuditFilter {
                actor_id: Some("usr_alice".to_owned()),
                action: Some("key.created".to_owned()),
                ..AuditFilter::default()
            },
            AuditFilter { since: Some(since), until: Some(until), ..AuditFilter::default() },
        ];
        for filter in filters {
            let expected: Vec<&NewAuditEvent> =
                newest_first.iter().copied().filter(|event| audit_filter_matches(&filter, event)).collect();
            assert!(!expected.is_empty(), "the story has events for {filter:?}");
            let first = a.list_audit(&filter, page(2, None)).await.expect("list_audit filtered");
            let mut got: Vec<AuditRecord> = first.items;
            if let Some(cursor) = first.next {
                got.extend(a.list_audit(&filter, page(100, Some(cursor))).await.expect("next page").items);
            }
            let got: Vec<&NewAuditEvent> = got.iter().map(|record| &record.event).collect();
            assert_eq!(got, expected, "list_audit with {filter:?}");
        }
        assert_eq!(
            self.b().list_audit(&AuditFilter::default(), page(100, None)).await.expect("B's audit").items.len(),
            self.audit_b.len()
        );
    }

    /// Org A's stored chain equals what the story wrote.
    async fn assert_audit_a(&self, what: &str) {
        let chain = self.a().audit_chain().await.expect("audit_chain");
        let events: Vec<&NewAuditEvent> = chain.iter().map(|record| &record.event).collect();
        assert_eq!(events, self.audit_a.iter().collect::<Vec<_>>(), "{what}");
    }
}

/// The filter's meaning, spelled out: exact action, target and actor; inclusive time bounds.
fn audit_filter_matches(filter: &AuditFilter, event: &NewAuditEvent) -> bool {
    filter.action.as_ref().is_none_or(|action| *action == event.action)
        && filter.target_id.as_ref().is_none_or(|target| *target == event.target_id)
        && filter.actor_id.as_ref().is_none_or(|actor| *actor == event.actor.id)
        && filter.since.is_none_or(|since| event.at >= since)
        && filter.until.is_none_or(|until| event.at <= until)
}

fn org_record(id: &str) -> OrgRecord {
    OrgRecord { id: OrgId::parse(id).expect("a valid org id"), name: "Acme".to_owned(), created_at: at(-1_000) }
}

/// Phone number `n` and its `phone_number.added` event, at `when`.
fn number_added(n: usize, when: OffsetDateTime) -> (PhoneNumberRecord, NewAuditEvent) {
    let number = PhoneNumberRecord {
        id: PhoneNumberId::parse(&format!("pn_{n}")).expect("a valid id"),
        number: format!("+1415555{n:04}"),
        created_at: when,
    };
    let event = NewAuditEvent {
        id: EventId::parse(&format!("evt_{n}")).expect("a valid id"),
        at: when,
        actor: Actor::operator(),
        actor_ip: None,
        user_agent: None,
        action: "phone_number.added".to_owned(),
        target_type: "phone_number".to_owned(),
        target_id: number.id.as_str().to_owned(),
        target_name: number.number.clone(),
        changes: Value::Null,
        trace_id: format!("{n:032x}"),
    };
    (number, event)
}

/// Two nodes (two stores on one database) write 40 changes at once: none is lost, and the org's
/// chain links every event to the one committed before it.
async fn concurrent_writers_keep_the_audit_chain(backend: &dyn Backend) {
    let database = backend.create_database().await;
    let (first, second) = (backend.open(&database).await, backend.open(&database).await);
    let (migrated_a, migrated_b) = tokio::join!(first.migrate(), second.migrate());
    migrated_a.expect("migrate");
    migrated_b.expect("migrate concurrently from another node");
    let org = org_record("org_shared");
    first.insert_org(&org).await.expect("insert org");

    let writers = (0..40).map(|n| {
        let store = Arc::clone(if n % 2 == 0 { &first } else { &second });
        let org_id = org.id.clone();
        tokio::spawn(async move {
            let (number, event) = number_added(n, at(0));
            store.org(&org_id).add_phone_number(&number, &event).await
        })
    });
    for writer in writers.collect::<Vec<_>>() {
        writer.await.expect("the task ran").expect("no concurrent write is lost");
    }
    let chain = second.org(&org.id).audit_chain().await.expect("audit_chain");
    assert_eq!(chain.len(), 40, "every concurrent write is in the chain");
    assert_eq!(crate::verify_chain(&chain), Ok(40), "the chain holds under concurrent writers");
    let (changes, _) = first.changes_since(0).await.expect("changes_since");
    assert_eq!(changes.len(), 40, "every concurrent write reached the feed");
}

async fn writing_into_a_missing_org_is_not_found(backend: &dyn Backend) {
    let store = backend.open(&backend.create_database().await).await;
    store.migrate().await.expect("migrate");
    let missing = org_record("org_missing");
    let (number, event) = number_added(1, at(0));
    assert!(
        matches!(store.org(&missing.id).add_phone_number(&number, &event).await, Err(StoreError::NotFound)),
        "writing into an org that does not exist is NotFound"
    );
    let new = key(1, &missing.id, "operator");
    assert!(matches!(store.org(&missing.id).insert_key(&new, &event).await, Err(StoreError::NotFound)));
    assert_eq!(store.latest_change().await.expect("latest_change"), 0, "nothing reached the feed");
    assert!(store.org(&missing.id).audit_chain().await.expect("audit_chain").is_empty(), "no event either");
}

/// Key `n` of `org` with its `key.created` event, for an import.
fn key_created(n: u8, org: &OrgId) -> (KeyRecord, NewAuditEvent) {
    let key = key(n, org, "operator");
    let event = NewAuditEvent {
        id: EventId::parse(&format!("evt_import{n}")).expect("a valid id"),
        at: at(i64::from(n)),
        actor: Actor::operator(),
        actor_ip: None,
        user_agent: None,
        action: "key.created".to_owned(),
        target_type: "api_key".to_owned(),
        target_id: key.id.as_str().to_owned(),
        target_name: key.settings.name.clone(),
        changes: Value::Null,
        trace_id: format!("{n:032x}"),
    };
    (key, event)
}

/// An import stores every key with its event and feed entry, in the order given; a batch with
/// one bad key (a hash already stored, another org's key) writes nothing at all.
async fn a_bulk_import_is_one_transaction(backend: &dyn Backend) {
    let store = backend.open(&backend.create_database().await).await;
    store.migrate().await.expect("migrate");
    let (a, b) = (org_record("org_a"), org_record("org_b"));
    store.insert_org(&a).await.expect("insert org");
    store.insert_org(&b).await.expect("insert org");
    let org = store.org(&a.id);
    org.import_keys(&[]).await.expect("an empty import is nothing to do");
    assert_eq!(store.latest_change().await.expect("latest_change"), 0, "an empty import writes nothing");

    let batch: Vec<_> = (1..=3).map(|n| key_created(n, &a.id)).collect();
    org.import_keys(&batch).await.expect("import_keys");
    for (key, _) in &batch {
        assert_eq!(store.find_key_by_hash(&key.hash).await.expect("find_key_by_hash").as_ref(), Some(key));
    }
    let chain = org.audit_chain().await.expect("audit_chain");
    assert_eq!(crate::verify_chain(&chain), Ok(3), "the imported events form the org's chain");
    let events: Vec<_> = chain.into_iter().map(|record| record.event).collect();
    assert_eq!(events, batch.iter().map(|(_, event)| event.clone()).collect::<Vec<_>>(), "in the order given");
    let (changes, seq) = store.changes_since(0).await.expect("changes_since");
    assert_eq!(changes, batch.iter().map(|(key, _)| Change::Key(key.hash)).collect::<Vec<_>>(), "one per key");

    // Key 2's hash again, behind two good keys: the whole batch is refused.
    let mut again = key_created(6, &a.id);
    again.0.hash = batch[1].0.hash;
    let refused = [key_created(4, &a.id), key_created(5, &a.id), again];
    assert!(org.import_keys(&refused).await.is_err(), "a hash already stored fails the import");
    let foreign = [key_created(7, &a.id), key_created(8, &b.id)];
    assert!(org.import_keys(&foreign).await.is_err(), "another org's key fails the import");
    for (key, _) in refused.iter().chain(&foreign).filter(|(key, _)| key.hash != batch[1].0.hash) {
        assert_eq!(store.find_key_by_hash(&key.hash).await.expect("find_key_by_hash"), None, "{} not stored", key.id);
    }
    assert_eq!(org.audit_chain().await.expect("audit_chain").len(), 3, "no event of a failed import");
    assert_eq!(store.changes_since(seq).await.expect("changes_since").0, [], "nothing of it reached the feed");
    let listed = org.list_keys(&key_filter(None, None), page(10, None)).await.expect("list_keys");
    assert_eq!(ids(&listed.items), ["key_k3", "key_k2", "key_k1"], "newest first, as inserted");
}

async fn a_follower_behind_the_pruned_feed_is_told_to_forget_every_org(backend: &dyn Backend) {
    let store = backend.open(&backend.create_database().await).await;
    store.migrate().await.expect("migrate");
    let (a, b) = (org_record("org_a"), org_record("org_b"));
    store.insert_org(&a).await.expect("insert org");
    store.insert_org(&b).await.expect("insert org");
    for (n, when) in [(1, at(0)), (2, at(2 * 3_600))] {
        let (number, event) = number_added(n, when);
        store.org(&a.id).add_phone_number(&number, &event).await.expect("add phone number");
    }
    let latest = store.latest_change().await.expect("latest_change");
    // The second change, two hours after the first, pruned it: a follower that saw only the
    // first cannot know what else it missed, so it is told to forget every org.
    let (changes, next) = store.changes_since(latest - 1).await.expect("changes_since");
    assert_eq!((changes, next), (vec![Change::Org(a.id.clone())], latest), "up to date but for the last change");
    let (changes, next) = store.changes_since(0).await.expect("changes_since");
    assert_eq!(next, latest);
    let mut forgotten = changes[..2].to_vec();
    forgotten.sort_by(|x, y| format!("{x:?}").cmp(&format!("{y:?}")));
    assert_eq!(forgotten, [Change::Org(a.id.clone()), Change::Org(b.id.clone())], "every org is forgotten");
    assert_eq!(changes[2..], [Change::Org(a.id.clone())], "then the change that is still there");
}
