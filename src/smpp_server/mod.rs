//! The SMPP server: LAN applications and partners bind to smsgw as ESMEs
//! (SMPP 3.4) and submit into the same durable queue as the HTTP API, under
//! the same routing and policy. The listener takes connections; each runs a
//! `session` (bind checks against its `account`, submits through `submit`,
//! `enquire_link`, `unbind`, `generic_nack`), framed by the shared `smpp`
//! layer; receipts and routed inbound messages go back through `outbox`.
//! Readers see the accounts through `smpp::accounts::Accounts`
//! (`SmppServer::view`). Started by the daemon after the routes, stopped
//! before them.

mod account;
mod outbox;
mod query;
mod session;
mod submit;

pub use account::AccountState;
pub use submit::decode_text;

use crate::config::smpp_server::{InboundRoutes, SmppServer as Config};
use crate::dispatch::Dispatcher;
use crate::smpp::accounts::{AccountView, Accounts};
use crate::store::Store;
use rusmpp::Command;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, oneshot};
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
    receipt_retry: Duration,
    receipt_dead_after: Duration,
    cancel: CancellationToken,
    /// Receiving binds (receiver, transceiver) per system_id, oldest first.
    receivers: Mutex<HashMap<String, Vec<Receiver>>>,
    /// Which account an inbound message goes to.
    inbound: Arc<InboundRoutes>,
    /// Poked when a receiving bind opens: what is owed to it goes at once.
    bound: Notify,
}

/// A receiving bind as the outbox uses it: where to write, and who waits
/// for which `deliver_sm_resp`.
#[derive(Clone)]
pub(crate) struct Receiver {
    session: u64,
    tx: mpsc::UnboundedSender<Command>,
    seq: Arc<AtomicU32>,
    pending: Arc<Mutex<HashMap<u32, oneshot::Sender<u32>>>>,
}

impl Receiver {
    fn next_seq(&self) -> u32 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Send a request; its response's command_status arrives on the receiver
    /// (an error when the bind ends first).
    fn request(&self, c: Command) -> oneshot::Receiver<u32> {
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(c.sequence_number(), tx);
        let _ = self.tx.send(c);
        rx
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn receiver(&self, system_id: &str) -> Option<Receiver> {
        lock(&self.receivers).get(system_id).and_then(|v| v.first().cloned())
    }

    fn register(&self, system_id: &str, r: Receiver) {
        lock(&self.receivers).entry(system_id.to_string()).or_default().push(r);
        self.bound.notify_one();
    }

    fn unregister(&self, system_id: &str, session: u64) {
        if let Some(v) = lock(&self.receivers).get_mut(system_id) {
            v.retain(|r| r.session != session);
        }
    }
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
            receipt_retry: Duration::from_secs(cfg.receipt_retry_secs),
            receipt_dead_after: Duration::from_secs(cfg.receipt_dead_after_hours * 3600),
            cancel: CancellationToken::new(),
            receivers: Mutex::new(HashMap::new()),
            inbound: Arc::new(InboundRoutes::new(&cfg.accounts)),
            bound: Notify::new(),
        });
        let tasks = TaskTracker::new();
        tasks.spawn(accept_loop(listener, shared.clone(), tasks.clone()));
        tasks.spawn(outbox::run(shared.clone()));
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

    /// The accounts as readers see them, for the daemon to hand the API.
    pub fn view(&self) -> Arc<dyn Accounts> {
        self.shared.clone()
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

impl Accounts for Shared {
    fn accounts(&self) -> Vec<AccountView> {
        let mut v: Vec<_> = self.accounts.values().map(|a| a.view()).collect();
        v.sort_by(|a, b| a.system_id.cmp(&b.system_id));
        v
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
