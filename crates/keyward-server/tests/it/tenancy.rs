//! Who may call what: the role × endpoint matrix inside one org, and the cross-tenant matrix
//! (org A's principals against org B's ids answer 404; only the operator gets through).

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::support::{spawn_app, Auth, TestApp};

/// Every org-scoped management endpoint (and the key lookup, whose org is the key's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    ListKeys,
    CreateKey,
    GetKey,
    PatchKey,
    RevokeKey,
    RollKey,
    LookupKey,
    ListPhoneNumbers,
    AddPhoneNumber,
    ListChannels,
    AddChannel,
    ListMembers,
    AddMember,
    RemoveMember,
    ListAudit,
}

use Endpoint::{
    AddChannel, AddMember, AddPhoneNumber, CreateKey, GetKey, ListAudit, ListChannels, ListKeys, ListMembers,
    ListPhoneNumbers, LookupKey, PatchKey, RemoveMember, RevokeKey, RollKey,
};

const ENDPOINTS: [Endpoint; 15] = [
    ListKeys,
    CreateKey,
    GetKey,
    PatchKey,
    RevokeKey,
    RollKey,
    LookupKey,
    ListPhoneNumbers,
    AddPhoneNumber,
    ListChannels,
    AddChannel,
    ListMembers,
    AddMember,
    RemoveMember,
    ListAudit,
];

impl Endpoint {
    /// The status of a successful call.
    fn success(self) -> StatusCode {
        match self {
            CreateKey | RollKey | AddPhoneNumber | AddChannel | AddMember => StatusCode::CREATED,
            RemoveMember => StatusCode::NO_CONTENT,
            _ => StatusCode::OK,
        }
    }

    fn is_read(self) -> bool {
        matches!(self, ListKeys | GetKey | LookupKey | ListPhoneNumbers | ListChannels)
    }

    fn is_members(self) -> bool {
        matches!(self, ListMembers | AddMember | RemoveMember)
    }

    /// Endpoints whose path or body names a key or member id (besides the org).
    fn names_a_resource(self) -> bool {
        matches!(self, GetKey | PatchKey | RevokeKey | RollKey | LookupKey | RemoveMember)
    }
}

/// The principals of one org.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Operator,
    Owner,
    Admin,
    User,
    ReadOnly,
    /// `[keys:write, messages:send]`, as `Authorization: Bearer`.
    WriteKeyBearer,
    /// The same key as `X-API-Key`.
    WriteKeyHeader,
    /// `[keys:read, messages:send]`.
    ReadKey,
    /// `[messages:send]` only.
    SendKey,
}

impl Who {
    /// Whether this principal may call `endpoint` in its own org.
    fn may(self, endpoint: Endpoint) -> bool {
        match self {
            Who::Operator | Who::Owner => true,
            Who::Admin => !endpoint.is_members(),
            Who::User | Who::ReadOnly | Who::SendKey => false,
            Who::WriteKeyBearer | Who::WriteKeyHeader => !endpoint.is_members() && endpoint != ListAudit,
            Who::ReadKey => endpoint.is_read(),
        }
    }
}

/// One org and long-lived things in it that requests can name.
struct Org {
    id: String,
    key_id: String,
    secret: String,
    member_id: String,
}

async fn org_with_resources(app: &TestApp, name: &str) -> Org {
    let id = app.create_org(name).await;
    let (key_id, secret) = app.key_with_scopes(&id, "resident", &["messages:send"]).await;
    let member_id = app.add_member(&id, &format!("resident@{}.example.com", name.to_lowercase()), "readonly").await;
    Org { id, key_id, secret, member_id }
}

/// Every principal of an org: members of each role (logged in) and keys.
async fn roster(app: &TestApp, org: &str, domain: &str) -> Vec<(Who, Auth)> {
    let mut roster = vec![(Who::Operator, Auth::Operator)];
    for (who, role) in [(Who::Owner, "owner"), (Who::Admin, "admin"), (Who::User, "user"), (Who::ReadOnly, "readonly")]
    {
        let (_, login) = app.member_session(org, &format!("{role}@{domain}"), role).await;
        roster.push((who, login.auth()));
    }
    let (_, write) = app.key_with_scopes(org, "manager", &["keys:write", "messages:send"]).await;
    let (_, read) = app.key_with_scopes(org, "reader", &["keys:read", "messages:send"]).await;
    let (_, send) = app.key_with_scopes(org, "sender", &["messages:send"]).await;
    roster.push((Who::WriteKeyBearer, Auth::Bearer(write.clone())));
    roster.push((Who::WriteKeyHeader, Auth::ApiKey(write)));
    roster.push((Who::ReadKey, Auth::Bearer(read)));
    roster.push((Who::SendKey, Auth::Bearer(send)));
    roster
}

