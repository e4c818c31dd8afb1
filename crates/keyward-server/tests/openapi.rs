//! The committed `docs/openapi.json` is the API contract: it must match what the code generates.
//! After an intended change, regenerate it with `UPDATE_OPENAPI=1 cargo test -p keyward-server --test openapi`.

#[test]
fn committed_openapi_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    let document = keyward_server::openapi::default_document();
    let generated = serde_json::to_string_pretty(&document).expect("OpenAPI serializes") + "\n";
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(path, &generated).expect("write docs/openapi.json");
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json is out of date: run UPDATE_OPENAPI=1 cargo test -p keyward-server --test openapi"
    );
}

/// Every rule the table states lands on a property the annotations generate: a renamed field
/// must not silently lose its rules.
#[test]
fn every_field_rule_reaches_its_schema() {
    let document = keyward_server::openapi::default_document();
    let schemas = &document["components"]["schemas"];
    assert_eq!(schemas["CreateKey"]["properties"]["rate_limit"]["maximum"], 1000);
    assert_eq!(schemas["CreateKey"]["properties"]["scopes"]["items"]["enum"][0], "messages:send");
    assert_eq!(schemas["AddMember"]["properties"]["role"]["enum"][3], "readonly");
    assert_eq!(schemas["AddChannel"]["properties"]["slug"]["pattern"], "^[a-z0-9-]{1,64}$");
    let verify_200 = &document["paths"]["/v1/verify"]["post"]["responses"]["200"];
    assert_eq!(verify_200["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/VerifyAnswer");
    let keys_list = document["paths"]["/v1/orgs/{org}/keys"]["get"]["parameters"].as_array().expect("parameters");
    let limit = keys_list.iter().find(|p| p["name"] == "limit").expect("limit");
    assert_eq!((&limit["in"], &limit["schema"]["maximum"]), (&"query".into(), &100.into()));
}
