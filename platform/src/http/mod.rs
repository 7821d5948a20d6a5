//! The HTTP surface: health, login, and the two GraphQL endpoints. Handlers stay thin: they
//! authenticate, hand the request to a schema, and shape errors the way the API promises.

use std::net::SocketAddr;
use std::sync::Arc;

use async_graphql::{ErrorExtensionValues, Response};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response as HttpResponse};
use axum::routing::{get, post};
use serde_json::json;

use crate::auth::{self, AuthError};
use crate::graphql::data_schema::DataContext;
use crate::graphql::{Caller, explain_forbidden};
use crate::server::AppState;

mod client_addr;
mod idle;

pub use client_addr::{TrustedProxies, parse_trusted_proxy};
pub use idle::SETTLED;

pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.max_body_bytes;
    let store = state.store.clone();
    // Once settled, the server empties SQLite's page caches (and then releases what that freed).
    let settle: idle::Settle = Arc::new(move || {
        let store = store.clone();
        Box::pin(async move { store.shrink_caches().await })
    });
    let idle = idle::IdleRelease::new(tessera_alloc::release, idle::SETTLED, settle);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/auth/login", post(login).layer(DefaultBodyLimit::max(auth::LOGIN_MAX_BODY_BYTES)))
        .route("/graphql", post(data_api))
        .route("/graphql/metadata", post(metadata_api))
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(idle, idle::track))
        .with_state(state)
}

fn error_body(code: &str, message: &str) -> serde_json::Value {
    json!({ "errors": [{ "message": message, "extensions": { "code": code } }] })
}

async fn healthz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, Json(json!({ "status": "ok" }))),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "unavailable" }))),
    }
}

#[derive(serde::Deserialize)]
struct LoginRequest {
    email: String,
    password: String,
}

async fn login(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> HttpResponse {
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let message = format!("a sign-in request has at most {} bytes", auth::LOGIN_MAX_BODY_BYTES);
            return (StatusCode::PAYLOAD_TOO_LARGE, Json(error_body("BAD_USER_INPUT", &message))).into_response();
        }
        Err(e) => return e.into_response(),
    };
    let Ok(req) = serde_json::from_slice::<LoginRequest>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(error_body("BAD_USER_INPUT", "expected JSON {\"email\", \"password\"}")),
        )
            .into_response();
    };
    let client = state.trusted_proxies.client(peer.ip(), &headers);
    match state.login.sign_in(&req.email, &req.password, client).await {
        Ok(token) => (StatusCode::OK, Json(json!({ "token": token }))).into_response(),
        Err(e @ AuthError::BadCredentials) => {
            (StatusCode::UNAUTHORIZED, Json(error_body("UNAUTHENTICATED", &e.to_string()))).into_response()
        }
        Err(e @ AuthError::Invalid(_)) => {
            (StatusCode::BAD_REQUEST, Json(error_body("BAD_USER_INPUT", &e.to_string()))).into_response()
        }
        Err(e @ AuthError::Throttled { retry_after }) => {
            retry_later(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", &e.to_string(), retry_after)
        }
        Err(e @ AuthError::Busy { retry_after }) => {
            retry_later(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", &e.to_string(), retry_after)
        }
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, Json(error_body("INTERNAL_SERVER_ERROR", "internal error")))
            .into_response(),
    }
}

/// An answer to try again after `after` (whole seconds in `Retry-After`, at least one).
fn retry_later(status: StatusCode, code: &str, message: &str, after: std::time::Duration) -> HttpResponse {
    let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
    (status, [(header::RETRY_AFTER, seconds.max(1).to_string())], Json(error_body(code, message))).into_response()
}

async fn caller(state: &AppState, headers: &HeaderMap) -> Result<Caller, (StatusCode, Json<serde_json::Value>)> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let unauthenticated =
        || (StatusCode::UNAUTHORIZED, Json(error_body("UNAUTHENTICATED", "missing or invalid bearer token")));
    let Some(token) = token else { return Err(unauthenticated()) };
    match auth::authenticate(&state.store, &state.access.tokens, token).await {
        Ok(c) => Ok(c),
        Err(AuthError::Internal) => {
            Err((StatusCode::INTERNAL_SERVER_ERROR, Json(error_body("INTERNAL_SERVER_ERROR", "internal error"))))
        }
        Err(_) => Err(unauthenticated()),
    }
}

/// The request's id for the sensitive access log: the client's `X-Request-Id` when it is a
/// short printable token (so a proxy's id ties the log to its own), otherwise a new one.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

fn parse_request(body: &Bytes) -> Result<async_graphql::Request, (StatusCode, Json<serde_json::Value>)> {
    serde_json::from_slice::<async_graphql::Request>(body).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            Json(error_body("BAD_USER_INPUT", &format!("the body is not a GraphQL request: {e}"))),
        )
    })
}

/// Every error reaching a client carries a code: errors raised by GraphQL itself (syntax,
/// validation, depth and complexity limits, argument coercion) are the client's input. The
/// response is then written as it is, its fields in the order the query asked for them (as the
/// GraphQL specification requires; a `serde_json::Value` in between would sort them by name).
fn with_codes(mut response: Response) -> HttpResponse {
    for e in &mut response.errors {
        let has_code = e.extensions.as_ref().is_some_and(|x| x.get("code").is_some());
        if !has_code {
            let mut ext = e.extensions.take().unwrap_or_else(ErrorExtensionValues::default);
            ext.set("code", "BAD_USER_INPUT");
            e.extensions = Some(ext);
        }
    }
    Json(response).into_response()
}

async fn data_api(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> HttpResponse {
    let caller = match caller(&state, &headers).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let request = match parse_request(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let mut caller = caller.for_request(request_id(&headers));
    // One snapshot for the whole request: a metadata change meanwhile does not affect it.
    let snapshot = state.metadata.current();
    caller.access = state.access.profile(&caller.roles, &snapshot.registry).await;
    let Ok(schema) = snapshot.schema_for(&caller.access) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, Json(error_body("INTERNAL_SERVER_ERROR", "internal error")))
            .into_response();
    };
    let access = caller.access.clone();
    // Kept to explain validation errors caused by the caller's narrower schema.
    let query = if access.is_admin() { String::new() } else { request.query.clone() };
    let request = request.data(DataContext { caller, store: state.records.clone() });
    // A request answered `TIMEOUT` has its SQLite statements interrupted too, which frees their
    // connections; PostgreSQL's `statement_timeout` is the request timeout.
    let work = crate::store::interruptible(schema.execute(request));
    match tokio::time::timeout(state.request_timeout, work).await {
        Ok(mut response) => {
            if !response.errors.is_empty() {
                explain_forbidden(&mut response, &query, &snapshot.registry, &access);
            }
            with_codes(response)
        }
        Err(_) => {
            (StatusCode::OK, Json(error_body("TIMEOUT", "the request took too long and was cancelled"))).into_response()
        }
    }
}

async fn metadata_api(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> HttpResponse {
    let mut caller = match caller(&state, &headers).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    caller.request_id = Some(request_id(&headers));
    if !caller.is_admin() {
        return (StatusCode::FORBIDDEN, Json(error_body("FORBIDDEN", "the metadata API is for admins")))
            .into_response();
    }
    let request = match parse_request(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let response = state.metadata_schema.execute(request.data(caller)).await;
    with_codes(response)
}
