//! The audit log over HTTP: what each event records (actor, actor IP, target, changes, trace id),
//! that no secret ever lands in it, pagination, filters, and the hash chain.

use keyward_core::ids::OrgId;
use keyward_server::config::Config;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::support::{login_from, spawn_app, spawn_app_with, Auth, TestApp, PASSWORD, START};

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn traceparent(trace_id: &str) -> String {
    format!("00-{trace_id}-00f067aa0ba902b7-01")
}

/// The org's events with this action and target, newest first.
fn find<'a>(events: &'a [Value], action: &str, target: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["action"] == action && e["target"]["id"] == target).collect()
}

/// The only event with this action and target.
fn one<'a>(events: &'a [Value], action: &str, target: &str) -> &'a Value {
    let found = find(events, action, target);
    assert_eq!(found.len(), 1, "one {action} for {target}: {events:#?}");
    found[0]
}

fn is_trace_id(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) && text != "0".repeat(32)
}

async fn audit_page(app: &TestApp, org: &str, query: &str) -> super::support::Answer {
    app.get(&format!("/v1/orgs/{org}/audit?{query}")).await
}

fn ids(answer: &super::support::Answer) -> Vec<String> {
    answer.body["data"].as_array().expect("data").iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn key_changes_record_actor_ip_target_changes_and_the_trace_id_of_the_request() {
    let app = spawn_app().await;
    let org = app.create_org_with_senders().await;
    let keys = format!("/v1/orgs/{org}/keys");
    let created_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let created = app
        .send(
            app.client
                .post(app.url(&keys))
                .bearer_auth(&app.operator_token)
                .header("traceparent", traceparent(created_trace))
                .json(&json!({ "name": "CRM", "scopes": ["messages:send", "templates:read"], "hmac_required": true })),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:#}", created.body);
    let id = created.body["key"]["id"].as_str().unwrap().to_owned();

    // A member edits it.
    app.clock.advance(time::Duration::minutes(1));
    let (owner_id, owner) = app.member_session(&org, "owner@example.com", "owner").await;
    let updated_trace = "0af7651916cd43dd8448eb211c80319c";
    let patch = app
        .authed(app.client.patch(app.url(&format!("{keys}/{id}"))), &owner.auth())
        .header("traceparent", traceparent(updated_trace))
        .json(&json!({ "name": "CRM v2", "rate_limit": 5, "scopes": ["templates:read"], "meta": { "team": "crm" } }));
    let answer = app.send(patch).await;
    assert_eq!(answer.status, StatusCode::OK, "{:#}", answer.body);

    // A managing key that holds its scopes revokes it.
    app.clock.advance(time::Duration::minutes(1));
    let (manager_id, manager) =
        app.key_with_scopes(&org, "manager", &["keys:write", "messages:send", "templates:read"]).await;
    let answer = app.call(&Auth::ApiKey(manager), Method::POST, &format!("{keys}/{id}/revoke"), None).await;
    assert_eq!(answer.status, StatusCode::OK, "{:#}", answer.body);
    // Revoking again changes nothing and records nothing.
    let before = app.audit_count(&org).await;
    assert_eq!(app.post(&format!("{keys}/{id}/revoke"), &json!({})).await.status, StatusCode::OK);
    assert_eq!(app.audit_count(&org).await, before);

    let events = app.audit_events(&org).await;
    let created = one(&events, "key.created", &id);
    assert!(created["id"].as_str().unwrap().starts_with("evt_"), "{created:#}");
    assert_eq!(created["org_id"], org.as_str());
    assert_eq!(created["at"], "2030-01-01T00:00:00Z");
    assert_eq!(created["actor"], json!({ "type": "operator", "id": "operator", "name": "operator" }));
    assert_eq!(created["actor_ip"], "127.0.0.1");
    assert_eq!(created["target"], json!({ "type": "api_key", "id": id, "name": "CRM" }));
    assert_eq!(created["trace_id"], created_trace);
    let changes = &created["changes"];
    assert_eq!(changes["name"], "CRM");
    assert_eq!(changes["scopes"], json!(["messages:send", "templates:read"]));
    assert_eq!(changes["hmac_required"], true);
    assert_eq!(changes["rate_limit"], Value::Null);

    let updated = one(&events, "key.updated", &id);
    assert_eq!(updated["at"], "2030-01-01T00:01:00Z");
    assert_eq!(updated["actor"], json!({ "type": "member", "id": owner_id, "name": "owner@example.com" }));
    assert_eq!(updated["actor_ip"], "127.0.0.1");
    assert_eq!(updated["target"], json!({ "type": "api_key", "id": id, "name": "CRM" }));
    assert_eq!(updated["trace_id"], updated_trace);
    assert_eq!(
        updated["changes"],
        json!({
            "name": { "old": "CRM", "new": "CRM v2" },
            "rate_limit": { "old": null, "new": 5 },
            "scopes": { "old": ["messages:send", "templates:read"], "new": ["templates:read"] },
            "meta": { "old": null, "new": { "team": "crm" } },
        }),
        "exactly the changed fields, old → new"
    );

    let revoked = one(&events, "key.revoked", &id);
    assert_eq!(revoked["actor"], json!({ "type": "key", "id": manager_id, "name": "manager" }));
    assert_eq!(revoked["target"]["name"], "CRM v2");
    assert_eq!(revoked["changes"], json!({ "status": { "old": "active", "new": "revoked" } }));
    assert!(is_trace_id(revoked["trace_id"].as_str().unwrap()), "a new trace id without traceparent: {revoked:#}");
    assert_ne!(revoked["trace_id"], updated["trace_id"]);
}

#[tokio::test]
async fn an_edit_that_changes_nothing_records_nothing() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let (id, _) = app.key_with_scopes(&org, "same", &["messages:send"]).await;
    let before = app.audit_count(&org).await;
    let answer =
        app.patch(&format!("/v1/orgs/{org}/keys/{id}"), &json!({ "name": "same", "scopes": ["messages:send"] })).await;
    assert_eq!(answer.status, StatusCode::OK, "{:#}", answer.body);
    assert_eq!(app.audit_count(&org).await, before);
}

#[tokio::test]
async fn a_roll_records_the_old_key_rolled_and_the_new_key_created() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let (old, _) = app.key_with_scopes(&org, "rolling", &["messages:send"]).await;
    let trace = "11111111111111111111111111111111";
    let answer = app
        .send(
            app.client
                .post(app.url(&format!("/v1/orgs/{org}/keys/{old}/roll")))
                .bearer_auth(&app.operator_token)
                .header("traceparent", traceparent(trace))
                .json(&json!({ "grace_seconds": 3600 })),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:#}", answer.body);
    let new = answer.body["key"]["id"].as_str().unwrap().to_owned();
    let events = app.audit_events(&org).await;
    let rolled = one(&events, "key.rolled", &old);
    assert_eq!(rolled["changes"], json!({ "rolled_to": new, "grace_seconds": 3600 }));
    assert_eq!(rolled["actor"]["type"], "operator");
    assert_eq!(rolled["trace_id"], trace);
    let created = one(&events, "key.created", &new);
    assert_eq!(created["changes"]["rolled_from"], old.as_str());
    assert_eq!(created["changes"]["name"], "rolling");
    assert_eq!(created["trace_id"], trace, "one request, one trace");
    // Newest first: the new key's event is written after the roll.
    assert_eq!(events[0]["id"], created["id"]);
    assert_eq!(events[1]["id"], rolled["id"]);
}

#[tokio::test]
async fn member_changes_logins_and_failed_logins_are_recorded() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let (owner_id, owner) = app.member_session(&org, "owner@example.com", "owner").await;

    let body = json!({ "email": "Bob@Example.com", "password": PASSWORD, "role": "admin" });
    let added = app.call(&owner.auth(), Method::POST, &format!("/v1/orgs/{org}/members"), Some(&body)).await;
    assert_eq!(added.status, StatusCode::CREATED, "{:#}", added.body);
    let bob = added.body["id"].as_str().unwrap().to_owned();

    let login_trace = "22222222222222222222222222222222";
    let (answer, headers) = app
        .send_with_headers(
            app.client
                .post(app.url("/v1/session"))
                .header("traceparent", traceparent(login_trace))
                .json(&json!({ "email": "bob@example.com", "password": PASSWORD })),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{:#}", answer.body);
    let bob_session = login_from(&answer, &headers);
    let (failed, _) = app.try_login("bob@example.com", "the wrong password").await;
    failed.assert_problem(401, "INVALID_CREDENTIALS");
    let before = app.audit_count(&org).await;
    let (unknown, _) = app.try_login("nobody@example.com", "the wrong password").await;
    unknown.assert_problem(401, "INVALID_CREDENTIALS");
    assert_eq!(app.audit_count(&org).await, before, "an unknown email belongs to no org's log");

    let logout = app.call(&bob_session.auth(), Method::DELETE, "/v1/session", None).await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT, "{:#}", logout.body);
    let removed = app.call(&owner.auth(), Method::DELETE, &format!("/v1/orgs/{org}/members/{bob}"), None).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{:#}", removed.body);

    let events = app.audit_events(&org).await;
    let owner_actor = json!({ "type": "member", "id": owner_id, "name": "owner@example.com" });
    let bob_actor = json!({ "type": "member", "id": bob, "name": "bob@example.com" });
    let bob_target = json!({ "type": "member", "id": bob, "name": "bob@example.com" });

    let added = one(&events, "member.added", &bob);
    assert_eq!(added["actor"], owner_actor);
    assert_eq!(added["target"], bob_target);
    assert_eq!(added["changes"], json!({ "email": "bob@example.com", "role": "admin" }));
    assert_eq!(added["actor_ip"], "127.0.0.1");
    let owner_added = one(&events, "member.added", &owner_id);
    assert_eq!(owner_added["actor"]["type"], "operator");

    let login = one(&events, "member.login", &bob);
    assert_eq!(login["actor"], bob_actor);
    assert_eq!(login["target"], bob_target);
    assert_eq!(login["actor_ip"], "127.0.0.1");
    assert_eq!(login["trace_id"], login_trace);
    let failed = one(&events, "member.login_failed", &bob);
    // An attempt on bob's account by someone unauthenticated: bob is the target, not the actor.
    assert_eq!(failed["actor"], json!({ "type": "anonymous", "id": "anonymous", "name": "Unauthenticated" }));
    assert_eq!(failed["target"], bob_target);
    assert_eq!(failed["actor_ip"], "127.0.0.1");
    assert!(is_trace_id(failed["trace_id"].as_str().unwrap()));

    let logout = one(&events, "member.logout", &bob);
    assert_eq!(logout["actor"], bob_actor);
    let removed = one(&events, "member.removed", &bob);
    assert_eq!(removed["actor"], owner_actor);
    assert_eq!(removed["target"], bob_target);
    assert_eq!(removed["changes"], json!({ "email": "bob@example.com", "role": "admin" }));

    let actions: Vec<&str> = events.iter().rev().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "member.added",
            "member.login",
            "member.added",
            "member.login",
            "member.login_failed",
            "member.logout",
            "member.removed"
        ]
    );
}

