//! The store: the only code that speaks SQL. One SQLite file in WAL mode with
//! `synchronous=FULL`; every write goes through a single group-committing
//! writer thread, reads use a small pool of their own connections.
//!
//! A write call returns only after its transaction is durable on disk, so an
//! API answer built on it never promises more than the disk holds. The files
//! (database, -wal, -shm, lock) are created readable by the daemon only,
//! whatever the umask.
//!
//! The file does not grow forever: `prune` deletes what the retention allows
//! in small batches and gives the free pages back (incremental auto-vacuum,
//! set when a store is created; `vacuum` switches an older file once).

mod consents;
mod conversation;
mod events;
mod fill;
mod inbound;
mod messages;
mod optouts;
mod pauses;
mod policy;
mod query;
mod retention;
mod route_state;
mod rule_stats;
mod rules;
mod schema;
mod smpp_outbox;
mod smpp_parts;
mod subscriptions;
mod tally;
mod triggers;
mod webhooks;
mod writer;

pub use consents::{Consent, ConsentFilter, NewConsent, WithdrawOutcome};
pub use fill::{fill_for_bench, fill_rule_timers_for_bench, make_timers_due_for_bench, timer_lags_for_bench};
pub use inbound::{InboundPart, InboundView, ReplyTo, Undecodable};
pub use messages::{
    Accepted, AttemptFailure, CancelFilter, CancelOutcome, Claimed, EnqueueOutcome, IdemKey, NewMessage, Receipt,
    ReceiptMatch, SubmittedPart,
};
pub use messages::{ReplaceOutcome, Replacement};
pub use optouts::{OptOut, OptOutChange, OptOutCursor, OptOutFilter};
pub use pauses::Pause;
pub use policy::{NO_CONSENT, OPTED_OUT};
pub use query::{Counts, HistoryEntry, ListFilter, MessageView, PartView, TriggerView};
pub use retention::{Pruned, Retention};
pub use route_state::RouteStateData;
pub use rule_stats::{RuleStats, ScheduleHour};
pub use rules::{NewRule, RuleRow};
pub use smpp_outbox::{OutboxCounts, OwedInbound, OwedReceipt};
pub use smpp_parts::{PartOutcome, SmppPart};
pub use subscriptions::{
    AttemptView, DeliveryFilter, DeliveryHealth, DeliveryState, DeliveryView, Managed, NewSubscription, Origin,
    ReplayOutcome, ReplaySelect, SigningSecret, SubscriptionPatch, SubscriptionView,
};
pub use triggers::{IngestOutcome, NewTriggerEvent, PlannedRun, RunLimit, RunOutcome};
pub use webhooks::{AttemptOutcome, AttemptRecord, Claim, ConfigSubscription, Due, EventRow, FanOut, Recorded};

use crate::config::Policy;
use crate::message::{Millis, now_ms};
use crate::replies::ReplyRules;
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
            Some(OperationInterrupted) => {
                format!("stopped after {} s, the longest a read may run", READ_LIMIT.as_secs())
            }
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
    /// `READ_LIMIT`, shorter in tests.
    read_limit_ms: std::sync::atomic::AtomicU64,
    health: Arc<writer::Health>,
    /// Poked after a commit that wrote outbox events (the webhook deliverer
    /// waits on one, the SMPP server's outbox on the other).
    outbox: Arc<writer::OutboxWake>,
    _lock: File,
}

const READERS_KEPT: usize = 8;
/// How long one read may run before SQLite stops it: a query planned badly
/// over a large store must not hold a reader thread, and a shutdown that
/// waits for it, for hours. API reads take milliseconds.
const READ_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);
/// How many SQLite VM steps between two looks at the read's deadline.
const READ_CHECK_STEPS: std::os::raw::c_int = 10_000;

thread_local! {
    /// When the read running on this thread must stop; none outside a read.
    static READ_DEADLINE: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
}
/// Rows of each kind one prune transaction deletes at most: small enough
/// that the writer's other work waits milliseconds, not seconds.
const PRUNE_BATCH: usize = 500;
/// Pages one incremental vacuum step gives back at most (4 MiB of 4 KiB pages).
const VACUUM_PAGES: u32 = 1024;

/// Open `path` for writing, creating it readable and writable by its owner
/// only (the messages hold people's numbers and texts).
fn private_file(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    File::options().create(true).truncate(false).write(true).mode(0o600).open(path)
}

