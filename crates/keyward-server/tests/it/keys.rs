//! Orgs, phone numbers, channels and the key lifecycle over HTTP.

use keyward_core::ids::OrgId;
use keyward_store::{AuditFilter, Page};
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::support::{spawn_app, TestApp, START};

async fn audit_actions(app: &TestApp, org: &str) -> Vec<(String, String)> {
    let org = OrgId::parse(org).unwrap();
    let events = app
        .keyward
        .store
        .org(&org)
        .list_audit(&AuditFilter::default(), Page { limit: 100, cursor: None })
        .await
        .unwrap();
    events.items.into_iter().map(|e| (e.event.action, e.event.target_id)).collect()
}

#[tokio::test]
async fn created_key_is_returned_once_with_its_secret_and_never_again() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let created = app.create_key(&org, &json!({ "name": "  CRM Sync  ", "hmac_required": true })).await;
    let secret = created["secret"].as_str().unwrap();
    let signing_secret = created["signing_secret"].as_str().unwrap();
    let key = &created["key"];
    assert_eq!(key["name"], "CRM Sync", "the name is trimmed");
    assert_eq!(key["scopes"], json!(["messages:send"]), "messages:send is the default scope");
    assert_eq!(key["status"], "active");
    assert_eq!(key["channels"], "all");
    assert_eq!(key["environment"], "live");
    assert_eq!(key["created_by"], "operator");
    assert_eq!(key["hmac_required"], true);
    assert!(secret.starts_with("kw_live_") && secret.len() == 46, "{secret}");
    assert_eq!(key["prefix"], &secret[..16]);
    let id = key["id"].as_str().unwrap();

    let got = app.get(&format!("/v1/orgs/{org}/keys/{id}")).await;
    let listed = app.get(&format!("/v1/orgs/{org}/keys")).await;
    for answer in [&got, &listed] {
        assert_eq!(answer.status, StatusCode::OK);
        let text = answer.body.to_string();
        assert!(!text.contains(secret) && !text.contains(signing_secret), "secret leaked: {text}");
        assert!(!text.contains("\"secret\""), "{text}");
    }
    assert_eq!(got.body["key"]["id"], id);
}

#[tokio::test]
async fn create_without_hmac_has_no_signing_secret() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let created = app.create_key(&org, &json!({ "name": "plain", "environment": "test" })).await;
    assert_eq!(created["signing_secret"], Value::Null);
    assert!(created["secret"].as_str().unwrap().starts_with("kw_test_"));
}