/// `(trusted_proxies, X-Forwarded-For header lines, expected actor_ip)`.
type ForwardedCase = (&'static str, &'static [&'static str], &'static str);

#[tokio::test]
async fn actor_ip_comes_from_x_forwarded_for_only_when_the_peer_is_a_trusted_proxy() {
    let cases: [ForwardedCase; 11] = [
        ("", &[], "127.0.0.1"),
        ("", &["198.51.100.7"], "127.0.0.1"),
        ("", &["203.0.113.5, 198.51.100.7"], "127.0.0.1"),
        ("[\"10.0.0.0/8\"]", &["198.51.100.7"], "127.0.0.1"),
        ("[\"127.0.0.1\"]", &[], "127.0.0.1"),
        ("[\"127.0.0.1\"]", &["198.51.100.7"], "198.51.100.7"),
        ("[\"127.0.0.1\"]", &["203.0.113.5, 198.51.100.7"], "198.51.100.7"),
        ("[\"127.0.0.1\"]", &["198.51.100.7, 127.0.0.1"], "198.51.100.7"),
        ("[\"127.0.0.1\"]", &["203.0.113.5", "198.51.100.7"], "198.51.100.7"),
        ("[\"127.0.0.1\", \"10.0.0.0/8\"]", &["203.0.113.5, 198.51.100.7, 10.1.2.3"], "198.51.100.7"),
        ("[\"127.0.0.0/8\"]", &["2001:db8::1"], "2001:db8::1"),
    ];
    for (trusted, forwarded, expected) in cases {
        let config = if trusted.is_empty() {
            Config::default()
        } else {
            Config::from_toml(&format!("trusted_proxies = {trusted}")).expect("config")
        };
        let app = spawn_app_with(config).await;
        let org = app.create_org("Acme").await;
        let mut request =
            app.client.post(app.url(&format!("/v1/orgs/{org}/keys"))).bearer_auth(&app.operator_token).json(&json!({
                "name": "k"
            }));
        for value in forwarded {
            request = request.header("x-forwarded-for", *value);
        }
        let answer = app.send(request).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{:#}", answer.body);
        let events = app.audit_events(&org).await;
        assert_eq!(events[0]["actor_ip"], expected, "trusted {trusted}, X-Forwarded-For {forwarded:?}");
    }
}

#[tokio::test]
async fn login_events_take_the_forwarded_address_from_a_trusted_proxy() {
    let app = spawn_app_with(Config::from_toml("trusted_proxies = [\"127.0.0.1\"]").expect("config")).await;
    let org = app.create_org("Acme").await;
    let id = app.add_member(&org, "ann@example.com", "owner").await;
    for (password, status) in [("wrong wrong wrong", 401), (PASSWORD, 200)] {
        let request = app
            .client
            .post(app.url("/v1/session"))
            .header("x-forwarded-for", "203.0.113.5, 198.51.100.7")
            .json(&json!({ "email": "ann@example.com", "password": password }));
        assert_eq!(app.send(request).await.status.as_u16(), status);
    }
    let events = app.audit_events(&org).await;
    assert_eq!(one(&events, "member.login_failed", &id)["actor_ip"], "198.51.100.7");
    assert_eq!(one(&events, "member.login", &id)["actor_ip"], "198.51.100.7");
    assert_eq!(one(&events, "member.added", &id)["actor_ip"], "127.0.0.1");
}

#[tokio::test]
async fn a_traceparent_that_is_not_w3c_is_replaced_by_a_new_trace_id() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let bad = [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
        "garbage",
    ];
    let mut seen = Vec::new();
    for value in bad {
        let request = app
            .client
            .post(app.url(&format!("/v1/orgs/{org}/keys")))
            .bearer_auth(&app.operator_token)
            .header("traceparent", value)
            .json(&json!({ "name": "k" }));
        assert_eq!(app.send(request).await.status, StatusCode::CREATED);
        let events = app.audit_events(&org).await;
        let trace = events[0]["trace_id"].as_str().unwrap().to_owned();
        assert!(is_trace_id(&trace), "{value}: {trace}");
        assert!(!value.to_lowercase().contains(&trace), "{value}: {trace}");
        assert!(!seen.contains(&trace), "a fresh id each time");
        seen.push(trace);
    }
}

#[tokio::test]
async fn no_secret_ever_appears_in_the_audit_log() {
    let app = spawn_app().await;
    let org = app.create_org_with_senders().await;
    let keys = format!("/v1/orgs/{org}/keys");
    let mut secrets: Vec<String> = Vec::new();

    let created = app.create_key(&org, &json!({ "name": "signed", "hmac_required": true })).await;
    let id = created["key"]["id"].as_str().unwrap().to_owned();
    secrets.push(created["secret"].as_str().unwrap().to_owned());
    secrets.push(created["signing_secret"].as_str().unwrap().to_owned());
    let answer = app.patch(&format!("{keys}/{id}"), &json!({ "name": "signed v2", "rate_limit": 9 })).await;
    assert_eq!(answer.status, StatusCode::OK);
    let rolled = app.post(&format!("{keys}/{id}/roll"), &json!({ "grace_seconds": 60 })).await;
    assert_eq!(rolled.status, StatusCode::CREATED, "{:#}", rolled.body);
    secrets.push(rolled.body["secret"].as_str().unwrap().to_owned());
    secrets.push(rolled.body["signing_secret"].as_str().unwrap().to_owned());
    let new_id = rolled.body["key"]["id"].as_str().unwrap().to_owned();

    let (_, login) = app.member_session(&org, "ann@example.com", "owner").await;
    secrets.push(PASSWORD.to_owned());
    secrets.push(login.cookie.trim_start_matches("keyward_session=").to_owned());
    secrets.push(login.csrf.clone());
    let wrong = "Tr0ub4dor&3 not the password";
    app.try_login("ann@example.com", wrong).await.0.assert_problem(401, "INVALID_CREDENTIALS");
    secrets.push(wrong.to_owned());
    let body = json!({ "email": "bob@example.com", "password": "bob's own passphrase", "role": "user" });
    let answer = app.call(&login.auth(), Method::POST, &format!("/v1/orgs/{org}/members"), Some(&body)).await;
    assert_eq!(answer.status, StatusCode::CREATED);
    secrets.push("bob's own passphrase".to_owned());
    let body = json!({ "name": "console key", "hmac_required": true });
    let answer = app.call(&login.auth(), Method::POST, &keys, Some(&body)).await;
    assert_eq!(answer.status, StatusCode::CREATED);
    secrets.push(answer.body["secret"].as_str().unwrap().to_owned());
    secrets.push(answer.body["signing_secret"].as_str().unwrap().to_owned());
    let answer = app.call(&login.auth(), Method::POST, &format!("{keys}/{new_id}/revoke"), None).await;
    assert_eq!(answer.status, StatusCode::OK);
    let answer = app.call(&login.auth(), Method::DELETE, "/v1/session", None).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);

    // The random part of each key, in case only the tail were logged.
    let tails: Vec<String> = secrets.iter().filter(|s| s.starts_with("kw_")).map(|s| s[16..].to_owned()).collect();
    secrets.extend(tails);

    let events = app.audit_events(&org).await;
    assert!(events.len() >= 14, "{events:#?}");
    let api_text = serde_json::to_string(&events).unwrap();
    let org_id = OrgId::parse(&org).unwrap();
    let stored = app.keyward.store.org(&org_id).audit_chain().await.unwrap();
    let stored_text = format!("{stored:?}");
    for secret in &secrets {
        assert!(!api_text.contains(secret.as_str()), "{secret} is in the audit API: {api_text}");
        assert!(!stored_text.contains(secret.as_str()), "{secret} is stored in the audit log");
    }
    for word in ["argon2", "password_hash", "signing_secret\"", "\"secret\"", "csrf", "token"] {
        assert!(!api_text.contains(word), "{word} in the audit log: {api_text}");
    }
}

