//! The single writer: one thread owns the read-write connection and commits
//! whatever jobs are waiting in one transaction (group commit). One failing
//! job never takes the others with it, and every caller hears back only
//! after the commit is durable. The rare statement SQLite refuses inside a
//! transaction (`VACUUM`) runs alone, between groups. It also remembers when
//! the disk last refused a write, for readiness.

use super::StoreError;
use rusqlite::Connection;
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How long a write the disk refused keeps the store not ready (after that
/// a passing ping is believed again, so a freed disk is noticed even when
/// no traffic comes to prove it).
pub(super) const FAILURE_HOLDS: Duration = Duration::from_secs(30);

/// The last time the disk refused a write, and why.
#[derive(Default)]
pub(super) struct Health(Mutex<Option<(Instant, String)>>);

impl Health {
    fn failed(&self, why: String) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), why));
    }

    /// The failure and how long ago, if within `holds`.
    pub(super) fn recent_failure(&self, holds: Duration) -> Option<(Duration, String)> {
        let guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().map(|(at, why)| (at.elapsed(), why.clone())).filter(|(ago, _)| *ago < holds)
    }
}

/// Jobs committed together at most; bounds the latency one commit adds.
const MAX_GROUP: usize = 1024;

pub(super) trait Job: Send {
    /// Run inside the open transaction; false means roll this job back. A
    /// job may be run again after its group was rolled back; the last run
    /// is the one that counts.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Tell the caller, once the transaction's fate is known.
    fn finish(self: Box<Self>, commit: Result<(), StoreError>);
    /// Why the disk refused this job's writes, if it did.
    fn storage_failure(&self) -> Option<String>;
}

pub(super) enum Msg {
    Job(Box<dyn Job>),
    /// Runs between groups, outside any transaction.
    Alone(Box<dyn Job>),
    Close(oneshot::Sender<()>),
}

pub(super) struct FnJob<T, F> {
    f: F,
    result: Option<Result<T, StoreError>>,
    tx: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> FnJob<T, F> {
    pub(super) fn new(f: F, tx: oneshot::Sender<Result<T, StoreError>>) -> Self {
        FnJob { f, result: None, tx }
    }
}

impl<T, F> Job for FnJob<T, F>
where
    T: Send,
    F: Fn(&Connection) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let r = (self.f)(conn);
        let ok = r.is_ok();
        self.result = Some(r);
        ok
    }

    fn finish(self: Box<Self>, commit: Result<(), StoreError>) {
        let out = match (self.result, commit) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(v)), Ok(())) => Ok(v),
            (_, Err(e)) => Err(e),
            (None, Ok(())) => Err(StoreError::Closed),
        };
        let _ = self.tx.send(out);
    }

    fn storage_failure(&self) -> Option<String> {
        match &self.result {
            Some(Err(StoreError::Storage(why))) => Some(why.clone()),
            _ => None,
        }
    }
}

/// Who waits for new outbox events: each reader of the outbox its own
/// `Notify`, so one wake reaches every one of them.
#[derive(Default)]
pub(super) struct OutboxWake {
    pub webhooks: std::sync::Arc<tokio::sync::Notify>,
    pub smpp: std::sync::Arc<tokio::sync::Notify>,
}

impl OutboxWake {
    fn notify(&self) {
        self.webhooks.notify_one();
        self.smpp.notify_one();
    }
}

pub(super) fn run(mut conn: Connection, rx: mpsc::Receiver<Msg>, health: &Health, outbox: &OutboxWake) {
    super::tally::batch();
    let mut closing = None;
    while closing.is_none() {
        let Ok(first) = rx.recv() else { break };
        let mut batch = Vec::new();
        let mut alone = None;
        match first {
            Msg::Job(j) => batch.push(j),
            Msg::Alone(j) => alone = Some(j),
            Msg::Close(done) => closing = Some(done),
        }
        while closing.is_none() && alone.is_none() && batch.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(Msg::Job(j)) => batch.push(j),
                Ok(Msg::Alone(j)) => alone = Some(j),
                Ok(Msg::Close(done)) => closing = Some(done),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            commit_group(&mut conn, batch, health);
            // One wake per group that wrote events (a rolled-back one only
            // costs a look).
            if super::events::take_emitted() {
                outbox.notify();
            }
        }
        if let Some(mut j) = alone {
            let ok = j.run(&conn);
            // Outside a transaction each statement commits alone; so do its counts.
            super::tally::job_ended(ok);
            j.finish(if ok {
                super::tally::flush(&conn).map_err(|e| StoreError::from_sqlite("count", &e))
            } else {
                Err(StoreError::Unavailable("the statement failed".into()))
            });
        }
    }
    // Fold the WAL back into the main file so the next start is quick.
    if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
        tracing::warn!(error = %e, "WAL checkpoint at close failed");
    }
    drop(conn);
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

/// Run one of the writer's fixed statements, prepared once.
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Commit `batch` in one transaction. The jobs first run straight, one
/// after another: a savepoint per job would make SQLite copy every page a
/// job touches first into a journal of its own, about a tenth of the
/// writer's time. Jobs fail only when SQLite does, so that pass nearly
/// always commits; when one fails, the whole transaction is rolled back and
/// the group runs again with a savepoint per job, so the failing job alone
/// is undone.
fn commit_group(conn: &mut Connection, mut batch: Vec<Box<dyn Job>>, health: &Health) {
    let started = std::time::Instant::now();
    let mut ran = run_group(conn, &mut batch, false);
    if matches!(ran, Ok(false)) {
        // The failure may have ended the transaction already (SQLite rolls
        // back by itself on a full disk), so this may find none to end.
        let _ = exec(conn, "ROLLBACK");
        ran = run_group(conn, &mut batch, true);
    }
    let commit = ran.and_then(|_| {
        super::tally::flush(conn).and_then(|()| exec(conn, "COMMIT")).map_err(|e| {
            let err = StoreError::from_sqlite("commit", &e);
            tracing::error!(error = %err, "store commit failed; the whole group was rolled back");
            let _ = exec(conn, "ROLLBACK");
            err
        })
    });
    metrics::histogram!(crate::metrics::COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
    let failure = match &commit {
        Err(StoreError::Storage(why)) => Some(why.clone()),
        _ => batch.iter().find_map(|j| j.storage_failure()),
    };
    if let Some(why) = failure {
        health.failed(why);
    }
    for j in batch {
        j.finish(commit.clone());
    }
}

/// Open the group's transaction and run its jobs: straight, stopping at the
/// first that fails (`Ok(false)`, the transaction left open for the caller
/// to roll back), or each in a savepoint of its own (`careful`).
fn run_group(conn: &Connection, batch: &mut [Box<dyn Job>], careful: bool) -> Result<bool, StoreError> {
    // Whatever a rolled-back pass or group summed is gone with it.
    super::tally::discard();
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
        let err = StoreError::from_sqlite("begin transaction", &e);
        tracing::error!(error = %err, "store write failed");
        return Err(err);
    }
    for j in batch.iter_mut() {
        if !careful {
            let ok = j.run(conn);
            super::tally::job_ended(ok);
            if !ok {
                return Ok(false);
            }
            continue;
        }
        let ok = exec(conn, "SAVEPOINT job").is_ok() && j.run(conn);
        super::tally::job_ended(ok);
        let end = if ok {
            exec(conn, "RELEASE job")
        } else {
            exec(conn, "ROLLBACK TO job").and_then(|()| exec(conn, "RELEASE job"))
        };
        if let Err(e) = end {
            tracing::error!(error = %e, "savepoint end failed");
        }
    }
    Ok(true)
}
