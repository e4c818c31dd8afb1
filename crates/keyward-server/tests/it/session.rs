//! Console login and logout: the cookie's flags, identical answers for a wrong password and an
//! unknown email, throttling, CSRF, server-side session ends, and member input rules.

use keyward_server::config::Config;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::support::{login_from, spawn_app, spawn_app_with, Auth, TestApp, PASSWORD};

/// The attributes of a `Set-Cookie` value after the name=value pair, as `(name, value)`.
fn cookie_attributes(set_cookie: &str) -> Vec<(String, String)> {
    set_cookie
        .split(';')
        .skip(1)
        .map(|part| {
            let (name, value) = part.trim().split_once('=').unwrap_or((part.trim(), ""));
            (name.to_ascii_lowercase(), value.to_owned())
        })
        .collect()
}

fn attribute<'a>(attributes: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attributes.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

fn trusted_proxy_config() -> Config {
    Config::from_toml("trusted_proxies = [\"127.0.0.1\"]").expect("config")
}

#[tokio::test]
async fn login_sets_an_http_only_strict_session_cookie_without_secure_over_plain_http() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let id = app.add_member(&org, "Ann@Example.com", "admin").await;
    let (answer, headers) = app.try_login("ann@example.COM", PASSWORD).await;
    assert_eq!(answer.status, StatusCode::OK, "{:#}", answer.body);
    let login = login_from(&answer, &headers);

    assert!(login.cookie.starts_with("keyward_session="), "{}", login.set_cookie);
    let token = login.cookie.trim_start_matches("keyward_session=");
    assert!(token.len() >= 32, "a session token carries enough entropy: {token}");
    let attributes = cookie_attributes(&login.set_cookie);
    assert!(attribute(&attributes, "httponly").is_some(), "{}", login.set_cookie);
    assert_eq!(attribute(&attributes, "samesite"), Some("Strict"), "{}", login.set_cookie);
    assert_eq!(attribute(&attributes, "path"), Some("/"), "{}", login.set_cookie);
    let max_age: i64 = attribute(&attributes, "max-age").expect("Max-Age").parse().expect("Max-Age is a number");
    assert!(max_age > 0 && max_age <= 86_400 * 7, "a bounded session: {max_age}");
    assert!(attribute(&attributes, "secure").is_none(), "no Secure over plain HTTP: {}", login.set_cookie);
    assert_eq!(headers.get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));

    let body = &login.body;
    assert_eq!(body["member"]["id"], id.as_str());
    assert_eq!(body["member"]["email"], "ann@example.com", "emails are stored lower-cased");
    assert_eq!(body["member"]["role"], "admin");
    assert_eq!(body["org"]["id"], org.as_str());
    assert_eq!(body["org"]["name"], "Acme");
    assert!(login.csrf.len() >= 20, "{}", login.csrf);
    let text = body.to_string();
    assert!(!text.contains(PASSWORD) && !text.contains("argon2") && !text.contains(token), "{text}");

    let keys = app.call(&login.auth(), Method::GET, &format!("/v1/orgs/{org}/keys"), None).await;
    assert_eq!(keys.status, StatusCode::OK, "the cookie opens the console API: {:#}", keys.body);
}