#[tokio::test]
async fn the_audit_log_pages_newest_first_with_a_cursor() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    for n in 0..6 {
        app.key_with_scopes(&org, &format!("key {n}"), &["messages:send"]).await;
        app.clock.advance(time::Duration::seconds(1));
    }
    let all = audit_page(&app, &org, "limit=100").await;
    let all_ids = ids(&all);
    assert_eq!(all_ids.len(), 6);
    let names: Vec<&str> =
        all.body["data"].as_array().unwrap().iter().map(|e| e["target"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["key 5", "key 4", "key 3", "key 2", "key 1", "key 0"], "newest first");

    // An exact multiple of the page size: the last page says there is no next one.
    let first = audit_page(&app, &org, "limit=3").await;
    assert_eq!(ids(&first), all_ids[..3]);
    let cursor = first.body["next_cursor"].as_str().expect("a next page").to_owned();
    let second = audit_page(&app, &org, &format!("limit=3&cursor={cursor}")).await;
    assert_eq!(ids(&second), all_ids[3..]);
    assert_eq!(second.body["next_cursor"], Value::Null);

    // New events do not shift a page already being read.
    app.key_with_scopes(&org, "key 6", &["messages:send"]).await;
    let again = audit_page(&app, &org, &format!("limit=3&cursor={cursor}")).await;
    assert_eq!(ids(&again), all_ids[3..]);

    let mut collected = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let query = match &cursor {
            Some(c) => format!("limit=2&cursor={c}"),
            None => "limit=2".to_owned(),
        };
        let page = audit_page(&app, &org, &query).await;
        assert_eq!(page.status, StatusCode::OK, "{:#}", page.body);
        collected.extend(ids(&page));
        pages += 1;
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 4);
    assert_eq!(collected.len(), 7);
    assert_eq!(collected[1..], all_ids[..], "every event once, in order");
    let default = audit_page(&app, &org, "").await;
    assert_eq!(ids(&default), collected, "the default page holds 20");
}

