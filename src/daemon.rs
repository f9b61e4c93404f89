//! The daemon's life: open the store, start the routes and the dispatcher,
//! serve the API, and on SIGTERM/SIGINT stop in order — stop accepting, let
//! in-flight hand-overs finish (bounded), close the store cleanly.

use crate::api::{self, AppState, Limits, auth::Keys};
use crate::config::Loaded;
use crate::dispatch::Dispatcher;
use crate::store::Store;
use std::sync::{Arc, RwLock};
use tokio::net::TcpListener;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

/// Run until a stop signal. `on_listen` hears the bound address (useful with
/// port 0).
pub async fn run(loaded: Loaded, on_listen: impl FnOnce(std::net::SocketAddr)) -> Result<(), StartError> {
    let cfg = &loaded.config;
    let store = Store::open(&cfg.store.path).map_err(|e| StartError(format!("cannot open the message store: {e}")))?;
    let listener = TcpListener::bind(loaded.listen)
        .await
        .map_err(|e| StartError(format!("cannot listen on {}: {e}", loaded.listen)))?;
    let addr = listener.local_addr().map_err(|e| StartError(format!("cannot read the bound address: {e}")))?;
    let dispatcher = Dispatcher::start(store.clone(), cfg.dispatch.clone(), &cfg.routes)
        .await
        .map_err(|e| StartError(format!("cannot start routes: {e}")))?;
    let state = Arc::new(AppState {
        store: store.clone(),
        dispatcher: dispatcher.clone(),
        limits: Limits::from_config(cfg),
        keys: RwLock::new(Keys::new(&loaded.keys)),
    });
    let app = api::router(state);
    tracing::info!(
        listen = %addr,
        store = %cfg.store.path.display(),
        routes = cfg.routes.len(),
        "smsgw is ready"
    );
    on_listen(addr);
    let served = axum::serve(listener, app).with_graceful_shutdown(stop_signal()).await;
    tracing::info!("stopping: no new requests; finishing in-flight work");
    dispatcher.shutdown().await;
    store.close().await;
    tracing::info!("stopped cleanly");
    served.map_err(|e| StartError(format!("HTTP server failed: {e}")))
}

async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGTERM; stop with SIGINT");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