/// Behind a TLS proxy the answer carries HSTS and the cookie is `__Host-keyward_session`,
/// `Secure` (the listener's own TLS: `crates/keyward/tests/tls.rs`).
#[tokio::test]
async fn the_cookie_is_secure_only_when_a_trusted_proxy_says_the_request_came_over_https() {
    let trusted = spawn_app_with(trusted_proxy_config()).await;
    let direct = spawn_app().await;
    // (app, X-Forwarded-Proto, Secure expected)
    let cases: [(&TestApp, Option<&str>, bool); 5] = [
        (&trusted, Some("https"), true),
        (&trusted, Some("HTTPS"), true),
        (&trusted, Some("http"), false),
        (&trusted, None, false),
        // Anyone can send the header; only a trusted proxy is believed.
        (&direct, Some("https"), false),
    ];
    for app in [&trusted, &direct] {
        let org = app.create_org("Acme").await;
        app.add_member(&org, "ann@example.com", "owner").await;
    }
    for (app, proto, secure) in cases {
        let mut request = app.client.post(app.url("/v1/session")).json(&json!({
            "email": "ann@example.com", "password": PASSWORD
        }));
        if let Some(proto) = proto {
            request = request.header("x-forwarded-proto", proto);
        }
        let (answer, headers) = app.send_with_headers(request).await;
        assert_eq!(answer.status, StatusCode::OK, "{:#}", answer.body);
        let hsts = headers.get("strict-transport-security").and_then(|v| v.to_str().ok());
        assert_eq!(hsts, secure.then_some("max-age=63072000; includeSubDomains"), "{proto:?}");
        let login = login_from(&answer, &headers);
        let name = if secure { "__Host-keyward_session=" } else { "keyward_session=" };
        assert!(login.cookie.starts_with(name), "{proto:?}: {}", login.set_cookie);
        let attributes = cookie_attributes(&login.set_cookie);
        assert_eq!(attribute(&attributes, "secure").is_some(), secure, "{proto:?}: {}", login.set_cookie);
        assert!(attribute(&attributes, "httponly").is_some() && attribute(&attributes, "samesite") == Some("Strict"));
        assert_eq!(attribute(&attributes, "path"), Some("/"), "{}", login.set_cookie);
        assert!(attribute(&attributes, "domain").is_none(), "{}", login.set_cookie);
        if secure {
            // Over HTTPS only the prefixed cookie is a session: one planted under the plain name is not.
            let token = login.cookie.trim_start_matches(name);
            let keys = app.url(&format!("/v1/orgs/{}/keys", login.body["org"]["id"].as_str().expect("org id")));
            let with =
                |cookie: String| app.client.get(&keys).header("cookie", cookie).header("x-forwarded-proto", "https");
            assert_eq!(app.send(with(login.cookie.clone())).await.status, StatusCode::OK);
            assert_eq!(app.send(with(format!("keyward_session={token}"))).await.status, StatusCode::UNAUTHORIZED);
        }

        // Logging out clears the cookie with the same flags.
        let mut logout = app.authed(app.client.delete(app.url("/v1/session")), &login.auth());
        if let Some(proto) = proto {
            logout = logout.header("x-forwarded-proto", proto);
        }
        let (answer, headers) = app.send_with_headers(logout).await;
        assert_eq!(answer.status, StatusCode::NO_CONTENT, "{:#}", answer.body);
        let cleared = headers.get("set-cookie").and_then(|v| v.to_str().ok()).expect("set-cookie").to_owned();
        let attributes = cookie_attributes(&cleared);
        assert!(cleared.starts_with(&format!("{name};")), "{cleared}");
        assert_eq!(attribute(&attributes, "max-age"), Some("0"), "{cleared}");
        assert_eq!(attribute(&attributes, "secure").is_some(), secure, "{proto:?}: {cleared}");
    }
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_email_get_identical_401_answers() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    app.add_member(&org, "ann@example.com", "owner").await;
    let (wrong_password, wrong_headers) = app.try_login("ann@example.com", "not the password at all").await;
    let (unknown_email, unknown_headers) = app.try_login("nobody@example.com", "not the password at all").await;
    let (malformed_email, _) = app.try_login("not an email", "not the password at all").await;
    for answer in [&wrong_password, &unknown_email, &malformed_email] {
        answer.assert_problem(401, "INVALID_CREDENTIALS");
    }
    assert_eq!(wrong_password.body, unknown_email.body, "the body does not tell whether the email exists");
    assert_eq!(wrong_password.body, malformed_email.body);
    for headers in [&wrong_headers, &unknown_headers] {
        assert!(headers.get("set-cookie").is_none(), "no cookie for a failed login");
    }
    let names = |headers: &reqwest::header::HeaderMap| {
        let mut names: Vec<String> =
            headers.keys().map(|name| name.as_str().to_owned()).filter(|name| name != "date").collect();
        names.sort();
        names
    };
    assert_eq!(names(&wrong_headers), names(&unknown_headers), "nor do the headers");
}

