//! The SMPP server: LAN applications and partners bind to smsgw as ESMEs
//! (SMPP 3.4) and submit into the same durable queue as the HTTP API, under
//! the same routing and policy. The listener takes connections; each runs a
//! `session` (bind checks against its `account`, submits through `submit`,
//! `enquire_link`, `unbind`, `generic_nack`), framed by the shared `smpp`
//! layer. Started by the daemon after the routes, stopped before them.

mod account;
mod query;
mod session;
mod submit;

pub use account::AccountState;
pub use submit::decode_text;

use crate::config::smpp_server::SmppServer as Config;
use crate::dispatch::Dispatcher;
use crate::store::Store;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why the server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("smpp_server.listen {0:?} is not an address with a port")]
    Address(String),
    #[error("cannot listen for SMPP on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
}

/// What every session reads.
pub(crate) struct Shared {
    store: Store,
    dispatcher: Arc<Dispatcher>,
    accounts: HashMap<String, Arc<AccountState>>,
    enquire_link: Duration,
    default_region: String,
    validity_ms: i64,
    cancel: CancellationToken,
}

/// The running server.
pub struct SmppServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: TaskTracker,
}

impl SmppServer {
    /// Listen on `cfg.listen`; `None` when no address is configured.
    pub async fn start(
        cfg: &Config,
        store: Store,
        dispatcher: Arc<Dispatcher>,
        default_region: &str,
        validity_secs: u64,
    ) -> Result<Option<SmppServer>, ServerError> {
        let Some(listen) = &cfg.listen else { return Ok(None) };
        let addr: SocketAddr = listen.parse().map_err(|_| ServerError::Address(listen.clone()))?;
        let listener = TcpListener::bind(addr).await.map_err(|source| ServerError::Listen { addr, source })?;
        let addr = listener.local_addr().map_err(|source| ServerError::Listen { addr, source })?;
        let accounts =
            cfg.accounts.iter().map(|a| (a.system_id.clone(), Arc::new(AccountState::new(a.clone())))).collect();
        let shared = Arc::new(Shared {
            store,
            dispatcher,
            accounts,
            enquire_link: Duration::from_secs(cfg.enquire_link_secs.max(1)),
            default_region: default_region.to_string(),
            validity_ms: i64::try_from(validity_secs.saturating_mul(1000)).unwrap_or(i64::MAX / 2),
            cancel: CancellationToken::new(),
        });
        let tasks = TaskTracker::new();
        tasks.spawn(accept_loop(listener, shared.clone(), tasks.clone()));
        tracing::info!(listen = %addr, accounts = cfg.accounts.len(), "SMPP server listening");
        Ok(Some(SmppServer { addr, shared, tasks }))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The accounts, for readers (API, metrics).
    pub fn accounts(&self) -> Vec<Arc<AccountState>> {
        let mut v: Vec<_> = self.shared.accounts.values().cloned().collect();
        v.sort_by(|a, b| a.cfg.system_id.cmp(&b.cfg.system_id));
        v
    }

    /// Stop listening, end every bind (in-flight submits finish their commit
    /// and answer first), bounded.
    pub async fn shutdown(&self) {
        self.shared.cancel.cancel();
        self.tasks.close();
        if tokio::time::timeout(Duration::from_secs(5), self.tasks.wait()).await.is_err() {
            tracing::warn!("SMPP sessions did not end within 5 s");
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, tasks: TaskTracker) {
    loop {
        tokio::select! {
            _ = shared.cancel.cancelled() => return,
            conn = listener.accept() => match conn {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    tasks.spawn(session::run(shared.clone(), stream, peer, tasks.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "SMPP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}
