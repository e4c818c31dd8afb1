//! The operator's config file shapes keys and limits.

use keyward_server::config::Config;
use serde_json::json;

use super::support::spawn_app_with;

#[tokio::test]
async fn configured_prefix_catalogue_and_default_limit_apply() {
    let config = Config::from_toml(
        r#"
key_prefix = "sflo"
default_rate_limit = 3
max_name_length = 10
scopes = ["sms.send", "sms.read"]
default_scopes = ["sms.send"]
"#,
    )
    .unwrap();
    let app = spawn_app_with(config).await;
    let org = app.create_org("Acme").await;
    let created = app.create_key(&org, &json!({ "name": "short" })).await;
    let secret = created["secret"].as_str().unwrap();
    assert!(secret.starts_with("sflo_live_"), "{secret}");
    assert_eq!(created["key"]["scopes"], json!(["sms.send"]));

    let too_long = app.post(&format!("/v1/orgs/{org}/keys"), &json!({ "name": "eleven char" })).await;
    too_long.assert_problem(400, "VALIDATION_FAILED");
    let unknown = app.post(&format!("/v1/orgs/{org}/keys"), &json!({ "name": "k", "scopes": ["messages:send"] })).await;
    assert!(unknown.field_error("scopes").is_some(), "{:#}", unknown.body);
    let reserved = app.create_key(&org, &json!({ "name": "admin", "scopes": ["keys:write"] })).await;
    assert_eq!(reserved["key"]["scopes"], json!(["keys:write"]), "keys:* are always in the catalogue");

    let codes: Vec<String> = verify_codes(&app, secret, 4).await;
    assert_eq!(codes, ["VALID", "VALID", "VALID", "RATE_LIMITED"], "default limit of 3/s");
    let kw_key = "kw_live_0123456789ABCDEFGHIJabcdefghijKL1WMpTT";
    assert_eq!(
        app.verify(&json!({ "key": kw_key })).await["code"],
        "INVALID_API_KEY",
        "another prefix is malformed here"
    );
}

async fn verify_codes(app: &super::support::TestApp, key: &str, n: usize) -> Vec<String> {
    let mut codes = Vec::new();
    for _ in 0..n {
        codes.push(app.verify(&json!({ "key": key })).await["code"].as_str().unwrap().to_owned());
    }
    codes
}

#[test]
fn bad_config_files_name_the_line_and_the_reason() {
    let cases = [
        ("key_prefix = 5", "line 1"),
        ("\n\ndefault_rate_limit = 0", "default_rate_limit"),
        ("scopes = [\"Bad Scope\"]", "Bad Scope"),
        ("default_scopes = [\"nope\"]", "nope"),
        ("trusted_proxies = [\"10.0.0.0/33\"]", "trusted_proxies"),
        ("signature_header = \"bad header\"", "signature_header"),
        ("unknown_field = 1", "unknown_field"),
        ("signature_tolerance_seconds = 0", "signature_tolerance_seconds"),
    ];
    for (text, mentions) in cases {
        let error = Config::from_toml(text).unwrap_err().to_string();
        assert!(error.contains(mentions), "{text:?} → {error}");
        assert_eq!(error.lines().count(), 1, "{error}");
    }
    // A [gateway] section keyward cannot serve stops the start instead of being ignored.
    let gateway = Config::from_toml("[gateway]\nlisten = \"127.0.0.1:8443\"\n").unwrap_err().to_string();
    assert!(gateway.contains("upstream"), "{gateway}");
}