#[tokio::test]
async fn the_sixth_failed_login_for_an_email_is_throttled_with_retry_after_even_with_the_right_password() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    app.add_member(&org, "ann@example.com", "owner").await;
    app.add_member(&org, "bob@example.com", "owner").await;
    for attempt in 1..=5 {
        let (answer, _) = app.try_login("ann@example.com", &format!("wrong password {attempt}")).await;
        answer.assert_problem(401, "INVALID_CREDENTIALS");
    }
    for password in ["wrong password 6", PASSWORD] {
        let (answer, headers) = app.try_login("ann@example.com", password).await;
        answer.assert_problem(429, "TOO_MANY_ATTEMPTS");
        assert!(headers.get("set-cookie").is_none());
        let retry_after = headers.get("retry-after").and_then(|v| v.to_str().ok()).expect("Retry-After");
        assert_eq!(retry_after, "900", "the 15-minute window from the first failure, with the clock stopped");
    }
    // The email is throttled however it is spelled; another email from the same address is not.
    let (answer, _) = app.try_login("  ANN@example.com ", PASSWORD).await;
    answer.assert_problem(429, "TOO_MANY_ATTEMPTS");
    app.login("bob@example.com").await;

    app.clock.advance(time::Duration::minutes(10));
    let (answer, headers) = app.try_login("ann@example.com", PASSWORD).await;
    answer.assert_problem(429, "TOO_MANY_ATTEMPTS");
    assert_eq!(headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("300"));

    app.clock.advance(time::Duration::minutes(5));
    app.login("ann@example.com").await;
}

/// Attempts sent at once must not each get a guess: the limit holds for attempts still being checked.
#[tokio::test]
async fn concurrent_wrong_passwords_cannot_outrun_the_throttle() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    app.add_member(&org, "ann@example.com", "owner").await;
    let mut attempts = tokio::task::JoinSet::new();
    for n in 0..12 {
        let request = app
            .client
            .post(app.url("/v1/session"))
            .json(&json!({ "email": "ann@example.com", "password": format!("guess number {n}") }));
        attempts.spawn(async move { request.send().await.expect("request").status().as_u16() });
    }
    let mut statuses = Vec::new();
    while let Some(status) = attempts.join_next().await {
        statuses.push(status.expect("task"));
    }
    statuses.sort_unstable();
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(checked + throttled, 12, "{statuses:?}");
    assert!(checked <= 5, "{checked} passwords were tried at once for one email (limit 5): {statuses:?}");
    let (answer, _) = app.try_login("ann@example.com", PASSWORD).await;
    answer.assert_problem(429, "TOO_MANY_ATTEMPTS");
}

/// Not a benchmark: an unknown email must cost a password hash too, or its speed tells that the
/// email does not exist.
#[tokio::test]
async fn an_unknown_email_takes_about_as_long_as_a_wrong_password() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    app.add_member(&org, "ann@example.com", "owner").await;
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for n in 0..3 {
        let started = std::time::Instant::now();
        app.try_login("ann@example.com", "wrong password!").await.0.assert_problem(401, "INVALID_CREDENTIALS");
        known.push(started.elapsed());
        let started = std::time::Instant::now();
        let email = format!("nobody{n}@example.com");
        app.try_login(&email, "wrong password!").await.0.assert_problem(401, "INVALID_CREDENTIALS");
        unknown.push(started.elapsed());
    }
    known.sort();
    unknown.sort();
    assert!(unknown[1] * 3 >= known[1], "unknown email {:?} vs wrong password {:?}", unknown[1], known[1]);
}

