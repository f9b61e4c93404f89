//! Filling a store fast for the benchmark: millions of messages in a mix of
//! states and ages, written with a few large `INSERT ... SELECT`s in big
//! transactions instead of through the API, so ten million take minutes.

use super::{Store, StoreError};
use crate::message::Millis;
use rusqlite::{Connection, params};
use std::path::Path;

/// Messages per transaction while filling.
const CHUNK: i64 = 250_000;
const DAY: Millis = 24 * 3600 * 1000;

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
    if path.exists() {
        return Err(StoreError::Unavailable(format!("{} exists; the fill needs a new file", path.display())));
    }
    // Create the file with its schema (and incremental auto-vacuum) the way
    // the daemon would, then let go of it.
    let store = Store::open(path)?;
    store.close().await;
    drop(store);
    let (path, route) = (path.to_path_buf(), route.to_string());
    tokio::task::spawn_blocking(move || fill(&path, n, &route, days, now, progress))
        .await
        .map_err(|_| StoreError::Closed)?
}

fn fill(
    path: &Path,
    n: i64,
    route: &str,
    days: i64,
    now: Millis,
    mut progress: impl FnMut(i64),
) -> Result<(), StoreError> {
    let c = Connection::open(path)?;
    // A benchmark's data: losing it on a crash costs only a rerun.
    c.execute_batch("PRAGMA synchronous = OFF; PRAGMA cache_size = -1000000;")?;
    let span = days * DAY;
    let mut from = 1;
    while from <= n {
        let to = (from + CHUNK - 1).min(n);
        c.execute_batch("BEGIN")?;
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
        c.execute_batch("COMMIT")?;
        progress(to);
        from = to + 1;
    }
    c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
    Ok(())
}