/// A request to `endpoint` under `/v1/orgs/{path_org}` naming resources of `target`. With
/// `fresh`, calls that change or remove a key or member get a new one (created by the operator in
/// `target`), so a row that succeeds does not spoil the next; otherwise they name `target`'s
/// resident key and member, which a refused call must leave alone.
async fn prepare(
    app: &TestApp,
    endpoint: Endpoint,
    path_org: &str,
    target: &Org,
    fresh: bool,
    n: usize,
) -> (Method, String, Option<Value>) {
    let base = format!("/v1/orgs/{path_org}");
    let key = if fresh && matches!(endpoint, PatchKey | RevokeKey | RollKey) {
        app.key_with_scopes(&target.id, &format!("target {n}"), &["messages:send"]).await.0
    } else {
        target.key_id.clone()
    };
    let member = if fresh && endpoint == RemoveMember {
        app.add_member(&target.id, &format!("leaver{n}@example.com"), "readonly").await
    } else {
        target.member_id.clone()
    };
    match endpoint {
        ListKeys => (Method::GET, format!("{base}/keys"), None),
        CreateKey => (Method::POST, format!("{base}/keys"), Some(json!({ "name": format!("new {n}") }))),
        GetKey => (Method::GET, format!("{base}/keys/{key}"), None),
        PatchKey => (Method::PATCH, format!("{base}/keys/{key}"), Some(json!({ "name": "renamed" }))),
        RevokeKey => (Method::POST, format!("{base}/keys/{key}/revoke"), None),
        RollKey => (Method::POST, format!("{base}/keys/{key}/roll"), Some(json!({ "grace_seconds": 0 }))),
        LookupKey => (Method::POST, "/v1/keys/lookup".to_owned(), Some(json!({ "key": target.secret }))),
        ListPhoneNumbers => (Method::GET, format!("{base}/phone-numbers"), None),
        AddPhoneNumber => (
            Method::POST,
            format!("{base}/phone-numbers"),
            Some(json!({ "number": format!("+1415555{:04}", 200 + n) })),
        ),
        ListChannels => (Method::GET, format!("{base}/channels"), None),
        AddChannel => {
            (Method::POST, format!("{base}/channels"), Some(json!({ "slug": format!("channel-{n}"), "name": "C" })))
        }
        ListMembers => (Method::GET, format!("{base}/members"), None),
        AddMember => (
            Method::POST,
            format!("{base}/members"),
            Some(
                json!({ "email": format!("new{n}@example.com"), "password": super::support::PASSWORD, "role": "user" }),
            ),
        ),
        RemoveMember => (Method::DELETE, format!("{base}/members/{member}"), None),
        ListAudit => (Method::GET, format!("{base}/audit"), None),
    }
}

/// Runs one row: prepares, sends, and returns a description of any mismatch. A refused call
/// must leave the target org's audit chain (every change writes an event) as it was.
async fn check(
    app: &TestApp,
    (who, auth): &(Who, Auth),
    endpoint: Endpoint,
    path_org: &str,
    target: &Org,
    expected: (StatusCode, &str),
    n: usize,
) -> Option<String> {
    let (status, code) = expected;
    let (method, path, body) = prepare(app, endpoint, path_org, target, status.is_success(), n).await;
    let before = app.audit_count(&target.id).await;
    let answer = app.call(auth, method.clone(), &path, body.as_ref()).await;
    let after = app.audit_count(&target.id).await;
    let mut problems = Vec::new();
    if answer.status != status {
        problems.push(format!("status {} (expected {status})", answer.status));
    } else if !code.is_empty() && (answer.body["code"] != code || answer.content_type != "application/problem+json") {
        problems.push(format!("code {} (expected {code})", answer.body["code"]));
    }
    if !status.is_success() && after != before {
        problems.push(format!("a refused call changed something: {before} → {after} audit events"));
    }
    (!problems.is_empty())
        .then(|| format!("{who:?} {endpoint:?} {method} {path}: {} — {}", problems.join("; "), answer.body))
}

#[tokio::test]
async fn owners_and_admins_manage_keys_and_everyone_else_gets_403_in_their_own_org() {
    let app = spawn_app().await;
    let org = org_with_resources(&app, "Alpha").await;
    let roster = roster(&app, &org.id, "alpha.example.com").await;
    let mut failures = Vec::new();
    let mut n = 0;
    for principal in &roster {
        for endpoint in ENDPOINTS {
            n += 1;
            let expected =
                if principal.0.may(endpoint) { (endpoint.success(), "") } else { (StatusCode::FORBIDDEN, "FORBIDDEN") };
            failures.extend(check(&app, principal, endpoint, &org.id, &org, expected, n).await);
        }
    }
    assert!(failures.is_empty(), "{} of {n} rows failed:\n{}", failures.len(), failures.join("\n"));
}