/// One row per validation rule of SPEC §2: the body, the field named, and (when the SPEC quotes
/// it) the exact message.
#[tokio::test]
async fn each_invalid_field_is_a_400_naming_the_field() {
    let app = spawn_app().await;
    let org = app.create_org_with_senders().await;
    let past = "2029-12-31T23:59:59Z";
    let cases: Vec<(Value, &str, Option<&str>)> = vec![
        (json!({}), "name", None),
        (json!({ "name": "   " }), "name", None),
        (json!({ "name": "x".repeat(65) }), "name", None),
        (json!({ "name": "bad\u{7}name" }), "name", None),
        (json!({ "name": 5 }), "name", None),
        (json!({ "name": "k", "scopes": [] }), "scopes", Some("Select at least one scope.")),
        (json!({ "name": "k", "scopes": ["messages:fly"] }), "scopes", None),
        (json!({ "name": "k", "scopes": "messages:send" }), "scopes", None),
        (
            json!({ "name": "k", "rate_limit": 0 }),
            "rate_limit",
            Some("Rate limit must be an integer between 1 and 1000"),
        ),
        (
            json!({ "name": "k", "rate_limit": 1001 }),
            "rate_limit",
            Some("Rate limit must be an integer between 1 and 1000"),
        ),
        (
            json!({ "name": "k", "rate_limit": 2.5 }),
            "rate_limit",
            Some("Rate limit must be an integer between 1 and 1000"),
        ),
        (
            json!({ "name": "k", "rate_limit": "80" }),
            "rate_limit",
            Some("Rate limit must be an integer between 1 and 1000"),
        ),
        (json!({ "name": "k", "expires_at": past }), "expires_at", Some("Expiry must be in the future")),
        (
            json!({ "name": "k", "expires_at": "2030-01-01T00:00:00Z" }),
            "expires_at",
            Some("Expiry must be in the future"),
        ),
        (json!({ "name": "k", "expires_at": "tomorrow" }), "expires_at", None),
        (json!({ "name": "k", "ip_allowlist": ["10.0.0.1", "10.0.0.300"] }), "ip_allowlist[1]", None),
        (json!({ "name": "k", "ip_allowlist": ["10.0.0.1/8"] }), "ip_allowlist[0]", None),
        (json!({ "name": "k", "ip_allowlist": "10.0.0.1" }), "ip_allowlist", None),
        (json!({ "name": "k", "phone_allowlist": ["+14155550199"] }), "phone_allowlist[0]", None),
        (json!({ "name": "k", "phone_allowlist": ["not a number"] }), "phone_allowlist[0]", None),
        (json!({ "name": "k", "channels": [] }), "channels", None),
        (json!({ "name": "k", "channels": ["marketing", "nope"] }), "channels[1]", None),
        (json!({ "name": "k", "channels": "some" }), "channels", None),
        (json!({ "name": "k", "environment": "prod" }), "environment", None),
        (json!({ "name": "k", "hmac_required": "yes" }), "hmac_required", None),
        (json!({ "name": "k", "external_id": "x".repeat(257) }), "external_id", None),
        (json!({ "name": "k", "meta": [1, 2] }), "meta", None),
        (json!({ "name": "k", "meta": { "blob": "x".repeat(4100) } }), "meta", None),
        (json!({ "name": "k", "secret": "mine" }), "secret", None),
    ];
    for (body, field, message) in cases {
        let answer = app.post(&format!("/v1/orgs/{org}/keys"), &body).await;
        answer.assert_problem(400, "VALIDATION_FAILED");
        let got =
            answer.field_error(field).unwrap_or_else(|| panic!("no error on {field} for {body}: {:#}", answer.body));
        if let Some(message) = message {
            assert_eq!(got, message, "for {body}");
        }
    }
    let listed = app.get(&format!("/v1/orgs/{org}/keys")).await;
    assert_eq!(listed.body["data"], json!([]), "no invalid key was written");
}

#[tokio::test]
async fn valid_restrictions_are_stored_normalized() {
    let app = spawn_app().await;
    let org = app.create_org_with_senders().await;
    let created = app
        .create_key(
            &org,
            &json!({
                "name": "restricted",
                "scopes": ["templates:read", "messages:send", "messages:send"],
                "rate_limit": 1000,
                "expires_at": "2030-06-01T12:00:00+02:00",
                "ip_allowlist": ["10.0.0.0/8", "203.0.113.7", "2001:db8::1", "2001:db8::/32"],
                "phone_allowlist": ["+1 (415) 555-0100"],
                "channels": ["alerts", "marketing"],
                "external_id": "crm-42",
                "meta": { "team": "growth" },
            }),
        )
        .await;
    let key = &created["key"];
    assert_eq!(key["scopes"], json!(["messages:send", "templates:read"]));
    assert_eq!(key["rate_limit"], 1000);
    assert_eq!(key["expires_at"], "2030-06-01T10:00:00Z");
    assert_eq!(key["ip_allowlist"], json!(["10.0.0.0/8", "203.0.113.7", "2001:db8::1", "2001:db8::/32"]));
    assert_eq!(key["phone_allowlist"], json!(["+14155550100"]));
    assert_eq!(key["channels"], json!(["alerts", "marketing"]));
    assert_eq!(key["external_id"], "crm-42");
    assert_eq!(key["meta"], json!({ "team": "growth" }));
}

