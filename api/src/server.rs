//! The HTTP side: binding, the router, health, and orderly shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::Uri;
use axum::middleware;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::db::{Db, Sql};
use crate::error::Problem;
use crate::{metrics, openapi, rest, udf, ApiConfig, ApiError, ApiSettings};

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) db: Db,
    pub(crate) settings: ApiSettings,
}

/// A bound, not yet serving API. Binding first lets callers (tests) listen on port 0 and
/// learn the address before serving.
#[derive(Debug)]
pub struct ApiServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    app: Arc<App>,
}

impl ApiServer {
    /// Checks the configuration, creates the pool (connections open on demand) and binds
    /// the listener.
    pub async fn bind(config: ApiConfig) -> Result<ApiServer, ApiError> {
        config.validate()?;
        let db = Db::new(&config)?;
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
            }),
        })
    }

    /// The address actually bound (the port chosen when the configuration said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` is cancelled, then stops accepting and lets requests in
    /// flight finish.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), ApiError> {
        let router = router(self.app);
        axum::serve(self.listener, router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .map_err(ApiError::Serve)
    }
}

/// Every route. Authentication (a JWT with an `api` scope, issue 11) is meant to wrap the
/// `/api/v1` and `/udf` routes as one `route_layer` here, leaving `/healthz`, `/readyz` and
/// the OpenAPI document open; caching and rate limits would be layers in the same place.
fn router(app: Arc<App>) -> Router {
    let data = rest::routes().merge(udf::routes());
    Router::new()
        .merge(data)
        .route(openapi::OPENAPI.path, get(openapi::document))
        .route(openapi::HEALTHZ.path, get(healthz))
        .route(openapi::READYZ.path, get(readyz))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(metrics::track))
        .with_state(app)
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
