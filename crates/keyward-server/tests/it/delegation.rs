//! Delegated key management: a key holding `keys:read` / `keys:write` manages its own org's keys,
//! never beyond the scopes it holds, never in another org.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::support::{spawn_app, Auth, TestApp};

/// An org with a managing key `[keys:write, messages:send]`; returns `(org, key id, secret)`.
async fn org_with_manager(app: &TestApp) -> (String, String, String) {
    let org = app.create_org_with_senders().await;
    let (id, secret) = app.key_with_scopes(&org, "manager", &["keys:write", "messages:send"]).await;
    (org, id, secret)
}

#[tokio::test]
async fn a_keys_write_key_creates_keys_within_its_own_scopes_by_bearer_or_x_api_key() {
    let app = spawn_app().await;
    let (org, manager_id, secret) = org_with_manager(&app).await;
    for (how, auth) in [("bearer", Auth::Bearer(secret.clone())), ("x-api-key", Auth::ApiKey(secret.clone()))] {
        let body = json!({ "name": format!("child via {how}"), "scopes": ["messages:send"] });
        let answer = app.call(&auth, Method::POST, &format!("/v1/orgs/{org}/keys"), Some(&body)).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{how}: {:#}", answer.body);
        assert_eq!(answer.body["key"]["created_by"], manager_id.as_str(), "{how}");
        assert_eq!(answer.body["key"]["scopes"], json!(["messages:send"]));
        assert!(answer.body["secret"].as_str().unwrap().starts_with("kw_live_"));
        // The child works on the hot path.
        let decision = app.verify(&json!({ "key": answer.body["secret"] })).await;
        assert_eq!(decision["valid"], json!(true), "{decision:#}");

        let list = app.call(&auth, Method::GET, &format!("/v1/orgs/{org}/keys?created_by={manager_id}"), None).await;
        assert_eq!(list.status, StatusCode::OK, "{:#}", list.body);
        assert!(list.body["data"].as_array().unwrap().iter().any(|k| k["id"] == answer.body["key"]["id"]));
    }
    // It may also hand out keys:write, which it holds.
    let body = json!({ "name": "sub-manager", "scopes": ["keys:write"] });
    let answer = app.call(&Auth::Bearer(secret), Method::POST, &format!("/v1/orgs/{org}/keys"), Some(&body)).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:#}", answer.body);
}

#[tokio::test]
async fn a_keys_write_key_cannot_create_a_key_with_a_scope_it_does_not_hold() {
    let app = spawn_app().await;
    let (org, _, secret) = org_with_manager(&app).await;
    let cases: [&[&str]; 6] = [
        &["templates:read"],
        &["messages:send", "templates:read"],
        &["*"],
        &["keys:read"],
        &["contacts:write", "keys:write"],
        &["library_assets:write"],
    ];
    for scopes in cases {
        for auth in [Auth::Bearer(secret.clone()), Auth::ApiKey(secret.clone())] {
            let body = json!({ "name": "wider", "scopes": scopes });
            let answer = app.call(&auth, Method::POST, &format!("/v1/orgs/{org}/keys"), Some(&body)).await;
            answer.assert_problem(403, "FORBIDDEN");
        }
    }
    let keys = app.get(&format!("/v1/orgs/{org}/keys")).await;
    assert_eq!(keys.body["data"].as_array().unwrap().len(), 1, "only the manager exists: {:#}", keys.body);
}

#[tokio::test]
async fn a_keys_write_key_cannot_widen_a_key_by_patch_including_itself() {
    let app = spawn_app().await;
    let (org, manager_id, secret) = org_with_manager(&app).await;
    let auth = Auth::Bearer(secret);
    let (child, _) = app.key_with_scopes(&org, "child", &["messages:send"]).await;
    let patch = |id: &str, body: Value| {
        let path = format!("/v1/orgs/{org}/keys/{id}");
        let auth = auth.clone();
        let app = &app;
        async move { app.call(&auth, Method::PATCH, &path, Some(&body)).await }
    };
    let widenings = [
        json!({ "scopes": ["messages:send", "templates:read"] }),
        json!({ "scopes": ["*"] }),
        json!({ "scopes": ["keys:read"] }),
        json!({ "scopes": ["templates:write"], "name": "also renamed" }),
    ];
    for target in [&child, &manager_id] {
        for body in &widenings {
            patch(target, body.clone()).await.assert_problem(403, "FORBIDDEN");
        }
    }
    for id in [&child, &manager_id] {
        let key = app.get(&format!("/v1/orgs/{org}/keys/{id}")).await;
        let name = if id == &child { "child" } else { "manager" };
        assert_eq!(key.body["key"]["name"], name, "unchanged: {:#}", key.body);
    }
    assert_eq!(app.get(&format!("/v1/orgs/{org}/keys/{child}")).await.body["key"]["scopes"], json!(["messages:send"]));

    // Within its scopes it may edit, narrow or change a child's scopes.
    let answer = patch(&child, json!({ "name": "renamed", "scopes": ["keys:write", "messages:send"] })).await;
    assert_eq!(answer.status, StatusCode::OK, "{:#}", answer.body);
    let mut scopes: Vec<&str> =
        answer.body["key"]["scopes"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    scopes.sort_unstable();
    assert_eq!(scopes, ["keys:write", "messages:send"]);
    let answer = patch(&child, json!({ "scopes": ["messages:send"], "rate_limit": 5 })).await;
    assert_eq!(answer.status, StatusCode::OK, "{:#}", answer.body);
}

#[tokio::test]
async fn a_keys_write_key_cannot_touch_a_key_holding_scopes_it_lacks() {
    let app = spawn_app().await;
    let (org, _, secret) = org_with_manager(&app).await;
    let auth = Auth::Bearer(secret);
    let (star, star_secret) = app.key_with_scopes(&org, "root", &["*"]).await;
    let (templates, _) = app.key_with_scopes(&org, "templates", &["messages:send", "templates:read"]).await;
    for id in [&star, &templates] {
        let base = format!("/v1/orgs/{org}/keys/{id}");
        let cases = [
            (Method::POST, format!("{base}/roll"), Some(json!({ "grace_seconds": 0 }))),
            (Method::POST, format!("{base}/roll"), Some(json!({ "grace_seconds": 3600 }))),
            (Method::POST, format!("{base}/revoke"), None),
            (Method::PATCH, base.clone(), Some(json!({ "name": "mine now" }))),
            (Method::PATCH, base.clone(), Some(json!({ "ip_allowlist": ["203.0.113.1"] }))),
        ];
        for (method, path, body) in cases {
            let answer = app.call(&auth, method.clone(), &path, body.as_ref()).await;
            assert_eq!(answer.status, StatusCode::FORBIDDEN, "{method} {path}: {:#}", answer.body);
            answer.assert_problem(403, "FORBIDDEN");
        }
        // It can still see them.
        assert_eq!(app.call(&auth, Method::GET, &base, None).await.status, StatusCode::OK);
        let key = app.get(&base).await;
        assert_eq!(key.body["key"]["status"], "active", "{:#}", key.body);
        assert_eq!(key.body["key"]["expires_at"], Value::Null, "no grace period was started");
        assert_eq!(key.body["key"]["ip_allowlist"], json!([]));
    }
    let decision = app.verify(&json!({ "key": star_secret })).await;
    assert_eq!(decision["valid"], json!(true), "{decision:#}");
}

#[tokio::test]
async fn a_keys_write_key_rolls_and_revokes_keys_within_its_scopes() {
    let app = spawn_app().await;
    let (org, manager_id, secret) = org_with_manager(&app).await;
    let auth = Auth::ApiKey(secret);
    let (a, _) = app.key_with_scopes(&org, "a", &["messages:send"]).await;
    let (b, _) = app.key_with_scopes(&org, "b", &["messages:send", "keys:write"]).await;
    let rolled = app.call(&auth, Method::POST, &format!("/v1/orgs/{org}/keys/{a}/roll"), None).await;
    assert_eq!(rolled.status, StatusCode::CREATED, "{:#}", rolled.body);
    assert_eq!(rolled.body["key"]["created_by"], manager_id.as_str());
    assert_eq!(rolled.body["key"]["scopes"], json!(["messages:send"]));
    let revoked = app.call(&auth, Method::POST, &format!("/v1/orgs/{org}/keys/{b}/revoke"), None).await;
    assert_eq!(revoked.status, StatusCode::OK, "{:#}", revoked.body);
    assert_eq!(revoked.body["key"]["status"], "revoked");
    assert_eq!(revoked.body["key"]["revoked_by"], manager_id.as_str());
}

#[tokio::test]
async fn a_keys_read_key_reads_but_cannot_write() {
    let app = spawn_app().await;
    let org = app.create_org_with_senders().await;
    let (_, secret) = app.key_with_scopes(&org, "reader", &["keys:read", "messages:send"]).await;
    let (target, target_secret) = app.key_with_scopes(&org, "target", &["messages:send"]).await;
    let auth = Auth::Bearer(secret);
    let keys = format!("/v1/orgs/{org}/keys");
    let reads = [
        (Method::GET, keys.clone(), None),
        (Method::GET, format!("{keys}/{target}"), None),
        (Method::POST, "/v1/keys/lookup".to_owned(), Some(json!({ "key": target_secret }))),
        (Method::GET, format!("/v1/orgs/{org}/channels"), None),
        (Method::GET, format!("/v1/orgs/{org}/phone-numbers"), None),
    ];
    for (method, path, body) in reads {
        let answer = app.call(&auth, method.clone(), &path, body.as_ref()).await;
        assert_eq!(answer.status, StatusCode::OK, "{method} {path}: {:#}", answer.body);
    }
    let writes = [
        (Method::POST, keys.clone(), Some(json!({ "name": "x", "scopes": ["messages:send"] }))),
        (Method::PATCH, format!("{keys}/{target}"), Some(json!({ "name": "x" }))),
        (Method::POST, format!("{keys}/{target}/revoke"), None),
        (Method::POST, format!("{keys}/{target}/roll"), None),
        (Method::POST, format!("/v1/orgs/{org}/channels"), Some(json!({ "slug": "new", "name": "New" }))),
        (Method::POST, format!("/v1/orgs/{org}/phone-numbers"), Some(json!({ "number": "+14155550199" }))),
    ];
    for (method, path, body) in writes {
        let answer = app.call(&auth, method.clone(), &path, body.as_ref()).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{method} {path}: {:#}", answer.body);
        answer.assert_problem(403, "FORBIDDEN");
    }
}

#[tokio::test]
async fn a_managing_key_cannot_read_the_audit_log_or_manage_members() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    for scopes in [&["keys:write"][..], &["keys:read"], &["*"]] {
        let (_, secret) = app.key_with_scopes(&org, "manager", scopes).await;
        let auth = Auth::Bearer(secret);
        let member = json!({ "email": "eve@example.com", "password": "correct horse battery", "role": "owner" });
        let cases = [
            (Method::GET, format!("/v1/orgs/{org}/audit"), None),
            (Method::GET, format!("/v1/orgs/{org}/members"), None),
            (Method::POST, format!("/v1/orgs/{org}/members"), Some(member)),
            (Method::POST, "/v1/orgs".to_owned(), Some(json!({ "name": "Mine" }))),
        ];
        for (method, path, body) in cases {
            let answer = app.call(&auth, method.clone(), &path, body.as_ref()).await;
            assert_eq!(answer.status, StatusCode::FORBIDDEN, "{scopes:?} {method} {path}: {:#}", answer.body);
        }
    }
}

#[tokio::test]
async fn a_revoked_or_expired_managing_key_is_401() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let (revoked_id, revoked) = app.key_with_scopes(&org, "revoked", &["keys:write", "messages:send"]).await;
    let expiring = app
        .create_key(
            &org,
            &json!({ "name": "expiring", "scopes": ["keys:write", "messages:send"], "expires_at": "2030-01-01T01:00:00Z" }),
        )
        .await;
    let expiring = expiring["secret"].as_str().unwrap().to_owned();
    let keys = format!("/v1/orgs/{org}/keys");
    for secret in [&revoked, &expiring] {
        assert_eq!(app.call(&Auth::Bearer(secret.clone()), Method::GET, &keys, None).await.status, StatusCode::OK);
    }
    let answer = app.post(&format!("{keys}/{revoked_id}/revoke"), &json!({})).await;
    assert_eq!(answer.status, StatusCode::OK, "{:#}", answer.body);
    app.clock.advance(time::Duration::hours(1));
    for secret in [&revoked, &expiring] {
        for auth in [Auth::Bearer(secret.clone()), Auth::ApiKey(secret.clone())] {
            app.call(&auth, Method::GET, &keys, None).await.assert_problem(401, "UNAUTHENTICATED");
            let body = json!({ "name": "late" });
            app.call(&auth, Method::POST, &keys, Some(&body)).await.assert_problem(401, "UNAUTHENTICATED");
        }
    }
}

#[tokio::test]
async fn a_managing_key_cannot_reach_another_org() {
    let app = spawn_app().await;
    let (_, _, secret) = org_with_manager(&app).await;
    let other = app.create_org("Globex").await;
    let (other_key, other_secret) = app.key_with_scopes(&other, "theirs", &["messages:send"]).await;
    let auth = Auth::Bearer(secret);
    let keys = format!("/v1/orgs/{other}/keys");
    let cases = [
        (Method::GET, keys.clone(), None),
        (Method::POST, keys.clone(), Some(json!({ "name": "planted", "scopes": ["messages:send"] }))),
        (Method::GET, format!("{keys}/{other_key}"), None),
        (Method::PATCH, format!("{keys}/{other_key}"), Some(json!({ "name": "mine" }))),
        (Method::POST, format!("{keys}/{other_key}/revoke"), None),
        (Method::POST, format!("{keys}/{other_key}/roll"), None),
        (Method::POST, "/v1/keys/lookup".to_owned(), Some(json!({ "key": other_secret }))),
    ];
    for (method, path, body) in cases {
        let answer = app.call(&auth, method.clone(), &path, body.as_ref()).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{method} {path}: {:#}", answer.body);
        answer.assert_problem(404, "NOT_FOUND");
    }
    let key = app.get(&format!("{keys}/{other_key}")).await;
    assert_eq!(key.body["key"]["status"], "active");
    assert_eq!(key.body["key"]["name"], "theirs");
    assert_eq!(app.audit_count(&other).await, 1, "only its key.created");
}

#[tokio::test]
async fn a_managing_keys_ip_allowlist_holds_for_management_calls() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let keys = format!("/v1/orgs/{org}/keys");
    // (allowlist, expected status from 127.0.0.1)
    let cases: [(Value, u16); 5] = [
        (json!(["10.0.0.0/8"]), 403),
        (json!(["203.0.113.7", "::1"]), 403),
        (json!(["127.0.0.1"]), 200),
        (json!(["127.0.0.0/8"]), 200),
        (json!([]), 200),
    ];
    for (allowlist, status) in cases {
        let created = app
            .create_key(&org, &json!({ "name": "fenced", "scopes": ["keys:write"], "ip_allowlist": allowlist }))
            .await;
        let secret = created["secret"].as_str().unwrap().to_owned();
        for auth in [Auth::Bearer(secret.clone()), Auth::ApiKey(secret)] {
            let answer = app.call(&auth, Method::GET, &keys, None).await;
            assert_eq!(answer.status.as_u16(), status, "{allowlist}: {:#}", answer.body);
            if status == 403 {
                answer.assert_problem(403, "FORBIDDEN");
                // A forged X-Forwarded-For from an untrusted peer does not get it through.
                let forged = app.authed(app.client.get(app.url(&keys)), &auth).header("x-forwarded-for", "10.1.2.3");
                app.send(forged).await.assert_problem(403, "FORBIDDEN");
            }
        }
    }
}

#[tokio::test]
async fn a_key_without_keys_scopes_cannot_manage_anything() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let (target, target_secret) = app.key_with_scopes(&org, "target", &["messages:send"]).await;
    let (_, secret) = app.key_with_scopes(&org, "sender", &["messages:send", "templates:read", "contacts:write"]).await;
    let keys = format!("/v1/orgs/{org}/keys");
    let cases = [
        (Method::GET, keys.clone(), None),
        (Method::POST, keys.clone(), Some(json!({ "name": "x", "scopes": ["messages:send"] }))),
        (Method::GET, format!("{keys}/{target}"), None),
        (Method::PATCH, format!("{keys}/{target}"), Some(json!({ "name": "x" }))),
        (Method::POST, format!("{keys}/{target}/revoke"), None),
        (Method::POST, format!("{keys}/{target}/roll"), None),
        (Method::POST, "/v1/keys/lookup".to_owned(), Some(json!({ "key": target_secret }))),
    ];
    for (method, path, body) in cases {
        let answer = app.call(&Auth::ApiKey(secret.clone()), method.clone(), &path, body.as_ref()).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{method} {path}: {:#}", answer.body);
    }
}