#[tokio::test]
async fn users_and_readonly_members_can_log_in_and_out_but_not_see_keys() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    for role in ["user", "readonly"] {
        let (id, login) = app.member_session(&org, &format!("{role}@example.com"), role).await;
        assert_eq!(login.body["member"]["id"], id.as_str());
        assert_eq!(login.body["member"]["role"], role);
        let keys = format!("/v1/orgs/{org}/keys");
        app.call(&login.auth(), Method::GET, &keys, None).await.assert_problem(403, "FORBIDDEN");
        let answer = app.call(&login.auth(), Method::DELETE, "/v1/session", None).await;
        assert_eq!(answer.status, StatusCode::NO_CONTENT, "{role}: {:#}", answer.body);
        app.call(&login.auth(), Method::GET, &keys, None).await.assert_problem(401, "UNAUTHENTICATED");
    }
}

#[tokio::test]
async fn the_session_cookie_is_found_among_other_cookies_and_each_login_gets_new_tokens() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let (_, first) = app.member_session(&org, "ann@example.com", "owner").await;
    let second = app.login("ann@example.com").await;
    assert_ne!(first.cookie, second.cookie);
    assert_ne!(first.csrf, second.csrf);
    let keys = format!("/v1/orgs/{org}/keys");
    let cookie = format!("theme=dark; {}; keyward_session_old=stale", first.cookie);
    let answer = app.send(app.client.get(app.url(&keys)).header("cookie", cookie)).await;
    assert_eq!(answer.status, StatusCode::OK, "{:#}", answer.body);
    for cookie in ["keyward_session=", "keyward_session=made-up-token", "keyward_sessionx=abc", "other=1"] {
        let answer = app.send(app.client.get(app.url(&keys)).header("cookie", cookie)).await;
        answer.assert_problem(401, "UNAUTHENTICATED");
    }
}

#[tokio::test]
async fn failures_for_unknown_emails_count_too() {
    let app = spawn_app().await;
    for _ in 0..5 {
        let (answer, _) = app.try_login("ghost@example.com", "whatever it is").await;
        answer.assert_problem(401, "INVALID_CREDENTIALS");
    }
    let (answer, headers) = app.try_login("ghost@example.com", "whatever it is").await;
    answer.assert_problem(429, "TOO_MANY_ATTEMPTS");
    assert!(headers.contains_key("retry-after"));
}

#[tokio::test]
async fn twenty_failures_from_one_address_throttle_every_email_and_a_forged_forwarded_for_does_not_help() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    app.add_member(&org, "ann@example.com", "owner").await;
    for attempt in 0..20 {
        let request = app
            .client
            .post(app.url("/v1/session"))
            .header("x-forwarded-for", format!("198.51.100.{attempt}"))
            .json(&json!({ "email": format!("spray{attempt}@example.com"), "password": "guess guess guess" }));
        let (answer, _) = app.send_with_headers(request).await;
        answer.assert_problem(401, "INVALID_CREDENTIALS");
    }
    let request = app
        .client
        .post(app.url("/v1/session"))
        .header("x-forwarded-for", "203.0.113.99")
        .json(&json!({ "email": "ann@example.com", "password": PASSWORD }));
    let (answer, headers) = app.send_with_headers(request).await;
    answer.assert_problem(429, "TOO_MANY_ATTEMPTS");
    assert!(headers.contains_key("retry-after"));
}

