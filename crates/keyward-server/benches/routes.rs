//! `RouteTable::find`, called on every gateway request: a table of a few hundred routes must stay
//! well under a microsecond. `cargo bench -p keyward-server --bench routes`.

use std::fmt::Write as _;
use std::hint::black_box;

use axum::http::Method;
use criterion::{criterion_group, criterion_main, Criterion};
use keyward_server::config::Config;
use keyward_server::gateway::routes::RouteTable;

/// 400 routes in 100 resources: a collection, an item with two methods, and a nested item.
fn table() -> RouteTable {
    let mut text = String::from("[gateway]\nlisten = \"127.0.0.1:8443\"\nupstream = \"http://127.0.0.1:9000\"\n");
    let mut route = |method: &str, path: String| {
        write!(text, "[[gateway.routes]]\nmethod = \"{method}\"\npath = \"{path}\"\nscopes = [\"messages:send\"]\n")
            .expect("writing to a String");
    };
    for n in 0..100 {
        route("POST", format!("/v1/resource{n}"));
        route("GET", format!("/v1/resource{n}/{{id}}"));
        route("PATCH", format!("/v1/resource{n}/{{id}}"));
        route("GET", format!("/v1/resource{n}/{{id}}/items/{{item}}"));
    }
    let config = Config::from_toml(&text).expect("the bench's config is valid");
    config.gateway.expect("it has a [gateway]").routes
}

fn find(c: &mut Criterion) {
    let routes = table();
    let mut group = c.benchmark_group("route_find");
    for (name, method, path) in [
        ("found_collection", Method::POST, "/v1/resource57"),
        ("found_nested", Method::GET, "/v1/resource99/key_0123456789/items/item_42"),
        ("other_method", Method::DELETE, "/v1/resource42/key_0123456789"),
        ("not_found", Method::GET, "/v1/unknown/key_0123456789"),
    ] {
        group.bench_function(name, |b| b.iter(|| black_box(routes.find(black_box(&method), black_box(path)))));
    }
    group.finish();
}

criterion_group!(benches, find);
criterion_main!(benches);