#[tokio::test]
async fn list_is_newest_first_with_cursor_pagination_and_filters() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let created = app.create_key(&org, &json!({ "name": format!("key {i}") })).await;
        ids.push(created["key"]["id"].as_str().unwrap().to_owned());
    }
    app.post(&format!("/v1/orgs/{org}/keys/{}/revoke", ids[1]), &json!({})).await;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = cursor.as_ref().map_or(String::new(), |c| format!("&cursor={c}"));
        let page = app.get(&format!("/v1/orgs/{org}/keys?limit=2{query}")).await;
        assert_eq!(page.status, StatusCode::OK, "{:#}", page.body);
        let data = page.body["data"].as_array().unwrap();
        assert!(data.len() <= 2);
        seen.extend(data.iter().map(|k| k["id"].as_str().unwrap().to_owned()));
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    let revoked = app.get(&format!("/v1/orgs/{org}/keys?status=revoked")).await;
    assert_eq!(revoked.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(revoked.body["data"][0]["id"], ids[1].as_str());
    let active = app.get(&format!("/v1/orgs/{org}/keys?status=active")).await;
    assert_eq!(active.body["data"].as_array().unwrap().len(), 4);
    let by_operator = app.get(&format!("/v1/orgs/{org}/keys?created_by=operator")).await;
    assert_eq!(by_operator.body["data"].as_array().unwrap().len(), 5);
    let by_nobody = app.get(&format!("/v1/orgs/{org}/keys?created_by=usr_nobody")).await;
    assert_eq!(by_nobody.body["data"], json!([]));
}

#[tokio::test]
async fn expired_keys_are_reported_and_filtered_as_expired() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let created = app.create_key(&org, &json!({ "name": "short", "expires_at": "2030-01-01T00:01:00Z" })).await;
    let id = created["key"]["id"].as_str().unwrap();
    app.clock.advance(time::Duration::seconds(61));
    let got = app.get(&format!("/v1/orgs/{org}/keys/{id}")).await;
    assert_eq!(got.body["key"]["status"], "expired");
    let expired = app.get(&format!("/v1/orgs/{org}/keys?status=expired")).await;
    assert_eq!(expired.body["data"][0]["id"], id);
    let active = app.get(&format!("/v1/orgs/{org}/keys?status=active")).await;
    assert_eq!(active.body["data"], json!([]));
}

#[tokio::test]
async fn absurd_list_parameters_are_clear_400s() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=-1", "limit"),
        ("limit=99999999999999999999", "limit"),
        ("cursor=garbage", "cursor"),
        ("cursor=c", "cursor"),
        ("status=deleted", "status"),
    ] {
        let answer = app.get(&format!("/v1/orgs/{org}/keys?{query}")).await;
        answer.assert_problem(400, "VALIDATION_FAILED");
        assert!(answer.field_error(field).is_some(), "{query}: {:#}", answer.body);
    }
}

#[tokio::test]
async fn patch_changes_only_given_fields_and_null_clears() {
    let app = spawn_app().await;
    let org = app.create_org_with_senders().await;
    let created = app
        .create_key(
            &org,
            &json!({ "name": "k", "rate_limit": 10, "expires_at": "2031-01-01T00:00:00Z", "meta": { "a": 1 } }),
        )
        .await;
    let id = created["key"]["id"].as_str().unwrap();
    let path = format!("/v1/orgs/{org}/keys/{id}");

    let renamed = app.patch(&path, &json!({ "name": "renamed", "channels": ["alerts"] })).await;
    assert_eq!(renamed.status, StatusCode::OK, "{:#}", renamed.body);
    assert_eq!(renamed.body["key"]["name"], "renamed");
    assert_eq!(renamed.body["key"]["channels"], json!(["alerts"]));
    assert_eq!(renamed.body["key"]["rate_limit"], 10, "absent fields stay");

    let cleared = app.patch(&path, &json!({ "rate_limit": null, "expires_at": null, "meta": null })).await;
    assert_eq!(cleared.body["key"]["rate_limit"], Value::Null);
    assert_eq!(cleared.body["key"]["expires_at"], Value::Null);
    assert_eq!(cleared.body["key"]["meta"], Value::Null);

    let invalid = app.patch(&path, &json!({ "rate_limit": 0, "scopes": [] })).await;
    invalid.assert_problem(400, "VALIDATION_FAILED");
    assert!(invalid.field_error("rate_limit").is_some() && invalid.field_error("scopes").is_some());

    let not_editable = app.patch(&path, &json!({ "hmac_required": true })).await;
    not_editable.assert_problem(400, "VALIDATION_FAILED");

    let actions = audit_actions(&app, &org).await;
    let updates = actions.iter().filter(|(action, _)| action == "key.updated").count();
    assert_eq!(updates, 2, "two effective patches, two events: {actions:?}");
}

