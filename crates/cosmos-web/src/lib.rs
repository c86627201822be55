//! cosmos-web: `cosmos serve`'s HTTP front end over the one engine (DESIGN.md §2, §5). REST
//! under `/api/v1` (one module per resource), live events over a WebSocket, an OpenAPI
//! document generated from the handlers and their types, Prometheus metrics, and the guard
//! every request passes (DESIGN.md §3 invariant 8). Handlers parse, call one engine
//! workflow and render; none decides anything or touches the store.
//!
//! Must not depend on cosmos-cli.

mod api;
mod cache;
mod error;
mod files;
mod guard;
mod hub;
mod metrics;
mod observe;
mod ui;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use cosmos_core::RunParams;
use cosmos_engine::{LaunchDefaults, Services};

pub use error::{ApiError, ErrorBody};
pub use guard::{Access, SESSION_COOKIE};
pub use ui::asset_bytes;

/// How a server runs.
#[derive(Debug)]
pub struct ServeConfig {
    /// Where outputs and logs live: the only folder files are served from.
    pub data_dir: PathBuf,
    pub access: Access,
    /// The largest request body accepted.
    pub max_body_bytes: usize,
    /// How often an idle WebSocket hears from the server.
    pub heartbeat: Duration,
    /// Events a WebSocket client may fall behind before it is told to resync.
    pub client_buffer: usize,
    /// The kernel's send buffer per connection, in bytes: fixed, so a client that stops
    /// reading holds at most this much of the server's memory (and soon lags), instead of
    /// the megabytes autotuning would let it pin.
    pub socket_send_buffer: usize,
    /// Parameters a submitted run leaves out (the config's `[defaults]`).
    pub run_defaults: RunParams,
    /// The layout runs are planned with while no target exists.
    pub launch: LaunchDefaults,
}

impl ServeConfig {
    pub fn new(
        data_dir: PathBuf,
        access: Access,
        run_defaults: RunParams,
        launch: LaunchDefaults,
    ) -> Self {
        Self {
            data_dir,
            access,
            run_defaults,
            launch,
            max_body_bytes: 1024 * 1024,
            heartbeat: Duration::from_secs(15),
            client_buffer: 4096,
            socket_send_buffer: 256 * 1024,
        }
    }
}

/// What every handler can reach.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub services: Services,
    pub data_dir: Arc<PathBuf>,
    pub hub: Arc<hub::Hub>,
    pub stop: watch::Receiver<bool>,
    pub heartbeat: Duration,
    pub openapi: Arc<String>,
    pub run_defaults: Arc<RunParams>,
    pub launch: Arc<LaunchDefaults>,
    pub cache: Arc<cache::Cache>,
}

/// The OpenAPI 3.1 document, as served at `/api/v1/openapi.json`.
pub fn openapi_json() -> String {
    api::document().to_pretty_json().unwrap_or_default()
}

/// Serves on `listener` until `stop` turns true: then stops accepting, tells every
/// WebSocket client why it is closed, and returns once open requests are answered.
pub async fn serve(
    listener: TcpListener,
    services: Services,
    config: ServeConfig,
    stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let cache = Arc::new(cache::Cache::default());
    let hub = hub::Hub::start(
        services.clone(),
        config.client_buffer,
        cache.clone(),
        stop.clone(),
    )
    .await;
    let state = AppState {
        services,
        data_dir: Arc::new(config.data_dir),
        hub,
        stop: stop.clone(),
        heartbeat: config.heartbeat,
        openapi: Arc::new(openapi_json()),
        run_defaults: Arc::new(config.run_defaults),
        launch: Arc::new(config.launch),
        cache,
    };
    let app = api::router(state, Arc::new(config.access), config.max_body_bytes);
    let mut stopped = stop;
    let send_buffer = config.socket_send_buffer;
    let listener = axum::serve::ListenerExt::tap_io(listener, move |tcp| {
        if let Err(e) = rustix::net::sockopt::set_socket_send_buffer_size(&*tcp, send_buffer) {
            tracing::debug!("cannot size a connection's send buffer: {e}");
        }
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = stopped.wait_for(|s| *s).await;
    })
    .await
}

/// Resolves once `stop` turns true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
