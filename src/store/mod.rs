//! The store: the only code that speaks SQL. One SQLite file in WAL mode with
//! `synchronous=FULL`; every write goes through a single group-committing
//! writer thread, reads use a small pool of their own connections.
//!
//! A write call returns only after its transaction is durable on disk, so an
//! API answer built on it never promises more than the disk holds. The files
//! (database, -wal, -shm, lock) are created readable by the daemon only,
//! whatever the umask.

mod inbound;
mod messages;
mod query;
mod schema;
mod writer;

pub use inbound::{InboundPart, InboundView, Undecodable};
pub use messages::{
    Accepted, AttemptFailure, CancelOutcome, Claimed, EnqueueOutcome, IdemKey, NewMessage, Receipt, ReceiptMatch,
    ReceiptStatus, SubmittedPart,
};
pub use query::{Counts, HistoryEntry, ListFilter, MessageView, PartView};

use crate::message::{Millis, now_ms};
use rusqlite::{Connection, OpenFlags};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use tokio::sync::oneshot;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be opened or used at start-up; names the file.
    #[error("{path}: {reason}")]
    Open { path: String, reason: String },
    /// A read or write failed while running (locked, corrupt...).
    #[error("{0}")]
    Unavailable(String),
    /// The disk refused a write: full, read-only, or an I/O error.
    #[error("{0}")]
    Storage(String),
    #[error("the store is closed")]
    Closed,
}

impl StoreError {
    pub(crate) fn from_sqlite(what: &str, e: &rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::*;
        let storage = |reason: &str| StoreError::Storage(format!("{what}: {reason}"));
        match e.sqlite_error_code() {
            Some(DiskFull) => return storage("the disk is full"),
            Some(ReadOnly) => return storage("the database is read-only"),
            Some(SystemIoFailure) => return storage("an I/O error occurred on the database file"),
            _ => {}
        }
        let reason = match e.sqlite_error_code() {
            Some(DatabaseBusy) | Some(DatabaseLocked) => "the database is locked by another process".to_string(),
            Some(DatabaseCorrupt) | Some(NotADatabase) => "the database file is corrupt".to_string(),
            Some(CannotOpen) => "the database file cannot be opened".to_string(),
            _ => e.to_string(),
        };
        StoreError::Unavailable(format!("{what}: {reason}"))
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::from_sqlite("database", &e)
    }
}

#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Option<mpsc::Sender<writer::Msg>>>,
    readers: Mutex<Vec<Connection>>,
    health: Arc<writer::Health>,
    _lock: File,
}

const READERS_KEPT: usize = 8;

/// Open `path` for writing, creating it readable and writable by its owner
/// only (the messages hold people's numbers and texts).
fn private_file(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    File::options().create(true).truncate(false).write(true).mode(0o600).open(path)
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(())
}