#[tokio::test]
async fn revoke_is_idempotent_irreversible_and_blocks_edits() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let created = app.create_key(&org, &json!({ "name": "k" })).await;
    let id = created["key"]["id"].as_str().unwrap();
    let first = app.post(&format!("/v1/orgs/{org}/keys/{id}/revoke"), &json!({})).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.body["key"]["status"], "revoked");
    assert_eq!(first.body["key"]["revoked_by"], "operator");
    let revoked_at = first.body["key"]["revoked_at"].clone();
    assert!(revoked_at.is_string());

    app.clock.advance(time::Duration::seconds(30));
    let again = app
        .send(app.client.post(app.url(&format!("/v1/orgs/{org}/keys/{id}/revoke"))).bearer_auth(&app.operator_token))
        .await;
    assert_eq!(again.status, StatusCode::OK, "a revoke without a body is fine: {:#}", again.body);
    assert_eq!(again.body["key"]["revoked_at"], revoked_at, "revoking again changes nothing");

    app.patch(&format!("/v1/orgs/{org}/keys/{id}"), &json!({ "name": "back" }))
        .await
        .assert_problem(409, "API_KEY_INACTIVE");
    app.post(&format!("/v1/orgs/{org}/keys/{id}/roll"), &json!({})).await.assert_problem(409, "API_KEY_INACTIVE");

    let actions = audit_actions(&app, &org).await;
    assert_eq!(actions.iter().filter(|(a, _)| a == "key.revoked").count(), 1, "{actions:?}");
}

#[tokio::test]
async fn roll_with_grace_keeps_the_old_key_until_the_grace_ends() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let old = app.create_key(&org, &json!({ "name": "k", "hmac_required": true, "scopes": ["templates:read"] })).await;
    let old_id = old["key"]["id"].as_str().unwrap();
    let rolled = app.post(&format!("/v1/orgs/{org}/keys/{old_id}/roll"), &json!({ "grace_seconds": 60 })).await;
    assert_eq!(rolled.status, StatusCode::CREATED, "{:#}", rolled.body);
    assert_ne!(rolled.body["secret"], old["secret"]);
    assert!(rolled.body["signing_secret"].is_string());
    assert_ne!(rolled.body["signing_secret"], old["signing_secret"]);
    assert_eq!(rolled.body["key"]["scopes"], json!(["templates:read"]), "same settings");
    assert_ne!(rolled.body["key"]["id"], old_id);

    let no_scope_check = |secret: &Value| json!({ "key": secret });
    let old_answer = app.verify(&no_scope_check(&old["secret"])).await;
    assert_eq!(old_answer["code"], "SIGNATURE_REQUIRED", "old key still known during the grace: {old_answer}");
    let old_key = app.get(&format!("/v1/orgs/{org}/keys/{old_id}")).await;
    assert_eq!(old_key.body["key"]["expires_at"], "2030-01-01T00:01:00Z");

    app.clock.advance(time::Duration::seconds(61));
    let after = app.verify(&no_scope_check(&old["secret"])).await;
    assert_eq!(after["code"], "API_KEY_EXPIRED");

    let actions = audit_actions(&app, &org).await;
    assert!(actions.iter().any(|(a, t)| a == "key.rolled" && t == old_id), "{actions:?}");
}

