//! The OpenAPI 3.1 document (SPEC §12). Each resource module describes its own routes next to
//! their handlers (`#[utoipa::path]` plus a `Docs` list, as each module exports its own
//! `router()`); this module joins them with the shared parts: info, tags, security schemes and
//! the reusable error responses. `ops.rs` serves the result at `/openapi.json`, and the API tests
//! snapshot it so every API change shows in review.

use crate::http::{admin, calls, keys, ops, org, public, schemas, telephony, workflow};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The whole API. No `servers` entry: clients (and `/docs`) use the origin they reached, which
/// is right behind proxies and for any `CALLGATE_PUBLIC_URL`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "callgate",
        description = "Places AI voice-agent phone calls on request: a Dograh-compatible trigger \
            API, a VoiceInfra-compatible outbound API, runs with their results, and the \
            management of agents, API keys, telephony configurations and organisations.\n\n\
            Every error is RFC 9457 problem JSON (`application/problem+json`) with a stable \
            snake_case `code`; validation errors add `errors[]` with a JSON Pointer per field.\n\n\
            Authentication: `X-API-Key` for organisation routes, `Authorization: Bearer <admin \
            token>` for instance administration."
    ),
    components(responses(
        schemas::Unauthorized,
        schemas::AdminScopeRequired,
        schemas::InvalidAdminToken,
        schemas::PayloadTooLarge,
        schemas::InternalError,
        schemas::Unavailable
    )),
    modifiers(&SecuritySchemes, &Routes),
    tags(
        (name = "Public triggers", description = "Start a call through an agent's trigger path or UUID (SPEC §2)."),
        (name = "Calls", description = "Place calls and follow their runs (SPEC §3, §4)."),
        (name = "Workflow runs", description = "Dograh-compatible run views (SPEC §4)."),
        (name = "Workflows", description = "Agents, their definition versions and trigger URLs (SPEC §6)."),
        (name = "API keys", description = "The organisation's API keys (SPEC §6.3, §11)."),
        (name = "Telephony", description = "Provider configurations and caller-ID numbers (SPEC §7)."),
        (name = "Organization", description = "Capacity settings, quota and live usage (SPEC §8.2, §9)."),
        (name = "Admin", description = "Instance administration behind the admin token (SPEC §6.4)."),
        (name = "Operations", description = "Health, readiness, metrics and these docs (SPEC §12).")
    )
)]
pub struct ApiDoc;

/// The two ways to authenticate (SPEC §6.4, §11).
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "An organisation API key (`cg_…`); admin-scoped keys may also manage agents, keys \
                 and configurations.",
            ))),
        );
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The instance admin token from the server configuration \
                         (`CALLGATE_ADMIN_TOKEN`); without one the admin API answers 404.",
                    ))
                    .build(),
            ),
        );
    }
}

/// Every resource module's routes, in the order `http::router` merges them.
struct Routes;

impl Modify for Routes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for part in [
            public::Docs::openapi(),
            calls::Docs::openapi(),
            workflow::Docs::openapi(),
            keys::Docs::openapi(),
            telephony::Docs::openapi(),
            org::Docs::openapi(),
            admin::Docs::openapi(),
            ops::Docs::openapi(),
        ] {
            openapi.merge(part);
        }
    }
}