#[tokio::test]
async fn behind_a_trusted_proxy_failures_are_counted_per_forwarded_client_address() {
    let app = spawn_app_with(trusted_proxy_config()).await;
    let org = app.create_org("Acme").await;
    app.add_member(&org, "ann@example.com", "owner").await;
    let login = |ip: &str, email: String, password: &str| {
        app.client
            .post(app.url("/v1/session"))
            .header("x-forwarded-for", ip)
            .json(&json!({ "email": email, "password": password }))
    };
    for attempt in 0..20 {
        let (answer, _) =
            app.send_with_headers(login("198.51.100.7", format!("spray{attempt}@example.com"), "guess guess")).await;
        answer.assert_problem(401, "INVALID_CREDENTIALS");
    }
    let (answer, _) = app.send_with_headers(login("198.51.100.7", "ann@example.com".to_owned(), PASSWORD)).await;
    answer.assert_problem(429, "TOO_MANY_ATTEMPTS");
    let (answer, _) = app.send_with_headers(login("203.0.113.5", "ann@example.com".to_owned(), PASSWORD)).await;
    assert_eq!(answer.status, StatusCode::OK, "another client behind the same proxy: {:#}", answer.body);
}

#[tokio::test]
async fn unsafe_cookie_requests_need_the_sessions_csrf_token_and_safe_ones_do_not() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let (_, login) = app.member_session(&org, "ann@example.com", "owner").await;
    let (_, other) = app.member_session(&org, "bob@example.com", "owner").await;
    let second = app.login("ann@example.com").await;
    let keys = format!("/v1/orgs/{org}/keys");
    let create = json!({ "name": "from the console" });
    let cookie_only = |csrf: Option<&str>| {
        let request = app.client.post(app.url(&keys)).header("cookie", &login.cookie).json(&create);
        match csrf {
            Some(csrf) => request.header("x-csrf-token", csrf),
            None => request,
        }
    };
    // (what, request, expected status, code)
    let cases = [
        ("no token", cookie_only(None), 403, "CSRF_FAILED"),
        ("empty token", cookie_only(Some("")), 403, "CSRF_FAILED"),
        ("wrong token", cookie_only(Some("0123456789abcdefghijABCDEFGHIJ01")), 403, "CSRF_FAILED"),
        ("another member's token", cookie_only(Some(&other.csrf)), 403, "CSRF_FAILED"),
        ("the same member's other session's token", cookie_only(Some(&second.csrf)), 403, "CSRF_FAILED"),
        (
            "the token without the cookie",
            app.client.post(app.url(&keys)).header("x-csrf-token", &login.csrf).json(&create),
            401,
            "UNAUTHENTICATED",
        ),
    ];
    for (what, request, status, code) in cases {
        let answer = app.send(request).await;
        assert_eq!(answer.status.as_u16(), status, "{what}: {:#}", answer.body);
        answer.assert_problem(status, code);
    }
    assert_eq!(app.audit_count(&org).await, 2 + 3, "two member.added and three member.login, no key.created");

    let answer = app.send(cookie_only(Some(&login.csrf))).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:#}", answer.body);
    let id = answer.body["key"]["id"].as_str().unwrap().to_owned();
    assert_eq!(answer.body["key"]["created_by"], login.body["member"]["id"]);

    // Every unsafe method is checked, logout included.
    let unsafe_requests = [
        app.client.patch(app.url(&format!("{keys}/{id}"))).json(&json!({ "name": "x" })),
        app.client.post(app.url(&format!("{keys}/{id}/revoke"))),
        app.client.post(app.url(&format!("{keys}/{id}/roll"))),
        app.client.delete(app.url(&format!("/v1/orgs/{org}/members/{}", other.body["member"]["id"].as_str().unwrap()))),
        app.client.delete(app.url("/v1/session")),
    ];
    for request in unsafe_requests {
        app.send(request.header("cookie", &login.cookie)).await.assert_problem(403, "CSRF_FAILED");
    }
    // GET needs none.
    for path in
        [keys.clone(), format!("{keys}/{id}"), format!("/v1/orgs/{org}/audit"), format!("/v1/orgs/{org}/members")]
    {
        let answer = app.send(app.client.get(app.url(&path)).header("cookie", &login.cookie)).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {:#}", answer.body);
    }
    let key = app.get(&format!("{keys}/{id}")).await;
    assert_eq!(key.body["key"]["status"], "active");
    assert_eq!(key.body["key"]["name"], "from the console");
}