#[tokio::test]
async fn roll_without_grace_revokes_the_old_key_at_once() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let old = app.create_key(&org, &json!({ "name": "k" })).await;
    let old_id = old["key"]["id"].as_str().unwrap();
    assert_eq!(app.verify(&json!({ "key": old["secret"] })).await["code"], "VALID");
    let rolled = app
        .send(app.client.post(app.url(&format!("/v1/orgs/{org}/keys/{old_id}/roll"))).bearer_auth(&app.operator_token))
        .await;
    assert_eq!(rolled.status, StatusCode::CREATED, "{:#}", rolled.body);
    assert_eq!(app.verify(&json!({ "key": old["secret"] })).await["code"], "API_KEY_INACTIVE");
    assert_eq!(app.verify(&json!({ "key": rolled.body["secret"] })).await["code"], "VALID");
    for grace in [json!(-1), json!(604_801), json!("60"), json!(1.5)] {
        let other = app.create_key(&org, &json!({ "name": "k2" })).await;
        let id = other["key"]["id"].as_str().unwrap();
        app.post(&format!("/v1/orgs/{org}/keys/{id}/roll"), &json!({ "grace_seconds": grace }))
            .await
            .assert_problem(400, "VALIDATION_FAILED");
    }
}

#[tokio::test]
async fn lookup_by_value_finds_the_key_and_404s_otherwise() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let created = app.create_key(&org, &json!({ "name": "k" })).await;
    let found = app.post("/v1/keys/lookup", &json!({ "key": created["secret"] })).await;
    assert_eq!(found.status, StatusCode::OK);
    assert_eq!(found.body["key"]["id"], created["key"]["id"]);
    assert!(!found.body.to_string().contains(created["secret"].as_str().unwrap()));
    let mut typo = created["secret"].as_str().unwrap().to_owned();
    typo.replace_range(20..21, if &typo[20..21] == "a" { "b" } else { "a" });
    app.post("/v1/keys/lookup", &json!({ "key": typo })).await.assert_problem(404, "NOT_FOUND");
    app.post("/v1/keys/lookup", &json!({ "key": "" })).await.assert_problem(404, "NOT_FOUND");
}

#[tokio::test]
async fn another_orgs_key_is_not_found_for_every_key_endpoint() {
    let app = spawn_app().await;
    let org_a = app.create_org("A").await;
    let org_b = app.create_org("B").await;
    let key = app.create_key(&org_a, &json!({ "name": "a's key" })).await;
    let id = key["key"]["id"].as_str().unwrap();
    app.get(&format!("/v1/orgs/{org_b}/keys/{id}")).await.assert_problem(404, "NOT_FOUND");
    app.patch(&format!("/v1/orgs/{org_b}/keys/{id}"), &json!({ "name": "x" })).await.assert_problem(404, "NOT_FOUND");
    app.post(&format!("/v1/orgs/{org_b}/keys/{id}/revoke"), &json!({})).await.assert_problem(404, "NOT_FOUND");
    app.post(&format!("/v1/orgs/{org_b}/keys/{id}/roll"), &json!({})).await.assert_problem(404, "NOT_FOUND");
    app.get("/v1/orgs/org_doesnotexist/keys").await.assert_problem(404, "NOT_FOUND");
    app.get("/v1/orgs/not-an-id/keys").await.assert_problem(404, "NOT_FOUND");
    app.get(&format!("/v1/orgs/{org_a}/keys/key_nope")).await.assert_problem(404, "NOT_FOUND");
    let still = app.get(&format!("/v1/orgs/{org_a}/keys/{id}")).await;
    assert_eq!(still.body["key"]["name"], "a's key");
    assert_eq!(still.body["key"]["status"], "active");
}

