//! Filling a store fast for the benchmark: millions of messages in a mix of
//! states and ages, written with a few large `INSERT ... SELECT`s in big
//! transactions instead of through the API, so ten million take minutes.
//! And a store of pending rule timers (queued rule messages due ahead) for
//! the timers benchmark, with the two steps around its run: bring a slice
//! of them due, then read when each was submitted.

use super::{Store, StoreError};
use crate::message::Millis;
use rusqlite::{Connection, params};
use std::path::Path;

/// Messages per transaction while filling.
const CHUNK: i64 = 250_000;
const DAY: Millis = 24 * 3600 * 1000;

/// Write `n` rows in chunks of `CHUNK`, each chunk `write(c, from, to)`
/// (ids `from..=to`) in one transaction, telling `progress` after each; then
/// count the messages (the fill bypasses the insert that keeps the counts)
/// and fold the WAL back into the file.
fn in_chunks(
    path: &Path,
    n: i64,
    mut progress: impl FnMut(i64),
    mut write: impl FnMut(&Connection, i64, i64) -> rusqlite::Result<()>,
) -> Result<(), StoreError> {
    let c = Connection::open(path)?;
    // A benchmark's data: losing it on a crash costs only a rerun.
    c.execute_batch("PRAGMA synchronous = OFF; PRAGMA cache_size = -1000000;")?;
    let mut from = 1;
    while from <= n {
        let to = (from + CHUNK - 1).min(n);
        c.execute_batch("BEGIN")?;
        write(&c, from, to)?;
        c.execute_batch("COMMIT")?;
        progress(to);
        from = to + 1;
    }
    super::messages::recount(&c)?;
    c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
    Ok(())
}

/// Create the new store file at `path` (it must not exist) with its schema
/// (and incremental auto-vacuum) the way the daemon would, then let go of it.
async fn create(path: &Path) -> Result<(), StoreError> {
    if path.exists() {
        return Err(StoreError::Unavailable(format!("{} exists; the fill needs a new file", path.display())));
    }
    let store = Store::open(path)?;
    store.close().await;
    Ok(())
}

/// Create the store at `path` (it must not exist) and fill it with `n`
/// messages on route `route`, ids 1..=n, finished over the `days` before
/// `now` in id order. Of every hundred: one queued (scheduled a year
/// ahead), one submitted, four failed, five undelivered, three expired, one
/// cancelled and 85 delivered; each with one history row, and one part if it
/// reached the route. `progress` hears the messages written so far.
pub async fn fill_for_bench(
    path: &Path,
    n: i64,
    route: &str,
    days: i64,
    now: Millis,
    progress: impl FnMut(i64) + Send + 'static,
) -> Result<(), StoreError> {
    create(path).await?;
    let (path, route) = (path.to_path_buf(), route.to_string());
    tokio::task::spawn_blocking(move || fill(&path, n, &route, days, now, progress))
        .await
        .map_err(|_| StoreError::Closed)?
}

fn fill(path: &Path, n: i64, route: &str, days: i64, now: Millis, progress: impl FnMut(i64)) -> Result<(), StoreError> {
    let span = days * DAY;
    in_chunks(path, n, progress, |c, from, to| {
        c.execute(
            "WITH RECURSIVE seq(i) AS (SELECT ?1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?2)
         INSERT INTO messages (id, api_key, recipient, body, encoding, segments, priority, route, status,
                               created_at, updated_at, send_at, due_at, valid_until, attempts)
         SELECT i, 'bench', '+7916' || printf('%07d', i % 10000000),
                'Your code is ' || printf('%06d', (i * 7919) % 1000000), 'gsm7', 1, i % 3, ?3,
                CASE WHEN i % 100 = 0 THEN 'queued' WHEN i % 100 = 1 THEN 'submitted'
                     WHEN i % 100 < 6 THEN 'failed' WHEN i % 100 < 11 THEN 'undelivered'
                     WHEN i % 100 < 14 THEN 'expired' WHEN i % 100 = 14 THEN 'cancelled'
                     ELSE 'delivered' END,
                ?4 - ?5 + ?5 * i / ?6, ?4 - ?5 + ?5 * i / ?6 + 5000,
                CASE WHEN i % 100 = 0 THEN ?4 + 365 * 86400000 END,
                CASE WHEN i % 100 = 0 THEN ?4 + 365 * 86400000 ELSE ?4 - ?5 + ?5 * i / ?6 END,
                CASE WHEN i % 100 = 0 THEN ?4 + 400 * 86400000 END,
                CASE WHEN i % 100 = 0 THEN 0 ELSE 1 END
         FROM seq",
            params![from, to, route, now, span, n],
        )?;
        c.execute(
            "INSERT INTO parts (message_id, idx, route, remote_id, status, submitted_at, done_at)
         SELECT id, 0, route, printf('%016x', id), status, updated_at - 4000,
                CASE WHEN status = 'submitted' THEN NULL ELSE updated_at END
         FROM messages WHERE id BETWEEN ?1 AND ?2 AND status IN ('submitted', 'delivered', 'undelivered')",
            params![from, to],
        )?;
        c.execute(
            "INSERT INTO history (message_id, at, status, detail)
         SELECT id, updated_at, status, 'filled for the benchmark' FROM messages WHERE id BETWEEN ?1 AND ?2",
            params![from, to],
        )?;
        Ok(())
    })
}