impl Store {
    /// Open (or create) the database at `path`, apply migrations, and return
    /// messages a previous process left half-sent to the queue.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let open_err = |reason: String| StoreError::Open { path: path.display().to_string(), reason };
        let lock_path = PathBuf::from(format!("{}.lock", path.display()));
        let lock = private_file(&lock_path)
            .map_err(|e| open_err(format!("cannot create lock file {}: {e}", lock_path.display())))?;
        if lock.try_lock().is_err() {
            return Err(open_err("the database is in use by another smsgw process".into()));
        }
        // Created here, private, before SQLite opens it: SQLite gives the
        // -wal and -shm files the database file's mode, whatever the umask.
        private_file(path).map_err(|e| open_err(format!("cannot create: {e}")))?;
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| open_err(format!("cannot open: {e}")))?;
        let describe = |e: rusqlite::Error| match StoreError::from_sqlite("open", &e) {
            StoreError::Unavailable(r) | StoreError::Storage(r) => open_err(r),
            other => other,
        };
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).map_err(describe)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(open_err(format!("cannot switch to WAL mode (got {mode})")));
        }
        configure(&conn).map_err(describe)?;
        schema::migrate(&mut conn).map_err(open_err)?;
        let returned = messages::return_unfinished(&conn, now_ms()).map_err(describe)?;
        if returned > 0 {
            tracing::warn!(count = returned, "returned messages left in 'sending' by the previous run to the queue");
        }

        let (tx, rx) = mpsc::channel();
        let health = Arc::new(writer::Health::default());
        let writer_health = health.clone();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer::run(conn, rx, &writer_health))
            .map_err(|e| open_err(format!("cannot start the writer thread: {e}")))?;
        Ok(Store {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                writer: Mutex::new(Some(tx)),
                readers: Mutex::new(Vec::new()),
                health,
                _lock: lock,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Run `f` in the writer's next group transaction; resolves after commit.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job = writer::Msg::Job(Box::new(writer::FnJob::new(f, tx)));
        {
            let guard = self.inner.writer.lock().map_err(|_| StoreError::Closed)?;
            let sender = guard.as_ref().ok_or(StoreError::Closed)?;
            sender.send(job).map_err(|_| StoreError::Closed)?;
        }
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Run `f` on a reader connection in the blocking pool.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = inner.readers.lock().ok().and_then(|mut v| v.pop());
            let conn = match pooled {
                Some(c) => c,
                None => {
                    let c = Connection::open_with_flags(
                        &inner.path,
                        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )?;
                    configure(&c)?;
                    c.pragma_update(None, "query_only", true)?;
                    c
                }
            };
            let r = f(&conn);
            if let Ok(mut v) = inner.readers.lock()
                && v.len() < READERS_KEPT
            {
                v.push(conn);
            }
            r
        })
        .await
        .map_err(|_| StoreError::Closed)?
        .map_err(|e| StoreError::from_sqlite("read", &e))
    }

    /// Finish queued writes, checkpoint the WAL and stop the writer.
    pub async fn close(&self) {
        let sender = self.inner.writer.lock().ok().and_then(|mut g| g.take());
        if let Some(sender) = sender {
            let (tx, rx) = oneshot::channel();
            if sender.send(writer::Msg::Close(tx)).is_ok() {
                let _ = rx.await;
            }
        }
        if let Ok(mut v) = self.inner.readers.lock() {
            v.clear();
        }
    }

    // ---- writes ----

    /// Accept messages from `api_key`, all or none; `daily_quota` caps the
    /// messages the key may create per UTC day, these included.
    pub async fn enqueue(
        &self,
        api_key: String,
        idem: Option<IdemKey>,
        msgs: Vec<NewMessage>,
        daily_quota: Option<u64>,
    ) -> Result<EnqueueOutcome, StoreError> {
        self.write(move |c| messages::enqueue(c, &api_key, idem.as_ref(), &msgs, daily_quota, now_ms())).await
    }

    /// Take up to `limit` due messages of `route`, most urgent first, and mark
    /// them `sending`. Messages past their validity are expired instead.
    pub async fn claim(&self, route: String, limit: usize) -> Result<Vec<Claimed>, StoreError> {
        self.write(move |c| messages::claim(c, &route, limit, now_ms())).await
    }

    /// The route took the message's parts from the first of `parts` to the
    /// last, under `concat_ref`.
    pub async fn record_submitted(
        &self,
        id: i64,
        route: String,
        parts: Vec<SubmittedPart>,
        concat_ref: Option<u16>,
    ) -> Result<(), StoreError> {
        self.write(move |c| messages::record_submitted(c, id, &route, &parts, concat_ref, now_ms())).await
    }

    pub async fn record_failure(&self, id: i64, failure: AttemptFailure) -> Result<(), StoreError> {
        self.write(move |c| messages::record_failure(c, id, &failure, now_ms())).await
    }

    pub async fn record_receipt(&self, receipt: Receipt) -> Result<ReceiptMatch, StoreError> {
        self.write(move |c| messages::apply_receipt(c, &receipt, now_ms())).await
    }

    /// Cancel a queued message; with `owner`, only one that key sent.
    pub async fn cancel(&self, id: i64, owner: Option<String>) -> Result<CancelOutcome, StoreError> {
        self.write(move |c| messages::cancel(c, id, owner.as_deref(), now_ms())).await
    }

    /// Expire queued messages whose validity ran out and forget old
    /// idempotency keys. Returns how many messages expired.
    pub async fn sweep(&self, idempotency_ttl_ms: Millis) -> Result<usize, StoreError> {
        self.write(move |c| messages::sweep(c, now_ms(), idempotency_ttl_ms)).await
    }

    /// Move every queued message of a route that no longer exists to `to`.
    pub async fn reroute(&self, from: String, to: String) -> Result<usize, StoreError> {
        self.write(move |c| messages::reroute(c, &from, &to, now_ms())).await
    }

    /// Store a received message or part; the id once a message is complete.
    pub async fn record_inbound(&self, part: InboundPart) -> Result<Option<i64>, StoreError> {
        self.write(move |c| inbound::record(c, &part, now_ms())).await
    }

    /// Store concatenated messages whose missing parts are older than `age_ms`.
    pub async fn flush_stale_inbound(&self, age_ms: Millis) -> Result<usize, StoreError> {
        self.write(move |c| {
            let now = now_ms();
            inbound::flush_stale(c, now - age_ms, now)
        })
        .await
    }

    /// Fail over: move up to `limit` due messages of `from` to the route
    /// `assign` picks for each recipient; returns the routes that got some.
    pub async fn move_queued(
        &self,
        from: String,
        limit: usize,
        assign: impl Fn(&str) -> Option<String> + Send + 'static,
    ) -> Result<Vec<String>, StoreError> {
        self.write(move |c| messages::move_queued(c, &from, limit, now_ms(), &assign)).await
    }

    /// A write round trip: proves the writer is alive and the file takes a
    /// write. Reading alone would not: a transaction that changes nothing
    /// commits without touching the disk, so the schema version is written
    /// back unchanged (one page).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.write(|c| {
            let version: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            c.execute_batch(&format!("PRAGMA user_version = {version}"))?;
            Ok(())
        })
        .await
    }

    /// Takes writes: a ping goes through, and the disk has refused no write
    /// in the last `FAILURE_HOLDS`. A ping alone is not enough: on a nearly
    /// full disk its one page (or the dispatcher's small updates) may fit
    /// where a batch of messages does not.
    pub async fn ready(&self) -> Result<(), StoreError> {
        self.ping().await?;
        match self.inner.health.recent_failure(writer::FAILURE_HOLDS) {
            None => Ok(()),
            Some((ago, why)) => Err(StoreError::Storage(format!("a write failed {} s ago: {why}", ago.as_secs()))),
        }
    }

    // ---- reads ----

    pub async fn get(&self, id: i64) -> Result<Option<MessageView>, StoreError> {
        self.read(move |c| query::get(c, id)).await
    }

    pub async fn list(&self, filter: ListFilter) -> Result<Vec<MessageView>, StoreError> {
        self.read(move |c| query::list(c, &filter)).await
    }

    pub async fn counts(&self) -> Result<Counts, StoreError> {
        self.read(query::counts).await
    }

    /// One inbound message; with `owner`, only a reply to that key's messages.
    pub async fn inbound(&self, id: i64, owner: Option<String>) -> Result<Option<InboundView>, StoreError> {
        self.read(move |c| inbound::get(c, id, owner.as_deref())).await
    }

    /// Inbound messages newest first; with `owner`, only the replies to
    /// that key's messages.
    pub async fn list_inbound(
        &self,
        owner: Option<String>,
        before_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<InboundView>, StoreError> {
        self.read(move |c| inbound::list(c, owner.as_deref(), before_id, limit)).await
    }

    /// Messages waiting in the queue (cheap: the queue's own index).
    pub async fn queued_total(&self) -> Result<u64, StoreError> {
        self.read(|c| c.query_row("SELECT count(*) FROM messages WHERE status = 'queued'", [], |r| r.get::<_, i64>(0)))
            .await
            .map(|n| n as u64)
    }

    /// Parts `route` handed to the network since `since`: remote id and time.
    pub async fn sent_since(&self, route: String, since: Millis) -> Result<Vec<(String, Millis)>, StoreError> {
        self.read(move |c| query::sent_since(c, &route, since)).await
    }

    /// The routes that have queued messages (to find orphans after a config change).
    pub async fn queued_routes(&self) -> Result<Vec<String>, StoreError> {
        self.read(query::queued_routes).await
    }
}

#[cfg(test)]
mod tests;