#[tokio::test]
async fn logout_ends_the_session_on_the_server() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let (_, login) = app.member_session(&org, "ann@example.com", "owner").await;
    let other = app.login("ann@example.com").await;
    let keys = format!("/v1/orgs/{org}/keys");

    let answer = app.call(&login.auth(), Method::DELETE, "/v1/session", None).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{:#}", answer.body);
    // The old cookie, replayed by anyone who kept it, no longer works.
    app.call(&login.auth(), Method::GET, &keys, None).await.assert_problem(401, "UNAUTHENTICATED");
    app.call(&login.auth(), Method::POST, &keys, Some(&json!({ "name": "k" })))
        .await
        .assert_problem(401, "UNAUTHENTICATED");
    app.call(&login.auth(), Method::DELETE, "/v1/session", None).await.assert_problem(401, "UNAUTHENTICATED");
    // The member's other session is its own.
    assert_eq!(app.call(&other.auth(), Method::GET, &keys, None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn only_a_console_session_can_log_out() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let (_, key) = app.key_with_scopes(&org, "manager", &["keys:write"]).await;
    for auth in [Auth::Operator, Auth::Bearer(key)] {
        app.call(&auth, Method::DELETE, "/v1/session", None).await.assert_problem(403, "FORBIDDEN");
    }
    app.call(&Auth::Anonymous, Method::DELETE, "/v1/session", None).await.assert_problem(401, "UNAUTHENTICATED");
}

#[tokio::test]
async fn a_session_expires_after_its_max_age() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let (_, login) = app.member_session(&org, "ann@example.com", "owner").await;
    let max_age: i64 =
        attribute(&cookie_attributes(&login.set_cookie), "max-age").expect("Max-Age").parse().expect("number");
    let keys = format!("/v1/orgs/{org}/keys");
    app.clock.advance(time::Duration::seconds(max_age - 1));
    assert_eq!(app.call(&login.auth(), Method::GET, &keys, None).await.status, StatusCode::OK);
    app.clock.advance(time::Duration::seconds(1));
    app.call(&login.auth(), Method::GET, &keys, None).await.assert_problem(401, "UNAUTHENTICATED");
}

#[tokio::test]
async fn removing_a_member_ends_its_sessions_and_its_logins() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let (_, owner) = app.member_session(&org, "owner@example.com", "owner").await;
    let (admin_id, admin) = app.member_session(&org, "admin@example.com", "admin").await;
    let admin_again = app.login("admin@example.com").await;
    let keys = format!("/v1/orgs/{org}/keys");
    assert_eq!(app.call(&admin.auth(), Method::GET, &keys, None).await.status, StatusCode::OK);

    let answer = app.call(&owner.auth(), Method::DELETE, &format!("/v1/orgs/{org}/members/{admin_id}"), None).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{:#}", answer.body);
    for session in [&admin, &admin_again] {
        app.call(&session.auth(), Method::GET, &keys, None).await.assert_problem(401, "UNAUTHENTICATED");
    }
    let (answer, _) = app.try_login("admin@example.com", PASSWORD).await;
    answer.assert_problem(401, "INVALID_CREDENTIALS");
    let members = app.get(&format!("/v1/orgs/{org}/members")).await;
    assert!(!members.body.to_string().contains(&admin_id), "{:#}", members.body);
    // Removing it again: it is gone.
    let answer = app.call(&owner.auth(), Method::DELETE, &format!("/v1/orgs/{org}/members/{admin_id}"), None).await;
    answer.assert_problem(404, "NOT_FOUND");
    // The owner's own session is unaffected.
    assert_eq!(app.call(&owner.auth(), Method::GET, &keys, None).await.status, StatusCode::OK);
}

async fn add_as(app: &TestApp, auth: &Auth, org: &str, email: &str) -> super::support::Answer {
    let body = json!({ "email": email, "password": PASSWORD, "role": "user" });
    app.call(auth, Method::POST, &format!("/v1/orgs/{org}/members"), Some(&body)).await
}

#[tokio::test]
async fn an_owner_adds_members_and_an_email_is_unique_across_every_org() {
    let app = spawn_app().await;
    let acme = app.create_org("Acme").await;
    let globex = app.create_org("Globex").await;
    let (_, owner) = app.member_session(&acme, "owner@acme.example.com", "owner").await;
    let answer = add_as(&app, &owner.auth(), &acme, "Carol@Example.com").await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:#}", answer.body);
    assert!(answer.body["id"].as_str().unwrap().starts_with("usr_"));
    assert_eq!(answer.body["email"], "carol@example.com");
    assert_eq!(answer.body["role"], "user");
    assert_eq!(answer.body["org_id"], acme.as_str());
    let text = answer.body.to_string();
    assert!(!text.contains(PASSWORD) && !text.contains("argon2") && !text.contains("password"), "{text}");

    for email in ["carol@example.com", "CAROL@EXAMPLE.COM", " carol@example.com "] {
        add_as(&app, &owner.auth(), &acme, email).await.assert_problem(409, "CONFLICT");
    }
    // Login names no org, so the email is taken in every org.
    let answer = app
        .post(
            &format!("/v1/orgs/{globex}/members"),
            &json!({ "email": "carol@example.com", "password": PASSWORD, "role": "owner" }),
        )
        .await;
    answer.assert_problem(409, "CONFLICT");
    // An owner of one org cannot add to another.
    add_as(&app, &owner.auth(), &globex, "dave@example.com").await.assert_problem(404, "NOT_FOUND");

    let members = app.get(&format!("/v1/orgs/{acme}/members")).await;
    let emails: Vec<&str> =
        members.body["data"].as_array().unwrap().iter().map(|m| m["email"].as_str().unwrap()).collect();
    assert_eq!(emails, ["owner@acme.example.com", "carol@example.com"]);
    assert!(!members.body.to_string().contains("argon2"), "{:#}", members.body);
    app.login("carol@example.com").await;
}

#[tokio::test]
async fn invalid_member_input_is_a_400_naming_each_bad_field() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let good = json!({ "email": "ann@example.com", "password": PASSWORD, "role": "admin" });
    let with = |field: &str, value: Value| {
        let mut body = good.clone();
        body[field] = value;
        body
    };
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (with("email", json!("not an email")), vec!["email"]),
        (with("email", json!("ann@localhost")), vec!["email"]),
        (with("email", json!("")), vec!["email"]),
        (with("password", json!("tiny-pw")), vec!["password"]),
        (with("password", json!("123456789")), vec!["password"]),
        (with("password", json!("x".repeat(1025))), vec!["password"]),
        (with("role", json!("superuser")), vec!["role"]),
        (with("role", json!("Owner ")), vec!["role"]),
        (with("role", json!("")), vec!["role"]),
        (json!({ "email": "nope", "password": "short", "role": "root" }), vec!["email", "password", "role"]),
    ];
    for (body, fields) in cases {
        let answer = app.post(&format!("/v1/orgs/{org}/members"), &body).await;
        answer.assert_problem(400, "VALIDATION_FAILED");
        for field in &fields {
            assert!(answer.field_error(field).is_some(), "{body}: {field} not named: {:#}", answer.body);
        }
        let named = answer.body["errors"].as_array().unwrap().len();
        assert_eq!(named, fields.len(), "{body}: {:#}", answer.body);
    }
    let answer = app.post(&format!("/v1/orgs/{org}/members"), &with("password", json!("tiny-pw"))).await;
    assert!(!answer.body.to_string().contains("tiny-pw"), "the password is not echoed: {:#}", answer.body);
    let members = app.get(&format!("/v1/orgs/{org}/members")).await;
    assert_eq!(members.body["data"], json!([]), "nothing was added");
    assert_eq!(app.audit_count(&org).await, 0);
}