/// Create the store at `path` (it must not exist) holding `n` pending timers
/// of rule `rule`: queued promotional messages on `route`, ids 1..=n, as the
/// engine makes them (rule, step, key, run), due spread over the day after
/// `now` + 1 h, valid for two days after that. `progress` hears the count.
pub async fn fill_rule_timers_for_bench(
    path: &Path,
    n: i64,
    route: &str,
    rule: &str,
    now: Millis,
    progress: impl FnMut(i64) + Send + 'static,
) -> Result<(), StoreError> {
    create(path).await?;
    let (path, route, rule) = (path.to_path_buf(), route.to_string(), rule.to_string());
    tokio::task::spawn_blocking(move || fill_timers(&path, n, &route, &rule, now, progress))
        .await
        .map_err(|_| StoreError::Closed)?
}

fn fill_timers(
    path: &Path,
    n: i64,
    route: &str,
    rule: &str,
    now: Millis,
    progress: impl FnMut(i64),
) -> Result<(), StoreError> {
    in_chunks(path, n, progress, |c, from, to| {
        c.execute(
            "WITH RECURSIVE seq(i) AS (SELECT ?1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?2)
         INSERT INTO messages (id, api_key, recipient, body, encoding, segments, priority, route, status,
                               created_at, updated_at, send_at, due_at, valid_until, attempts,
                               rule, step, trigger_key, run_id)
         SELECT i, 'bench', '+7916' || printf('%07d', i % 10000000),
                'Your cart is waiting: ' || printf('%06d', (i * 7919) % 1000000), 'gsm7', 1, 2, ?3, 'queued',
                ?4, ?4, ?4 + 3600000 + ?6 * i / ?7, ?4 + 3600000 + ?6 * i / ?7, ?4 + 3600000 + 2 * ?6, 0,
                ?5, 0, 'cart-' || i, i
         FROM seq",
            params![from, to, route, now, rule, DAY, n],
        )?;
        c.execute(
            "INSERT INTO history (message_id, at, status, detail)
         SELECT id, created_at, 'queued', 'filled for the benchmark' FROM messages WHERE id BETWEEN ?1 AND ?2",
            params![from, to],
        )?;
        c.execute(
            "INSERT INTO rule_runs (id, rule, event_id, key, recipient, at, outcome)
         SELECT id, rule, id, trigger_key, recipient, created_at, 'scheduled' FROM messages WHERE id BETWEEN ?1 AND ?2",
            params![from, to],
        )?;
        Ok(())
    })
}

/// Bring the timers with ids 1..=`slice` due between `from` and `from` +
/// `spread` (in id order), on the store file a running daemon holds: one
/// transaction of the second writer SQLite lets in. Their validity moves
/// with them.
pub fn make_timers_due_for_bench(path: &Path, slice: i64, from: Millis, spread: Millis) -> Result<(), StoreError> {
    let c = Connection::open(path)?;
    c.busy_timeout(std::time::Duration::from_secs(30))?;
    c.execute(
        "UPDATE messages SET due_at = ?2 + ?3 * (id - 1) / ?1, send_at = ?2 + ?3 * (id - 1) / ?1,
                valid_until = ?2 + ?3 + 3600000
         WHERE id <= ?1 AND status = 'queued'",
        params![slice, from, spread],
    )?;
    Ok(())
}

/// For the timers with ids 1..=`slice` that were submitted: each one's lag
/// from its due time to its submit (ms, sorted), and the first due time and
/// last submit time.
pub fn timer_lags_for_bench(path: &Path, slice: i64) -> Result<(Vec<Millis>, Millis, Millis), StoreError> {
    let c = Connection::open(path)?;
    c.busy_timeout(std::time::Duration::from_secs(30))?;
    let mut q = c.prepare(
        "SELECT m.due_at, MIN(h.at) FROM messages m JOIN history h ON h.message_id = m.id
         WHERE m.id <= ?1 AND h.status = 'submitted' GROUP BY m.id",
    )?;
    let rows = q.query_map([slice], |r| Ok((r.get::<_, Millis>(0)?, r.get::<_, Millis>(1)?)))?;
    let (mut lags, mut first_due, mut last_submit) = (Vec::new(), Millis::MAX, Millis::MIN);
    for r in rows {
        let (due, at) = r?;
        lags.push(at - due);
        first_due = first_due.min(due);
        last_submit = last_submit.max(at);
    }
    lags.sort_unstable();
    Ok((lags, first_due, last_submit))
}