#[tokio::test]
async fn the_audit_log_filters_by_action_target_actor_and_time() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let keys = format!("/v1/orgs/{org}/keys");
    let hour = time::Duration::hours(1);
    // t0: the operator creates the manager.
    let (manager, secret) = app.key_with_scopes(&org, "manager", &["keys:write", "messages:send"]).await;
    let manager_auth = Auth::Bearer(secret);
    // t0+1h: the manager creates A.
    app.clock.advance(hour);
    let body = json!({ "name": "A", "scopes": ["messages:send"] });
    let a = app.call(&manager_auth, Method::POST, &keys, Some(&body)).await;
    let a = a.body["key"]["id"].as_str().unwrap().to_owned();
    // t0+2h: the operator renames A.
    app.clock.advance(hour);
    assert_eq!(app.patch(&format!("{keys}/{a}"), &json!({ "name": "A2" })).await.status, StatusCode::OK);
    // t0+3h: the manager revokes A.
    app.clock.advance(hour);
    let answer = app.call(&manager_auth, Method::POST, &format!("{keys}/{a}/revoke"), None).await;
    assert_eq!(answer.status, StatusCode::OK);
    // t0+4h: the operator creates B.
    app.clock.advance(hour);
    let (b, _) = app.key_with_scopes(&org, "B", &["messages:send"]).await;

    let all = audit_page(&app, &org, "").await;
    let event = |action: &str, target: &str| {
        all.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["action"] == action && e["target"]["id"] == target)
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .expect("event")
    };
    let created_m = event("key.created", &manager);
    let created_a = event("key.created", &a);
    let updated_a = event("key.updated", &a);
    let revoked_a = event("key.revoked", &a);
    let created_b = event("key.created", &b);
    assert_eq!(ids(&all), [&created_b, &revoked_a, &updated_a, &created_a, &created_m].map(String::clone));

    let t = |hours: i64| {
        (START + time::Duration::hours(hours))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
            .replace('+', "%2B")
    };
    let cases: Vec<(String, Vec<&String>)> = vec![
        ("action=key.created".to_owned(), vec![&created_b, &created_a, &created_m]),
        ("action=key.revoked".to_owned(), vec![&revoked_a]),
        ("action=key.nothing".to_owned(), vec![]),
        (format!("target={a}"), vec![&revoked_a, &updated_a, &created_a]),
        (format!("actor={manager}"), vec![&revoked_a, &created_a]),
        ("actor=operator".to_owned(), vec![&created_b, &updated_a, &created_m]),
        (format!("since={}", t(2)), vec![&created_b, &revoked_a, &updated_a]),
        (format!("until={}", t(2)), vec![&updated_a, &created_a, &created_m]),
        (format!("since={}&until={}", t(1), t(3)), vec![&revoked_a, &updated_a, &created_a]),
        ("since=2030-01-01T03:00:00%2B01:00".to_owned(), vec![&created_b, &revoked_a, &updated_a]),
        ("since=2030-01-01T02:00:00.000000001Z".to_owned(), vec![&created_b, &revoked_a]),
        (format!("since={}", t(5)), vec![]),
        ("action=key.created&actor=operator".to_owned(), vec![&created_b, &created_m]),
        (format!("action=key.created&target={a}&actor={manager}&since={}&until={}", t(1), t(1)), vec![&created_a]),
        (
            "action=&target=&actor=&since=&until=".to_owned(),
            vec![&created_b, &revoked_a, &updated_a, &created_a, &created_m],
        ),
    ];
    for (query, expected) in cases {
        let answer = audit_page(&app, &org, &query).await;
        assert_eq!(answer.status, StatusCode::OK, "{query}: {:#}", answer.body);
        let expected: Vec<String> = expected.into_iter().cloned().collect();
        assert_eq!(ids(&answer), expected, "{query}");
    }

    // Filters and pagination together.
    let first = audit_page(&app, &org, "action=key.created&limit=2").await;
    assert_eq!(ids(&first), [created_b.clone(), created_a.clone()]);
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let second = audit_page(&app, &org, &format!("action=key.created&limit=2&cursor={cursor}")).await;
    assert_eq!(ids(&second), vec![created_m]);
    assert_eq!(second.body["next_cursor"], Value::Null);
}

