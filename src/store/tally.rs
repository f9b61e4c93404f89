//! The message counts (`message_counts` by status, `queue_counts` by route
//! and class) that `/metrics` and `/v1/queue` read. Every status change
//! moves two of them, so written at once they were a dozen upserts per
//! message's life on the writer's one thread. On the writer the changes are
//! summed in memory instead, per job and then per group, and written once
//! per group just before its commit (`flush`): a reader sees the counts
//! exact at every commit, and a job that is undone takes its changes with it.
//! Anywhere else (a connection of its own, as in tests) each change is
//! written at once.

use crate::message::Status;
use rusqlite::{Connection, params};
use std::cell::RefCell;
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Status(&'static str),
    Queue(String, i64),
}

/// The writer's sums: the running job's, and the group's jobs that ran.
#[derive(Default)]
struct Sums {
    job: HashMap<Key, i64>,
    group: HashMap<Key, i64>,
}

thread_local! {
    /// Present on the writer's thread only (see `batch`).
    static SUMS: RefCell<Option<Sums>> = const { RefCell::new(None) };
}

/// Sum the counts on this thread from now on (the writer calls it once).
pub(super) fn batch() {
    SUMS.set(Some(Sums::default()));
}

/// Add `n` (may be negative) to the messages counted in `status`.
pub(super) fn status(c: &Connection, status: Status, n: i64) -> rusqlite::Result<()> {
    add(c, Key::Status(status.as_str()), n)
}

/// Add `n` (may be negative) to the queued messages of `route` and class `priority`.
pub(super) fn queue(c: &Connection, route: &str, priority: i64, n: i64) -> rusqlite::Result<()> {
    add(c, Key::Queue(route.to_string(), priority), n)
}

fn add(c: &Connection, key: Key, n: i64) -> rusqlite::Result<()> {
    let unsummed = SUMS.with_borrow_mut(|sums| match sums {
        Some(s) => {
            *s.job.entry(key).or_default() += n;
            None
        }
        None => Some(key),
    });
    match unsummed {
        Some(key) => write(c, &key, n),
        None => Ok(()),
    }
}

fn write(c: &Connection, key: &Key, n: i64) -> rusqlite::Result<()> {
    match key {
        Key::Status(status) => c
            .prepare_cached(
                "INSERT INTO message_counts (status, n) VALUES (?1, ?2) ON CONFLICT (status) DO UPDATE SET n = n + ?2",
            )?
            .execute(params![status, n])?,
        Key::Queue(route, priority) => c
            .prepare_cached(
                "INSERT INTO queue_counts (route, priority, n) VALUES (?1, ?2, ?3)
                 ON CONFLICT (route, priority) DO UPDATE SET n = n + ?3",
            )?
            .execute(params![route, priority, n])?,
    };
    Ok(())
}

/// The running job ended: its changes join the group's (`kept`), or are
/// dropped with its rolled-back writes.
pub(super) fn job_ended(kept: bool) {
    SUMS.with_borrow_mut(|sums| {
        if let Some(s) = sums {
            if kept {
                for (key, n) in s.job.drain() {
                    *s.group.entry(key).or_default() += n;
                }
            } else {
                s.job.clear();
            }
        }
    });
}

/// A group begins (or begins again after a rollback): forget every change
/// summed before.
pub(super) fn discard() {
    SUMS.with_borrow_mut(|sums| {
        if let Some(s) = sums {
            s.job.clear();
            s.group.clear();
        }
    });
}

/// Write the group's changes (those that did not cancel out) inside its
/// transaction, before the commit.
pub(super) fn flush(c: &Connection) -> rusqlite::Result<()> {
    let group = SUMS.with_borrow_mut(|sums| sums.as_mut().map(|s| std::mem::take(&mut s.group)));
    for (key, n) in group.unwrap_or_default() {
        if n != 0 {
            write(c, &key, n)?;
        }
    }
    Ok(())
}