/// A value as the JSON text a column holds (event data, a subscription's
/// event kinds and secrets).
fn to_json<T: serde::Serialize + ?Sized>(v: &T) -> rusqlite::Result<String> {
    serde_json::to_string(v).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// Statements each connection keeps prepared. Far more than the store has
/// (about a hundred): past the cache, every call parses its SQL again,
/// which on the writer's one thread costs more than the statement itself.
const STATEMENT_CACHE: usize = 256;

/// For tables pruned in id order (their ids grow with time, so they keep no
/// age index up to date on every insert): the id of the last row of the
/// oldest `limit` rows below `below` whose `at` column is before `before`,
/// read from the first row and stopping at the first younger one.
fn oldest_before(
    c: &Connection,
    table: &str,
    at: &str,
    below: i64,
    before: Millis,
    limit: usize,
) -> rusqlite::Result<Option<i64>> {
    let rows: Vec<(i64, Millis)> = c
        .prepare_cached(&format!("SELECT id, {at} FROM {table} WHERE id < ?1 ORDER BY id LIMIT ?2"))?
        .query_map(rusqlite::params![below, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(rows.iter().take_while(|(_, t)| *t < before).last().map(|(id, _)| *id))
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // One plan per statement, made once. Without this SQLite parses and
    // plans a cached statement again whenever a parameter it planned around
    // is bound to a new value (an equality it used for the ORDER BY, one it
    // compared with a partial index's condition): statements the writer runs
    // for every message were planned anew each time, an eighth of the
    // writer's time under SMPP load. The store's queries name the constants
    // their partial indexes need in the SQL itself.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(())
}

/// Pages the writer keeps in memory (KiB; SQLite's default is 2 MiB): a
/// group commit touches leaf pages all over the tables' indexes, and every
/// page it must read back from the file costs a system call on the one
/// thread all writes go through.
const WRITER_CACHE_KIB: i64 = 16 * 1024;

/// The writer's own settings. The journals SQLite keeps inside a group (a
/// statement's, and a savepoint per job when a group runs again after a
/// failure) stay in memory instead of going through a temporary file: a
/// group's changes, bounded by the group.
fn configure_writer(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
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
        // Takes effect only on a file without tables yet, so it comes first:
        // a new store is created able to give free pages back.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL").map_err(describe)?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).map_err(describe)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(open_err(format!("cannot switch to WAL mode (got {mode})")));
        }
        configure(&conn).map_err(describe)?;
        configure_writer(&conn).map_err(describe)?;
        schema::migrate(&mut conn).map_err(|e| open_err(e.to_string()))?;
        let returned = messages::return_unfinished(&conn, now_ms()).map_err(describe)?;
        if returned > 0 {
            tracing::warn!(count = returned, "returned messages left in 'sending' by the previous run to the queue");
        }
        if !retention::is_incremental(&conn).map_err(describe)? {
            tracing::warn!(
                store = %path.display(),
                "the store file cannot give free pages back after a prune; stop smsgw and run `smsgw store vacuum` once"
            );
        }

        let (tx, rx) = mpsc::channel();
        let health = Arc::new(writer::Health::default());
        let writer_health = health.clone();
        let outbox = Arc::new(writer::OutboxWake::default());
        let writer_outbox = outbox.clone();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer::run(conn, rx, &writer_health, &writer_outbox))
            .map_err(|e| open_err(format!("cannot start the writer thread: {e}")))?;
        Ok(Store {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                writer: Mutex::new(Some(tx)),
                readers: Mutex::new(Vec::new()),
                read_limit_ms: std::sync::atomic::AtomicU64::new(READ_LIMIT.as_millis() as u64),
                health,
                outbox,
                _lock: lock,
            }),
        })
    }

    #[cfg(test)]
    fn set_read_limit(&self, limit: std::time::Duration) {
        self.inner.read_limit_ms.store(limit.as_millis() as u64, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Run `f` in the writer's next group transaction; resolves after commit.
    /// `f` may run more than once (see `writer::commit_group`): it must only
    /// read what it captured.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> Result<T, StoreError> + Send + 'static,
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

    /// Run `f` on the writer's connection outside any transaction, for the
    /// statements SQLite refuses inside one (`VACUUM`).
    async fn write_alone<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job = writer::Msg::Alone(Box::new(writer::FnJob::new(f, tx)));
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
                    let mut c = Connection::open_with_flags(
                        &inner.path,
                        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )?;
                    configure(&c)?;
                    c.pragma_update(None, "query_only", true)?;
                    c.progress_handler(
                        READ_CHECK_STEPS,
                        Some(|| READ_DEADLINE.with(|d| d.get().is_some_and(|t| std::time::Instant::now() >= t))),
                    )?;
                    c
                }
            };
            let limit =
                std::time::Duration::from_millis(inner.read_limit_ms.load(std::sync::atomic::Ordering::Relaxed));
            READ_DEADLINE.with(|d| d.set(Some(std::time::Instant::now() + limit)));
            let r = f(&conn);
            READ_DEADLINE.with(|d| d.set(None));
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
    /// messages the key may create per UTC day, these included. A message
    /// `policy` stops is stored `suppressed`, with its reason.
    pub async fn enqueue(
        &self,
        api_key: String,
        idem: Option<IdemKey>,
        msgs: Vec<NewMessage>,
        daily_quota: Option<u64>,
        policy: Policy,
    ) -> Result<EnqueueOutcome, StoreError> {
        let outcome =
            self.write(move |c| messages::enqueue(c, &api_key, idem.as_ref(), &msgs, daily_quota, &policy, now_ms()));
        let outcome = outcome.await?;
        if let EnqueueOutcome::Created(accepted) = &outcome {
            count_suppressed(accepted.iter().filter_map(|a| a.reason.as_deref()));
        }
        Ok(outcome)
    }

    /// Take up to `limit` due messages of `route`, most urgent first, and mark
    /// them `sending`. Messages past their validity are expired instead,
    /// those `policy` now stops are suppressed, and those due in their
    /// recipient's quiet hours wait for the opening.
    pub async fn claim(&self, route: String, limit: usize, policy: Policy) -> Result<Vec<Claimed>, StoreError> {
        let claim = self.write(move |c| messages::claim(c, &route, limit, &policy, now_ms())).await?;
        count_suppressed(claim.suppressed.iter().copied());
        if claim.deferred > 0 {
            ::metrics::counter!(crate::metrics::QUIET_DEFERRED).increment(claim.deferred);
        }
        Ok(claim.claimed)
    }

    /// The route took the message's parts from the first of `parts` to the
    /// last, under `concat_ref`. `Final` when receipts that overtook the
    /// result (kept as early) made the message final here.
    pub async fn record_submitted(
        &self,
        id: i64,
        route: String,
        parts: Vec<SubmittedPart>,
        concat_ref: Option<u16>,
    ) -> Result<Option<ReceiptMatch>, StoreError> {
        self.write(move |c| messages::record_submitted(c, id, &route, &parts, concat_ref, now_ms())).await
    }

    pub async fn record_failure(&self, id: i64, failure: AttemptFailure) -> Result<(), StoreError> {
        self.write(move |c| messages::record_failure(c, id, &failure, now_ms())).await
    }

    pub async fn record_receipt(&self, receipt: Receipt) -> Result<ReceiptMatch, StoreError> {
        self.write(move |c| messages::apply_receipt(c, &receipt, now_ms())).await
    }

    /// SMPP server receipts: fan new final-status events out to `accounts`
    /// (system_ids), and inbound messages to the account `inbound` names;
    /// rows made and events read (`limit` of them: more may wait).
    pub async fn smpp_fan_out(
        &self,
        accounts: Vec<String>,
        inbound: Arc<crate::config::smpp_server::InboundRoutes>,
        limit: usize,
    ) -> Result<(usize, usize), StoreError> {
        self.write(move |c| smpp_outbox::fan_out(c, &accounts, &inbound, limit, now_ms()).map_err(Into::into)).await
    }

    /// Lease up to `limit` due inbound messages owed to an account for `lease_ms`.
    pub async fn smpp_claim_inbound(
        &self,
        account: String,
        limit: usize,
        lease_ms: i64,
    ) -> Result<Vec<OwedInbound>, StoreError> {
        self.write(move |c| smpp_outbox::claim_inbound(c, &account, limit, lease_ms, now_ms()).map_err(Into::into))
            .await
    }

    /// Each SMPP server account's receipts and inbound messages owed now, and dead.
    pub async fn smpp_outbox_counts(&self) -> Result<std::collections::BTreeMap<String, OutboxCounts>, StoreError> {
        self.read(smpp_outbox::counts).await
    }

    /// Lease up to `limit` due receipts of an account for `lease_ms`.
    pub async fn smpp_claim(
        &self,
        account: String,
        limit: usize,
        lease_ms: i64,
    ) -> Result<Vec<OwedReceipt>, StoreError> {
        self.write(move |c| smpp_outbox::claim(c, &account, limit, lease_ms, now_ms()).map_err(Into::into)).await
    }

    /// Record the attempts of a claim's rows at once, in one transaction
    /// (see `smpp_outbox::record`).
    pub async fn smpp_record(
        &self,
        results: Vec<(i64, Result<(), String>)>,
        retry_ms: i64,
        dead_after_ms: i64,
    ) -> Result<(), StoreError> {
        self.write(move |c| {
            let now = now_ms();
            for (id, result) in &results {
                smpp_outbox::record(c, *id, result, now + retry_ms, dead_after_ms, now)?;
            }
            Ok(())
        })
        .await
    }

    /// Accept a whole message from an SMPP account (`msg.receipt` holds the
    /// receipts its `registered_delivery` asks for).
    pub async fn smpp_accept(&self, api_key: String, msg: NewMessage, policy: Policy) -> Result<Accepted, StoreError> {
        let accepted = self.write(move |c| messages::insert(c, &api_key, &msg, None, &policy, now_ms())).await?;
        count_suppressed(accepted.reason.as_deref().into_iter());
        Ok(accepted)
    }

    /// Store one part of a long message from an SMPP account; the first of
    /// its set makes (and holds) `msg`, the last joins (see `smpp_parts`).
    pub async fn smpp_part(
        &self,
        api_key: String,
        msg: NewMessage,
        part: SmppPart,
        policy: Policy,
    ) -> Result<PartOutcome, StoreError> {
        let (outcome, suppressed) =
            self.write(move |c| smpp_parts::add(c, &api_key, &msg, &part, &policy, now_ms())).await?;
        count_suppressed(suppressed.as_deref().into_iter());
        Ok(outcome)
    }

    /// Store as incomplete (failed, `incomplete`) the part sets begun more
    /// than `timeout_ms` ago, up to `limit`; how many.
    pub async fn smpp_expire_parts(&self, timeout_ms: Millis, limit: usize) -> Result<usize, StoreError> {
        self.write(move |c| {
            let now = now_ms();
            smpp_parts::expire(c, now - timeout_ms, limit, now).map_err(Into::into)
        })
        .await
    }

    /// Cancel a queued message; with `owner`, only one that key sent.
    pub async fn cancel(&self, id: i64, owner: Option<String>) -> Result<CancelOutcome, StoreError> {
        self.write(move |c| messages::cancel(c, id, owner.as_deref(), now_ms())).await
    }

    /// Cancel every queued message that matches `f` and was accepted
    /// before this call, each with its history row `detail`; how many. It
    /// writes in batches, so other writes go on meanwhile, and it runs to
    /// the end even when the caller stops waiting.
    pub async fn cancel_matching(&self, f: CancelFilter, detail: String) -> Result<usize, StoreError> {
        const BATCH: usize = 500;
        let up_to: i64 =
            self.read(|c| c.query_row("SELECT COALESCE(MAX(id), 0) FROM messages", [], |r| r.get(0))).await?;
        let store = self.clone();
        let run = async move {
            let (f, detail) = (Arc::new(f), Arc::new(detail));
            let mut total = 0;
            loop {
                let (f, detail) = (f.clone(), detail.clone());
                let n = store.write(move |c| messages::cancel_matching(c, &f, up_to, &detail, BATCH, now_ms())).await?;
                total += n;
                if n < BATCH {
                    return Ok(total);
                }
            }
        };
        tokio::spawn(run).await.map_err(|_| StoreError::Closed)?
    }

    /// Pause a route (its lane sends nothing until resumed); the pause on
    /// record, which is an earlier one when the route was paused already.
    pub async fn pause_route(&self, p: Pause) -> Result<Pause, StoreError> {
        self.write(move |c| pauses::pause(c, &p).map_err(Into::into)).await
    }

    /// Resume a paused route; whether it was paused.
    pub async fn resume_route(&self, route: String) -> Result<bool, StoreError> {
        self.write(move |c| pauses::resume(c, &route).map_err(Into::into)).await
    }

    /// Every paused route.
    pub async fn route_pauses(&self) -> Result<Vec<Pause>, StoreError> {
        self.read(pauses::all).await
    }

    /// Replace a queued message of `r.owner`'s in place (an SMPP
    /// `replace_sm`): text, schedule, validity and receipt bits, with its
    /// history row, in one transaction.
    pub async fn replace(&self, id: i64, r: Replacement) -> Result<ReplaceOutcome, StoreError> {
        self.write(move |c| messages::replace(c, id, &r, now_ms())).await
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
    /// A complete one is read by `rules` and acted on in the same
    /// transaction: linked to the message it answers, its opt-out recorded,
    /// its auto-reply queued.
    pub async fn record_inbound(&self, part: InboundPart, rules: Arc<ReplyRules>) -> Result<Option<i64>, StoreError> {
        self.write(move |c| inbound::record(c, &part, &rules, now_ms())).await
    }

    /// Add or remove an opt-out; true when the registry changed (and its
    /// `optout.changed` event was written with it).
    pub async fn set_optout(&self, change: OptOutChange) -> Result<bool, StoreError> {
        self.write(move |c| Ok(optouts::set(c, &change, now_ms())?)).await
    }

    /// Record a consent; returns it with its id.
    pub async fn add_consent(&self, consent: NewConsent) -> Result<Consent, StoreError> {
        self.write(move |c| Ok(consents::add(c, &consent, now_ms())?)).await
    }

    /// Withdraw a consent now; the record stays.
    pub async fn withdraw_consent(&self, id: i64) -> Result<WithdrawOutcome, StoreError> {
        self.write(move |c| Ok(consents::withdraw(c, id, now_ms())?)).await
    }

    /// Store concatenated messages whose missing parts are older than
    /// `age_ms`, read and acted on by `rules` as [`Store::record_inbound`] does.
    pub async fn flush_stale_inbound(&self, age_ms: Millis, rules: Arc<ReplyRules>) -> Result<usize, StoreError> {
        self.write(move |c| {
            let now = now_ms();
            inbound::flush_stale(c, now - age_ms, &rules, now)
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

    /// Delete what `retention` no longer keeps at `now`, `PRUNE_BATCH` rows
    /// of each kind per transaction (other writes go between them), then
    /// give the freed pages back a slice at a time.
    pub async fn prune(&self, retention: Retention, now: Millis) -> Result<Pruned, StoreError> {
        let mut total = Pruned::default();
        loop {
            let batch = self.write(move |c| Ok(retention::prune_batch(c, &retention, now, PRUNE_BATCH)?)).await?;
            total.add(batch);
            let full = PRUNE_BATCH as u64;
            if batch.messages < full
                && batch.inbound < full
                && batch.receipts < full
                && batch.webhooks < full
                && batch.smpp < full
            {
                break;
            }
        }
        if total.rows() > 0 {
            total.freed_bytes = self.give_back_free_pages().await?;
        }
        Ok(total)
    }

    /// Incremental vacuum until the free list is empty (or the file cannot
    /// shrink this way); returns the bytes given back.
    async fn give_back_free_pages(&self) -> Result<u64, StoreError> {
        let mut freed = 0;
        loop {
            let (bytes, left) = self
                .write(|c| Ok((retention::incremental_vacuum(c, VACUUM_PAGES)?, retention::free_pages(c)?)))
                .await?;
            freed += bytes;
            if bytes == 0 || left == 0 {
                return Ok(freed);
            }
        }
    }

    /// Rewrite the whole file with incremental auto-vacuum on: needed once
    /// for a store created before smsgw could shrink its file. Holds the
    /// writer for as long as it takes (minutes for millions of messages) and
    /// needs free disk space for a copy; returns the file's size before and
    /// after.
    pub async fn vacuum(&self) -> Result<(u64, u64), StoreError> {
        let sizes = self
            .write_alone(|c| {
                let size = |c: &Connection| -> rusqlite::Result<u64> {
                    let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
                    let page_size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
                    Ok((pages * page_size) as u64)
                };
                let before = size(c)?;
                c.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
                c.execute_batch("VACUUM")?;
                Ok((before, size(c)?))
            })
            .await;
        // Connections opened before the rewrite keep the old file's
        // settings in their cache; later reads get fresh ones.
        if let Ok(mut v) = self.inner.readers.lock() {
            v.clear();
        }
        sizes
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

    // ---- webhooks (the outbox's delivery; see `webhooks`) ----

    /// Woken after every commit that wrote an outbox event.
    pub fn outbox_notify(&self) -> Arc<tokio::sync::Notify> {
        self.inner.outbox.webhooks.clone()
    }

    /// Woken after every commit that wrote an outbox event, for the SMPP
    /// server's receipts and inbound deliveries.
    pub fn smpp_outbox_notify(&self) -> Arc<tokio::sync::Notify> {
        self.inner.outbox.smpp.clone()
    }

    /// Make the `config` subscriptions match the file's.
    pub async fn sync_webhook_config(&self, subs: Vec<ConfigSubscription>) -> Result<(), StoreError> {
        self.write(move |c| Ok(webhooks::sync_config(c, &subs, now_ms())?)).await
    }

    // ---- trigger rules ----

    /// Store posted events and apply the rules' plans for them (cancels,
    /// conversions, runs and their messages) in one transaction; resolves
    /// after commit. A replayed event id answers its first outcome.
    pub async fn ingest_events(
        &self,
        api_key: String,
        events: Vec<NewTriggerEvent>,
        policy: Policy,
    ) -> Result<Vec<IngestOutcome>, StoreError> {
        self.write(move |c| triggers::ingest(c, &api_key, &events, &policy, now_ms())).await
    }

    /// Make the `config` rules match the file's.
    pub async fn sync_rule_config(&self, rules: Vec<NewRule>) -> Result<(), StoreError> {
        self.write(move |c| rules::sync_config(c, &rules, now_ms())).await
    }

    pub async fn rules(&self) -> Result<Vec<RuleRow>, StoreError> {
        self.read(rules::list).await
    }

    pub async fn rule(&self, name: String) -> Result<Option<RuleRow>, StoreError> {
        self.read(move |c| rules::get(c, &name)).await
    }

    /// Create an API rule; `None` when the name is taken.
    pub async fn create_rule(&self, api_key: String, rule: NewRule) -> Result<Option<RuleRow>, StoreError> {
        self.write(move |c| rules::create(c, &api_key, &rule, now_ms())).await
    }

    pub async fn update_rule(&self, rule: NewRule) -> Result<Managed<RuleRow>, StoreError> {
        self.write(move |c| rules::update(c, &rule, now_ms())).await
    }

    pub async fn delete_rule(&self, name: String) -> Result<Managed<()>, StoreError> {
        self.write(move |c| rules::delete(c, &name)).await
    }

    /// Fan up to `limit` outbox events out into deliveries; `admin_keys`
    /// receive the events nobody owns.
    pub async fn fan_out(&self, admin_keys: Vec<String>, limit: usize) -> Result<FanOut, StoreError> {
        self.write(move |c| Ok(webhooks::fan_out(c, &admin_keys, limit, now_ms())?)).await
    }

    /// Claim due deliveries (each subscription up to `concurrency` less
    /// what `busy` has in flight), leased for `lease_ms`.
    pub async fn claim_deliveries(
        &self,
        lease_ms: Millis,
        concurrency: usize,
        busy: std::collections::HashMap<i64, usize>,
        limit: usize,
    ) -> Result<Claim, StoreError> {
        self.write(move |c| Ok(webhooks::claim_due(c, now_ms(), lease_ms, concurrency, &busy, limit)?)).await
    }

    /// Record delivery attempts, all in one transaction.
    pub async fn record_deliveries(
        &self,
        attempts: Vec<AttemptRecord>,
        retry_for_ms: Millis,
    ) -> Result<Recorded, StoreError> {
        self.write(move |c| Ok(webhooks::record_attempts(c, &attempts, retry_for_ms, now_ms())?)).await
    }

    /// A route's state; writes `route.state_changed` only when it changed.
    pub async fn record_route_state(
        &self,
        route: String,
        state: String,
        detail: Option<String>,
    ) -> Result<bool, StoreError> {
        let data = RouteStateData { route, state, detail };
        self.write(move |c| Ok(route_state::record(c, now_ms(), &data)?)).await
    }

    /// The events `ids` with the rows they point at, as they are now.
    pub async fn event_rows(&self, ids: Vec<i64>) -> Result<Vec<EventRow>, StoreError> {
        self.read(move |c| webhooks::event_rows(c, &ids)).await
    }

    /// Webhook deliveries waiting to be made.
    pub async fn pending_deliveries(&self) -> Result<u64, StoreError> {
        self.read(webhooks::pending_count).await
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

    /// The opt-out of `number` for `scope`, if any.
    pub async fn optout(&self, number: String, scope: String) -> Result<Option<OptOut>, StoreError> {
        self.read(move |c| optouts::get(c, &number, &scope)).await
    }

    /// The opt-out registry, newest first.
    pub async fn optouts(&self, filter: OptOutFilter) -> Result<Vec<OptOut>, StoreError> {
        self.read(move |c| optouts::list(c, &filter)).await
    }

    pub async fn consent(&self, id: i64) -> Result<Option<Consent>, StoreError> {
        self.read(move |c| consents::get(c, id)).await
    }

    /// Consent records, newest first.
    pub async fn consents(&self, filter: ConsentFilter) -> Result<Vec<Consent>, StoreError> {
        self.read(move |c| consents::list(c, &filter)).await
    }

    /// Whether a prune can shrink the file (incremental auto-vacuum is on).
    pub async fn can_shrink(&self) -> Result<bool, StoreError> {
        self.read(retention::is_incremental).await
    }

    /// Messages waiting in the queue (cheap: the queue's counts).
    pub async fn queued_total(&self) -> Result<u64, StoreError> {
        self.read(query::queued_total).await
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

/// Count committed suppressions by reason (`smsgw_messages_suppressed_total`).
fn count_suppressed<'a>(reasons: impl Iterator<Item = &'a str>) {
    for reason in reasons {
        ::metrics::counter!(crate::metrics::SUPPRESSED, "reason" => reason.to_string()).increment(1);
    }
}

/// Webhook subscriptions as their owners manage them (`subscriptions`).
/// `owner`: Some(key) sees and changes only that key's; None (admin) all.
impl Store {
    pub async fn create_subscription(&self, new: NewSubscription) -> Result<SubscriptionView, StoreError> {
        self.write(move |c| Ok(subscriptions::create(c, &new, now_ms())?)).await
    }

    pub async fn subscription(&self, id: i64, owner: Option<String>) -> Result<Option<SubscriptionView>, StoreError> {
        self.read(move |c| subscriptions::get(c, id, owner.as_deref(), now_ms())).await
    }

    pub async fn subscriptions(&self, owner: Option<String>) -> Result<Vec<SubscriptionView>, StoreError> {
        self.read(move |c| subscriptions::list(c, owner.as_deref(), now_ms())).await
    }

    pub async fn update_subscription(
        &self,
        id: i64,
        owner: Option<String>,
        patch: SubscriptionPatch,
    ) -> Result<Managed<SubscriptionView>, StoreError> {
        self.write(move |c| Ok(subscriptions::update(c, id, owner.as_deref(), &patch, now_ms())?)).await
    }

    /// Delete a subscription with its deliveries (pending ones are never sent).
    pub async fn delete_subscription(&self, id: i64, owner: Option<String>) -> Result<Managed<()>, StoreError> {
        self.write(move |c| Ok(subscriptions::delete(c, id, owner.as_deref())?)).await
    }

    /// Make `secret` the newest signing secret; the older ones sign for
    /// `expire_old_ms` more.
    pub async fn rotate_subscription_secret(
        &self,
        id: i64,
        owner: Option<String>,
        secret: String,
        expire_old_ms: Millis,
    ) -> Result<Managed<SubscriptionView>, StoreError> {
        self.write(move |c| Ok(subscriptions::rotate(c, id, owner.as_deref(), &secret, expire_old_ms, now_ms())?)).await
    }

    /// A subscription's deliveries with their attempts; None when unseen.
    pub async fn subscription_deliveries(
        &self,
        id: i64,
        owner: Option<String>,
        filter: DeliveryFilter,
    ) -> Result<Option<Vec<DeliveryView>>, StoreError> {
        self.read(move |c| subscriptions::deliveries(c, id, owner.as_deref(), &filter)).await
    }

    /// Finished deliveries of a subscription go back to pending, due now.
    pub async fn replay_deliveries(
        &self,
        id: i64,
        owner: Option<String>,
        which: ReplaySelect,
    ) -> Result<ReplayOutcome, StoreError> {
        self.write(move |c| Ok(subscriptions::replay(c, id, owner.as_deref(), which, now_ms())?)).await
    }
}

#[cfg(test)]
mod tests;
