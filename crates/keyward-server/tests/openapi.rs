//! The committed `docs/openapi.json` is the API contract: it must match what the code generates.
//! After an intended change, regenerate it with `UPDATE_OPENAPI=1 cargo test -p keyward-server --test openapi`.

use utoipa::OpenApi as _;

#[test]
fn committed_openapi_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    let generated = keyward_server::openapi::ApiDoc::openapi().to_pretty_json().expect("OpenAPI serializes") + "\n";
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(path, &generated).expect("write docs/openapi.json");
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json is out of date: run UPDATE_OPENAPI=1 cargo test -p keyward-server --test openapi"
    );
}
