//! OpenAPI 3.1, generated from the handlers' annotations (utoipa), served at `/openapi.json`.

use axum::Json;
use utoipa::OpenApi;

use crate::api::{audit, keys, members, orgs, session};
use crate::verify;

#[derive(OpenApi)]
#[openapi(
    info(title = "keyward", description = "Issue, scope, restrict, sign, rate-limit, verify and revoke API keys."),
    paths(
        verify::verify,
        orgs::create, orgs::add_phone_number, orgs::list_phone_numbers, orgs::add_channel, orgs::list_channels,
        keys::create, keys::list, keys::get, keys::update, keys::revoke, keys::roll, keys::lookup,
        members::add, members::list, members::remove, session::create, session::delete, audit::list,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