#[tokio::test]
async fn phone_numbers_are_normalized_and_unique() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let path = format!("/v1/orgs/{org}/phone-numbers");
    let added = app.post(&path, &json!({ "number": "+44 20 7946 0958" })).await;
    assert_eq!(added.status, StatusCode::CREATED, "{:#}", added.body);
    assert_eq!(added.body["number"], "+442079460958");
    app.post(&path, &json!({ "number": "+442079460958" })).await.assert_problem(409, "CONFLICT");
    for bad in ["hello", "+1", "", "12345"] {
        let answer = app.post(&path, &json!({ "number": bad })).await;
        answer.assert_problem(400, "VALIDATION_FAILED");
        assert!(answer.field_error("number").is_some());
    }
    let listed = app.get(&path).await;
    assert_eq!(listed.body["data"][0]["number"], "+442079460958");
}

#[tokio::test]
async fn channels_need_a_valid_unique_slug() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let path = format!("/v1/orgs/{org}/channels");
    let added = app.post(&path, &json!({ "slug": "test-devices", "name": "Test devices" })).await;
    assert_eq!(added.status, StatusCode::CREATED);
    app.post(&path, &json!({ "slug": "test-devices", "name": "again" })).await.assert_problem(409, "CONFLICT");
    for slug in ["Upper", "", "with space", &"x".repeat(65)] {
        let answer = app.post(&path, &json!({ "slug": slug, "name": "n" })).await;
        answer.assert_problem(400, "VALIDATION_FAILED");
        assert!(answer.field_error("slug").is_some());
    }
    assert_eq!(app.get(&path).await.body["data"][0]["slug"], "test-devices");
}

#[tokio::test]
async fn management_needs_the_operator_token() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let path = app.url(&format!("/v1/orgs/{org}/keys"));
    app.send(app.client.get(&path)).await.assert_problem(401, "UNAUTHENTICATED");
    app.send(app.client.get(&path).bearer_auth("kwop_wrong_token_123456")).await.assert_problem(401, "UNAUTHENTICATED");
    app.send(app.client.post(app.url("/v1/orgs")).json(&json!({ "name": "x" })))
        .await
        .assert_problem(401, "UNAUTHENTICATED");
    let ok = app.send(app.client.get(&path).header("X-API-Key", &app.operator_token)).await;
    assert_eq!(ok.status, StatusCode::OK);
}

#[tokio::test]
async fn bad_bodies_are_problem_json_never_500() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let path = app.url(&format!("/v1/orgs/{org}/keys"));
    let token = &app.operator_token;
    let malformed = app
        .send(app.client.post(&path).bearer_auth(token).header("content-type", "application/json").body("{\"name\": "))
        .await;
    malformed.assert_problem(400, "VALIDATION_FAILED");
    let not_object = app
        .send(app.client.post(&path).bearer_auth(token).header("content-type", "application/json").body("[1,2]"))
        .await;
    not_object.assert_problem(400, "VALIDATION_FAILED");
    let trailing = app
        .send(
            app.client
                .post(&path)
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body("{\"name\":\"a\"} x"),
        )
        .await;
    trailing.assert_problem(400, "VALIDATION_FAILED");
    let text = app.send(app.client.post(&path).bearer_auth(token).body("name=x")).await;
    text.assert_problem(415, "UNSUPPORTED_MEDIA_TYPE");
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(1024 * 1024 + 10));
    let too_large =
        app.send(app.client.post(&path).bearer_auth(token).header("content-type", "application/json").body(huge)).await;
    too_large.assert_problem(413, "PAYLOAD_TOO_LARGE");
    let unknown = app.send(app.client.get(app.url("/v1/nothing-here")).bearer_auth(token)).await;
    unknown.assert_problem(404, "NOT_FOUND");
}

