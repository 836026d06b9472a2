//! The OpenAPI document of the HTTP API, generated from the handlers'
//! `#[utoipa::path]` annotations and served at `/openapi.json`.
//!
//! Two things are added to every operation here rather than repeated on
//! each handler: the error responses (every error has the same envelope,
//! [`ErrorBody`]) and the Bearer requirement (all but the public routes).

use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, ResponseBuilder};
use utoipa::{OpenApi as _, PartialSchema, ToSchema};

use super::error::ErrorBody;

/// Routes reachable without a token.
const PUBLIC: &[&str] = &[
    "/health",
    "/ready",
    "/openapi.json",
    "/api/auth/register",
    "/api/auth/login",
    "/api/auth/refresh",
    "/files/{file_id}",
];

/// Routes of the app backend: authorised by the backend token (scheme
/// `backend`), not by a user's JWT.
const BACKEND: &[&str] = &[
    "/api/system/notice",
    "/api/system/chatroom/{roomID}/join",
    "/api/system/chatroom/{roomID}/leave",
];

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "im-server HTTP API",
        description = "The JSON API of im-server (:8080). Every reply is `application/json` with the envelope `{code, message, data}`: `code` 0 on success; on errors `code` is the HTTP status and `error` a stable name. Times are milliseconds since the epoch."
    ),
    tags(
        (name = "auth", description = "register, login, refresh, logout"),
        (name = "users", description = "profiles"),
        (name = "friends", description = "friends, requests, blocklist"),
        (name = "groups", description = "groups and members"),
        (name = "conversations", description = "conversation list and history"),
        (name = "sync", description = "v1 HTTP sync"),
        (name = "files", description = "uploads and downloads"),
        (name = "chatrooms", description = "chat room join and leave"),
        (name = "backend", description = "calls of the app backend, authorised by the backend token (`backend.token`), not by a user's JWT"),
        (name = "ops", description = "health and readiness")
    )
)]
pub(super) struct ApiDoc;

/// The base document the routers add their paths to.
pub(super) fn base() -> OpenApi {
    ApiDoc::openapi()
}

/// Adds the error responses, the Bearer scheme and per-operation security.
pub(super) fn finish(mut doc: OpenApi) -> OpenApi {
    let components = doc.components.get_or_insert_with(Default::default);
    components
        .schemas
        .insert(ErrorBody::name().into_owned(), ErrorBody::schema());
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .build(),
        ),
    );
    components.add_security_scheme(
        "backend",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("the configured backend.token"))
                .build(),
        ),
    );
    for (path, item) in doc.paths.paths.iter_mut() {
        let public = PUBLIC.contains(&path.as_str());
        let scheme = if BACKEND.contains(&path.as_str()) {
            "backend"
        } else {
            "bearer"
        };
        let ops = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
        ];
        for op in ops.into_iter().flatten() {
            finish_operation(op, public, scheme);
        }
    }
    doc
}

fn finish_operation(op: &mut Operation, public: bool, scheme: &str) {
    let errors: &[(&str, &str)] = &[
        ("400", "invalid parameters"),
        ("401", "missing, invalid, expired or revoked token"),
        ("403", "not allowed"),
        ("404", "not found"),
        ("405", "method not allowed"),
        ("409", "conflicts with the current state"),
        ("413", "body too large"),
        ("415", "expected application/json"),
        ("429", "too many requests"),
        ("500", "internal error"),
        ("503", "a backend is unavailable"),
    ];
    for (status, description) in errors {
        if !op.responses.responses.contains_key(*status) {
            let response = ResponseBuilder::new()
                .description(*description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name(ErrorBody::name())))
                        .build(),
                )
                .build();
            op.responses
                .responses
                .insert((*status).to_owned(), response.into());
        }
    }
    if !public {
        op.security = Some(vec![SecurityRequirement::new(scheme, Vec::<String>::new())]);
    }
}

#[cfg(test)]
mod tests {
    use super::super::openapi_document;

    #[test]
    fn documents_every_route_with_errors_and_security() {
        let doc = openapi_document();
        let json = serde_json::to_value(&doc).unwrap();
        let paths = json["paths"].as_object().unwrap();
        for p in [
            "/api/auth/register",
            "/api/auth/login",
            "/api/auth/refresh",
            "/api/auth/logout",
            "/api/user/info/{userID}",
            "/api/user/info/batch",
            "/api/user/update",
            "/api/user/search",
            "/api/friend/add",
            "/api/friend/accept",
            "/api/friend/reject",
            "/api/friend/delete",
            "/api/friend/list",
            "/api/friend/check",
            "/api/friend/remark",
            "/api/friend/block",
            "/api/group/create",
            "/api/group/{groupID}",
            "/api/group/{groupID}/members",
            "/api/group/my/list",
            "/api/v1/messages/sync",
            "/messages/sync_range",
            "/api/conversations",
            "/api/messages/history",
            "/api/chatroom/{roomID}/join",
            "/api/chatroom/{roomID}/leave",
            "/api/system/notice",
            "/health",
            "/ready",
        ] {
            assert!(
                paths.contains_key(p),
                "{p} missing from the OpenAPI document"
            );
        }
        // /metrics is Prometheus text, not part of the JSON API: it stays out
        // of the document (and so out of the schemathesis fuzz).
        assert!(!paths.contains_key("/metrics"));
        // Request schemas are named by type: two handlers' `UpdateBody`s
        // once collided and the group update documented the profile's body.
        let schemas = json["components"]["schemas"].as_object().unwrap();
        let group_update = &schemas["GroupUpdateBody"]["properties"];
        assert!(group_update.get("groupID").is_some(), "{group_update}");
        assert!(
            schemas["ProfileUpdateBody"]["properties"]
                .get("nickname")
                .is_some()
        );
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                assert!(responses.contains_key("200"), "{method} {path}");
                assert!(responses.contains_key("401"), "{method} {path}");
                let secured = op.get("security").is_some();
                if super::BACKEND.contains(&path.as_str()) {
                    assert!(op["security"][0].get("backend").is_some(), "{path}");
                }
                assert_eq!(
                    secured,
                    !super::PUBLIC.contains(&path.as_str()),
                    "{method} {path}"
                );
            }
        }
    }
}