#[tokio::test]
async fn invalid_audit_query_parameters_are_a_400_naming_the_parameter() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    app.key_with_scopes(&org, "k", &["messages:send"]).await;
    let long = "x".repeat(101);
    let cases = [
        ("since=yesterday".to_owned(), "since"),
        ("since=2030-01-01".to_owned(), "since"),
        ("since=2030-01-01T00:00:00".to_owned(), "since"),
        ("since=1893456000".to_owned(), "since"),
        ("until=tomorrow".to_owned(), "until"),
        ("until=2030-13-01T00:00:00Z".to_owned(), "until"),
        ("limit=0".to_owned(), "limit"),
        ("limit=101".to_owned(), "limit"),
        ("limit=ten".to_owned(), "limit"),
        ("limit=-1".to_owned(), "limit"),
        ("cursor=not-a-cursor".to_owned(), "cursor"),
        (format!("action={long}"), "action"),
        (format!("target={long}"), "target"),
        (format!("actor={long}"), "actor"),
    ];
    for (query, field) in cases {
        let answer = audit_page(&app, &org, &query).await;
        answer.assert_problem(400, "VALIDATION_FAILED");
        assert!(answer.field_error(field).is_some(), "{query}: {:#}", answer.body);
    }
}

#[tokio::test]
async fn each_event_links_to_the_one_before_it_and_each_org_has_its_own_chain() {
    let app = spawn_app().await;
    let acme = app.create_org_with_senders().await;
    let (id, _) = app.key_with_scopes(&acme, "k", &["messages:send"]).await;
    let globex = app.create_org("Globex").await;
    let (other, _) = app.key_with_scopes(&globex, "theirs", &["messages:send"]).await;
    assert_eq!(app.patch(&format!("/v1/orgs/{acme}/keys/{id}"), &json!({ "name": "k2" })).await.status, StatusCode::OK);
    assert_eq!(app.post(&format!("/v1/orgs/{acme}/keys/{id}/roll"), &json!({})).await.status, StatusCode::CREATED);
    assert_eq!(app.post(&format!("/v1/orgs/{globex}/keys/{other}/revoke"), &json!({})).await.status, StatusCode::OK);

    for (org, count) in [(&acme, 9), (&globex, 2)] {
        let events = app.audit_events(org).await;
        assert_eq!(events.len(), count, "{events:#?}");
        for event in &events {
            assert_eq!(event["org_id"], org.as_str(), "only the org's own events");
            let hash = event["hash"].as_str().unwrap();
            assert!(hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()), "{hash}");
        }
        for pair in events.windows(2) {
            assert_eq!(pair[0]["prev_hash"], pair[1]["hash"], "{:#} does not link to {:#}", pair[0], pair[1]);
        }
        assert_eq!(events.last().unwrap()["prev_hash"], GENESIS, "an org's first event starts its chain");
        let mut hashes: Vec<&str> = events.iter().map(|e| e["hash"].as_str().unwrap()).collect();
        hashes.sort_unstable();
        hashes.dedup();
        assert_eq!(hashes.len(), events.len());

        let stored = app.keyward.store.org(&OrgId::parse(org).unwrap()).audit_chain().await.unwrap();
        assert_eq!(keyward_store::verify_chain(&stored), Ok(count), "the stored chain verifies");
    }
}

#[tokio::test]
async fn concurrent_changes_in_one_org_still_form_a_single_chain() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let mut writes = tokio::task::JoinSet::new();
    for n in 0..24 {
        let request = app
            .client
            .post(app.url(&format!("/v1/orgs/{org}/keys")))
            .bearer_auth(&app.operator_token)
            .json(&json!({ "name": format!("parallel {n}") }));
        writes.spawn(async move { request.send().await.expect("request").status() });
    }
    while let Some(status) = writes.join_next().await {
        assert_eq!(status.expect("task"), StatusCode::CREATED);
    }
    let events = app.audit_events(&org).await;
    assert_eq!(events.len(), 24);
    for pair in events.windows(2) {
        assert_eq!(pair[0]["prev_hash"], pair[1]["hash"]);
    }
    assert_eq!(events.last().unwrap()["prev_hash"], GENESIS);
    let stored = app.keyward.store.org(&OrgId::parse(&org).unwrap()).audit_chain().await.unwrap();
    assert_eq!(keyward_store::verify_chain(&stored), Ok(24));
}
