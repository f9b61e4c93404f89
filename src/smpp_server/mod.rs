//! The SMPP server: LAN applications and partners bind to smsgw as ESMEs
//! (SMPP 3.4) and submit into the same durable queue as the HTTP API, under
//! the same routing and policy. The listener takes connections; each runs a
//! `session` (bind checks against its `account`, submits through `submit`
//! with the parts of long messages read by `join`, `enquire_link`, `unbind`,
//! `generic_nack`), framed by the shared `smpp` layer; a second listener,
//! when configured, serves the same sessions over TLS (`tls`). Receipts and
//! routed inbound messages go back through `outbox`. Readers see the
//! accounts through `smpp::accounts::Accounts` (`SmppServer::view`). Started
//! by the daemon after the routes, stopped before them.

mod account;
mod join;
mod outbox;
mod query;
mod replace;
mod session;
mod submit;
mod tls;

pub use account::AccountState;

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
    #[error("smpp_server.{key} {value:?} is not an address with a port")]
    Address { key: &'static str, value: String },
    #[error("smpp_server TLS: {0}")]
    Tls(String),
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
    /// `server.max_segments`: the longest message a submit or `replace_sm` may bring.
    max_segments: usize,
    receipt_retry: Duration,
    receipt_dead_after: Duration,
    join_timeout: Duration,
    cancel: CancellationToken,
    /// Receiving binds (receiver, transceiver) per system_id, oldest first.
    receivers: Mutex<HashMap<String, Vec<Receiver>>>,
    /// Which account an inbound message goes to.
    inbound: Arc<InboundRoutes>,
    /// Poked when a receiving bind opens: what is owed to it goes at once.
    bound: Notify,
}

/// One connection's way out: where to write, its sequence numbers, and who
/// waits for which response to our requests. Its session holds it; the
/// outbox holds a clone of a receiving bind's to offer `deliver_sm`.
#[derive(Clone)]
pub(crate) struct Receiver {
    session: u64,
    tx: mpsc::UnboundedSender<Command>,
    seq: Arc<AtomicU32>,
    pending: Arc<Mutex<HashMap<u32, oneshot::Sender<u32>>>>,
}

impl Receiver {
    fn new(session: u64, tx: mpsc::UnboundedSender<Command>) -> Receiver {
        Receiver { session, tx, seq: Arc::new(AtomicU32::new(1)), pending: Arc::default() }
    }

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
    addr: Option<SocketAddr>,
    tls_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    tasks: TaskTracker,
}

impl SmppServer {
    /// Listen on `cfg.listen` and `cfg.tls_listen`; `None` when neither is configured.
    pub async fn start(
        cfg: &Config,
        store: Store,
        dispatcher: Arc<Dispatcher>,
        default_region: &str,
        validity_secs: u64,
        max_segments: usize,
    ) -> Result<Option<SmppServer>, ServerError> {
        if cfg.listen.is_none() && cfg.tls_listen.is_none() {
            return Ok(None);
        }
        let plain = match &cfg.listen {
            Some(l) => Some(bind("listen", l).await?),
            None => None,
        };
        let secure = match (&cfg.tls_listen, &cfg.tls_cert_file, &cfg.tls_key_file) {
            (Some(l), Some(cert), Some(key)) => Some((bind("tls_listen", l).await?, tls::acceptor(cert, key)?)),
            (Some(_), _, _) => return Err(ServerError::Tls("tls_listen needs tls_cert_file and tls_key_file".into())),
            _ => None,
        };
        let accounts =
            cfg.accounts.iter().map(|a| (a.system_id.clone(), Arc::new(AccountState::new(a.clone())))).collect();
        let shared = Arc::new(Shared {
            store,
            dispatcher,
            accounts,
            enquire_link: Duration::from_secs(cfg.enquire_link_secs.max(1)),
            default_region: default_region.to_string(),
            validity_ms: i64::try_from(validity_secs.saturating_mul(1000)).unwrap_or(i64::MAX / 2),
            max_segments,
            receipt_retry: Duration::from_secs(cfg.receipt_retry_secs),
            receipt_dead_after: Duration::from_secs(cfg.receipt_dead_after_hours * 3600),
            join_timeout: Duration::from_secs(cfg.join_timeout_secs.max(1)),
            cancel: CancellationToken::new(),
            receivers: Mutex::new(HashMap::new()),
            inbound: Arc::new(InboundRoutes::new(&cfg.accounts)),
            bound: Notify::new(),
        });
        let tasks = TaskTracker::new();
        let addr = plain.as_ref().map(|(_, a)| *a);
        let tls_addr = secure.as_ref().map(|((_, a), _)| *a);
        if let Some((listener, _)) = plain {
            tasks.spawn(accept_loop(listener, None, shared.clone(), tasks.clone()));
        }
        if let Some(((listener, _), acceptor)) = secure {
            tasks.spawn(accept_loop(listener, Some(acceptor), shared.clone(), tasks.clone()));
        }
        tasks.spawn(outbox::run(shared.clone()));
        tasks.spawn(join::sweep(shared.clone()));
        tracing::info!(
            listen = %addr.map_or_else(|| "-".to_string(), |a| a.to_string()),
            tls_listen = %tls_addr.map_or_else(|| "-".to_string(), |a| a.to_string()),
            accounts = cfg.accounts.len(),
            "SMPP server listening"
        );
        Ok(Some(SmppServer { addr, tls_addr, shared, tasks }))
    }

    /// The plain TCP listener's address, when there is one.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// The TLS listener's address, when there is one.
    pub fn tls_local_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
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

async fn bind(key: &'static str, listen: &str) -> Result<(TcpListener, SocketAddr), ServerError> {
    let addr: SocketAddr = listen.parse().map_err(|_| ServerError::Address { key, value: listen.to_string() })?;
    let listener = TcpListener::bind(addr).await.map_err(|source| ServerError::Listen { addr, source })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Listen { addr, source })?;
    Ok((listener, addr))
}

/// Take connections until shutdown; with an acceptor, each completes its TLS
/// handshake (bounded) before its session starts.
async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    tasks: TaskTracker,
) {
    loop {
        tokio::select! {
            _ = shared.cancel.cancelled() => return,
            conn = listener.accept() => match conn {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    match &tls {
                        None => {
                            let (rd, wr) = stream.into_split();
                            tasks.spawn(session::run(shared.clone(), rd, wr, peer, tasks.clone()));
                        }
                        Some(acceptor) => {
                            tasks.spawn(handshake(acceptor.clone(), stream, peer, shared.clone(), tasks.clone()));
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "SMPP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

async fn handshake(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    tasks: TaskTracker,
) {
    let done = tokio::select! {
        _ = shared.cancel.cancelled() => return,
        done = tokio::time::timeout(tls::HANDSHAKE, acceptor.accept(stream)) => done,
    };
    match done {
        Ok(Ok(stream)) => {
            let (rd, wr) = tokio::io::split(stream);
            session::run(shared, rd, wr, peer, tasks).await;
        }
        Ok(Err(e)) => tracing::warn!(%peer, error = %e, "SMPP TLS handshake failed; connection dropped"),
        Err(_) => tracing::warn!(%peer, "SMPP TLS handshake not finished in time; connection dropped"),
    }
}
