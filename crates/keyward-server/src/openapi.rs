//! OpenAPI 3.1, generated from the handlers' annotations (utoipa), served at `/openapi.json`.

use axum::Json;
use utoipa::OpenApi;

use crate::api::{audit, keys, members, orgs, session};
use crate::verify;

#[derive(OpenApi)]
#[openapi(
    info(title = "keyward", description = "Issue, scope, restrict, sign, rate-limit, verify and revoke API keys."),
    paths(
        verify::verify, crate::gateway::authorize::authorize,
        orgs::create, orgs::add_phone_number, orgs::list_phone_numbers, orgs::add_channel, orgs::list_channels,
        keys::create, keys::list, keys::get, keys::update, keys::revoke, keys::roll, keys::lookup,
        members::add, members::list, members::remove, session::create, session::delete, audit::list,
    ),
    modifiers(&BearerAuth, &ProblemResponses),
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

/// Every error answers `application/problem+json`: document that once, for every operation,
/// with the statuses any request can meet (bad body, auth, size, type, database down).
struct ProblemResponses;

impl utoipa::Modify for ProblemResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
        let problem = || ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build();
        let common = [
            ("400", "Validation failed (`VALIDATION_FAILED`), naming the field"),
            ("401", "Missing or invalid credential (`UNAUTHENTICATED`)"),
            ("403", "Not allowed (`FORBIDDEN`, `CSRF_FAILED`)"),
            ("404", "Not found, or another organization's (`NOT_FOUND`)"),
            ("413", "Body over 1 MiB (`PAYLOAD_TOO_LARGE`)"),
            ("415", "Body is not JSON (`UNSUPPORTED_MEDIA_TYPE`)"),
            ("503", "Database unavailable (`SERVICE_UNAVAILABLE`)"),
        ];
        for item in openapi.paths.paths.values_mut() {
            let operations = [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete];
            for operation in operations.into_iter().flatten() {
                let responses = &mut operation.responses.responses;
                for (status, description) in common {
                    responses.entry(status.to_owned()).or_insert_with(|| {
                        RefOr::T(
                            ResponseBuilder::new()
                                .description(description)
                                .content("application/problem+json", problem())
                                .build(),
                        )
                    });
                }
                for (status, response) in responses.iter_mut() {
                    if let (true, RefOr::T(response)) = (status.as_str() >= "400", response) {
                        response.content.clear();
                        response.content.insert("application/problem+json".to_owned(), problem());
                    }
                }
            }
        }
    }
}

pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