#[tokio::test]
async fn every_principal_of_one_org_gets_404_for_every_endpoint_of_another_and_the_operator_gets_through() {
    let app = spawn_app().await;
    let a = org_with_resources(&app, "Alpha").await;
    let b = org_with_resources(&app, "Beta").await;
    let roster = roster(&app, &a.id, "alpha.example.com").await;
    let mut failures = Vec::new();
    let mut n = 0;
    for principal in &roster {
        for endpoint in ENDPOINTS {
            n += 1;
            let expected = if principal.0 == Who::Operator {
                (endpoint.success(), "")
            } else if endpoint == LookupKey && !principal.0.may(LookupKey) {
                // Lookup names no org: a principal that may not look keys up at all is refused first.
                (StatusCode::FORBIDDEN, "FORBIDDEN")
            } else {
                (StatusCode::NOT_FOUND, "NOT_FOUND")
            };
            failures.extend(check(&app, principal, endpoint, &b.id, &b, expected, n).await);
        }
    }
    assert!(failures.is_empty(), "{} of {n} rows failed:\n{}", failures.len(), failures.join("\n"));

    // Org B's resident key and member are untouched.
    let key = app.get(&format!("/v1/orgs/{}/keys/{}", b.id, b.key_id)).await;
    assert_eq!(key.body["key"]["status"], "active");
    assert_eq!(key.body["key"]["name"], "resident");
    let members = app.get(&format!("/v1/orgs/{}/members", b.id)).await;
    assert!(members.body["data"].as_array().unwrap().iter().any(|m| m["id"] == b.member_id.as_str()));
}

#[tokio::test]
async fn another_orgs_key_or_member_id_under_ones_own_org_is_404_even_for_those_allowed_to_act() {
    let app = spawn_app().await;
    let a = org_with_resources(&app, "Alpha").await;
    let b = org_with_resources(&app, "Beta").await;
    let roster = roster(&app, &a.id, "alpha.example.com").await;
    let mut failures = Vec::new();
    let mut n = 0;
    for principal in &roster {
        for endpoint in ENDPOINTS.into_iter().filter(|e| e.names_a_resource()) {
            // Those refused the endpoint outright are covered by the role matrix.
            if !principal.0.may(endpoint) {
                continue;
            }
            n += 1;
            let expected = if principal.0 == Who::Operator {
                (endpoint.success(), "")
            } else {
                (StatusCode::NOT_FOUND, "NOT_FOUND")
            };
            let path_org = if principal.0 == Who::Operator { &b.id } else { &a.id };
            failures.extend(check(&app, principal, endpoint, path_org, &b, expected, n).await);
        }
    }
    assert!(n >= 20, "the table covers owners, admins and keys: {n} rows");
    assert!(failures.is_empty(), "{} of {n} rows failed:\n{}", failures.len(), failures.join("\n"));
}

#[tokio::test]
async fn an_unknown_or_malformed_org_id_is_404_for_everyone_including_the_operator() {
    let app = spawn_app().await;
    let a = org_with_resources(&app, "Alpha").await;
    let roster = roster(&app, &a.id, "alpha.example.com").await;
    let unknown = keyward_core::ids::OrgId::generate(&mut rand::thread_rng()).to_string();
    let mut failures = Vec::new();
    for principal in &roster {
        for bad in [unknown.as_str(), "not-an-org", "org_", "key_0000000000000000"] {
            for endpoint in ENDPOINTS.into_iter().filter(|e| *e != LookupKey) {
                let (method, path, body) = prepare(&app, endpoint, bad, &a, false, 0).await;
                let answer = app.call(&principal.1, method.clone(), &path, body.as_ref()).await;
                if answer.status != StatusCode::NOT_FOUND || answer.body["code"] != "NOT_FOUND" {
                    failures.push(format!("{:?} {method} {path}: {} {}", principal.0, answer.status, answer.body));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} rows failed:\n{}", failures.len(), failures.join("\n"));
}

#[tokio::test]
async fn without_any_credential_every_endpoint_answers_401() {
    let app = spawn_app().await;
    let a = org_with_resources(&app, "Alpha").await;
    for endpoint in ENDPOINTS {
        let (method, path, body) = prepare(&app, endpoint, &a.id, &a, false, 0).await;
        for auth in [Auth::Anonymous, Auth::Bearer("kw_live_made_up_key".to_owned())] {
            let answer = app.call(&auth, method.clone(), &path, body.as_ref()).await;
            answer.assert_problem(401, "UNAUTHENTICATED");
        }
    }
}

#[tokio::test]
async fn only_the_operator_creates_orgs() {
    let app = spawn_app().await;
    let a = org_with_resources(&app, "Alpha").await;
    let roster = roster(&app, &a.id, "alpha.example.com").await;
    for (who, auth) in &roster {
        let answer = app.call(auth, Method::POST, "/v1/orgs", Some(&json!({ "name": "Mine" }))).await;
        if *who == Who::Operator {
            assert_eq!(answer.status, StatusCode::CREATED, "{:#}", answer.body);
        } else {
            answer.assert_problem(403, "FORBIDDEN");
        }
    }
}