#[tokio::test]
async fn every_key_change_has_its_audit_event() {
    let app = spawn_app().await;
    let org = app.create_org_with_senders().await;
    let created = app.create_key(&org, &json!({ "name": "k" })).await;
    let id = created["key"]["id"].as_str().unwrap().to_owned();
    app.patch(&format!("/v1/orgs/{org}/keys/{id}"), &json!({ "name": "k2" })).await;
    let rolled = app.post(&format!("/v1/orgs/{org}/keys/{id}/roll"), &json!({ "grace_seconds": 10 })).await;
    let new_id = rolled.body["key"]["id"].as_str().unwrap().to_owned();
    app.post(&format!("/v1/orgs/{org}/keys/{new_id}/revoke"), &json!({})).await;

    let org_id = OrgId::parse(&org).unwrap();
    let events = app
        .keyward
        .store
        .org(&org_id)
        .list_audit(&AuditFilter::default(), Page { limit: 100, cursor: None })
        .await
        .unwrap()
        .items;
    let actions: Vec<&str> = events.iter().map(|e| e.event.action.as_str()).collect();
    assert_eq!(
        &actions[..5],
        ["key.revoked", "key.created", "key.rolled", "key.updated", "key.created"],
        "newest first: {actions:?}"
    );
    let updated = events.iter().find(|e| e.event.action == "key.updated").unwrap();
    assert_eq!(updated.event.changes, json!({ "name": { "old": "k", "new": "k2" } }));
    assert_eq!(updated.event.actor.id, "operator");
    assert_eq!(updated.event.actor_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(updated.event.trace_id.len(), 32);
    let all_text = format!("{events:?}");
    assert!(!all_text.contains(created["secret"].as_str().unwrap()), "no secret in the audit log");
    assert!(events.iter().all(|e| e.event.at >= START));
}

#[tokio::test]
async fn traceparent_header_sets_the_audit_trace_id() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let answer = app
        .send(
            app.client
                .post(app.url(&format!("/v1/orgs/{org}/keys")))
                .bearer_auth(&app.operator_token)
                .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
                .json(&json!({ "name": "traced" })),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED);
    let org_id = OrgId::parse(&org).unwrap();
    let events = app.keyward.store.org(&org_id).audit_chain().await.unwrap();
    assert_eq!(events.last().unwrap().event.trace_id, trace);
}

#[tokio::test]
async fn health_readiness_metrics_and_openapi_answer() {
    let app = spawn_app().await;
    assert_eq!(app.send(app.client.get(app.url("/healthz"))).await.status, StatusCode::OK);
    assert_eq!(app.send(app.client.get(app.url("/readyz"))).await.status, StatusCode::OK);
    let metrics = app.send(app.client.get(app.url("/metrics"))).await;
    assert_eq!(metrics.status, StatusCode::OK);
    let openapi = app.send(app.client.get(app.url("/openapi.json"))).await;
    assert_eq!(openapi.body["openapi"], "3.1.0");
    for path in ["/v1/verify", "/v1/orgs/{org}/keys", "/v1/orgs/{org}/keys/{id}/roll", "/v1/keys/lookup"] {
        assert!(openapi.body["paths"].get(path).is_some(), "{path} missing from OpenAPI");
    }
}

#[tokio::test]
async fn graceful_stop_flushes_pending_last_used_times() {
    let mut app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let created = app.create_key(&org, &json!({ "name": "k" })).await;
    assert_eq!(app.verify(&json!({ "key": created["secret"] })).await["code"], "VALID");
    app.stop().await;
    let org_id = OrgId::parse(&org).unwrap();
    let id = keyward_core::ids::KeyId::parse(created["key"]["id"].as_str().unwrap()).unwrap();
    let stored = app.keyward.store.org(&org_id).find_key(&id).await.unwrap().unwrap();
    assert_eq!(stored.last_used_at, Some(START));
}

#[tokio::test]
async fn a_body_that_is_not_a_json_object_is_refused_everywhere() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    for path in
        ["/v1/verify".to_owned(), format!("/v1/orgs/{org}/keys"), "/v1/keys/lookup".to_owned(), "/v1/orgs".to_owned()]
    {
        for body in ["[null, null]", "[]", "\"key\"", "42", "null"] {
            let answer = app
                .send(
                    app.client
                        .post(app.url(&path))
                        .bearer_auth(&app.operator_token)
                        .header("content-type", "application/json")
                        .body(body),
                )
                .await;
            answer.assert_problem(400, "VALIDATION_FAILED");
            assert_eq!(answer.field_error("body").as_deref(), Some("The body must be a JSON object"), "{path} {body}");
        }
    }
}
