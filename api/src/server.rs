//! The HTTP side: binding, the router, health, and orderly shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, Method, Uri};
use axum::middleware;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::Verifier;
use crate::cache::{Cache, X_CACHE};
use crate::db::{Db, Sql};
use crate::error::Problem;
use crate::limit::Limiter;
use crate::{access, auth, metrics, openapi, rest, udf, ApiConfig, ApiError, ApiSettings};

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) db: Db,
    pub(crate) settings: ApiSettings,
    /// API tokens: `[auth]` keys, `api.audience`, `api.scope`.
    pub(crate) verifier: Verifier,
    /// Per-client rate limits.
    pub(crate) limiter: Limiter,
    /// Hot answers in Redis.
    pub(crate) cache: Cache,
}

/// A bound, not yet serving API. Binding first lets callers (tests) listen on port 0 and
/// learn the address before serving.
#[derive(Debug)]
pub struct ApiServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    app: Arc<App>,
    jwks_reload: std::time::Duration,
}

impl ApiServer {
    /// Checks the configuration, creates the pool (connections open on demand) and binds
    /// the listener.
    pub async fn bind(config: ApiConfig) -> Result<ApiServer, ApiError> {
        config.validate()?;
        let db = Db::new(&config)?;
        let verifier = Verifier::new(Arc::new(config.keys()?), &config.settings.scope);
        let limiter = Limiter::new(
            config.settings.requests_per_sec,
            config.settings.requests_burst,
        );
        let cache = Cache::new(&config)?;
        let addr = config.settings.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ApiError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ApiError::Bind { addr, source })?;
        metrics::describe();
        Ok(ApiServer {
            listener,
            local_addr,
            app: Arc::new(App {
                db,
                settings: config.settings,
                verifier,
                limiter,
                cache,
            }),
            jwks_reload: config.auth.jwks_reload(),
        })
    }

    /// The address actually bound (the port chosen when the configuration said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` is cancelled, then stops accepting and lets requests in
    /// flight finish.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), ApiError> {
        let keys = self.app.verifier.keys();
        let router = router(self.app)?;
        // Rotated JWKS keys are picked up as push picks them up (nothing without a file).
        let watch = tokio::spawn(keys.watch_jwks(self.jwks_reload, shutdown.child_token()));
        let served = axum::serve(
            self.listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await
        .map_err(ApiError::Serve);
        watch.abort();
        served
    }
}

/// Every route, and the layers around them, outermost first:
///
/// 1. request id and access log (`access`), then metrics (`metrics`): every answer;
/// 2. CORS (when `api.cors_origins` names origins): preflights answered here, headers on
///    every answer, errors included, so a browser can read a 401 or a 429;
/// 3. `auth::identify`: verifies a token when one is sent and applies the caller's rate
///    limit — on everything but `/healthz` and `/readyz` (routed outside it: probes are
///    never limited);
/// 4. `auth::require` on the data routes (`/api/v1/…` but the OpenAPI document, `/udf/…`):
///    401 without a valid API token, 403 without the scope. The OpenAPI document (and the
///    dashboard's static files) are open.
fn router(app: Arc<App>) -> Result<Router, ApiError> {
    let data = rest::routes()
        .merge(udf::routes())
        .route_layer(middleware::from_fn_with_state(app.clone(), auth::require));
    let router = Router::new()
        .merge(data)
        .route(openapi::OPENAPI.path, get(openapi::document))
        // The dashboard (api/src/dashboard.rs: static files at `/`, open) is merged here.
        .merge(crate::dashboard::router())
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(app.clone(), auth::identify))
        .route(openapi::HEALTHZ.path, get(healthz))
        .route(openapi::READYZ.path, get(readyz))
        .method_not_allowed_fallback(method_not_allowed);
    let router = match cors(&app.settings)? {
        Some(layer) => router.layer(layer),
        None => router,
    };
    Ok(router
        .layer(middleware::from_fn(metrics::track))
        .layer(middleware::from_fn(access::track))
        .with_state(app))
}

/// The CORS layer of `api.cors_origins` (none: no layer, no CORS headers). Tokens travel in
/// `Authorization`, not cookies, so credentials are not allowed.
fn cors(settings: &ApiSettings) -> Result<Option<CorsLayer>, ApiError> {
    let Some(origins) = settings.cors()? else {
        return Ok(None);
    };
    let allow = match origins {
        None => AllowOrigin::any(),
        Some(list) => AllowOrigin::list(list),
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::HEAD])
            .allow_headers([header::AUTHORIZATION, access::X_REQUEST_ID])
            .expose_headers([
                access::X_REQUEST_ID,
                header::RETRY_AFTER,
                header::WWW_AUTHENTICATE,
                header::HeaderName::from_static(X_CACHE),
            ])
            .max_age(std::time::Duration::from_secs(600)),
    ))
}

/// `GET /healthz`: the process answers (no database involved).
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

const PING: Sql = Sql {
    name: "ping",
    text: "SELECT 1",
    types: &[],
};

/// `GET /readyz`: PostgreSQL answers a statement through the pool (503 otherwise).
async fn readyz(State(app): State<Arc<App>>) -> Result<Json<serde_json::Value>, Problem> {
    app.db.query(&PING, &[]).await?;
    Ok(Json(json!({"status": "ready"})))
}

async fn no_route(uri: Uri) -> Problem {
    Problem::no_route(uri.path())
}

async fn method_not_allowed() -> Problem {
    Problem::method_not_allowed()
}
