//! The message counts (`message_counts` by status, `queue_counts` by route
//! and class) that `/metrics` and `/v1/queue` read, and the messages each
//! API key made each UTC day (`key_days`) that its daily quota is held
//! against. Every status change
//! moves two of them, so written at once they were a dozen upserts per
//! message's life on the writer's one thread. On the writer the changes are
//! summed in memory instead, per job and then per group, and written once
//! per group just before its commit (`flush`): a reader sees the counts
//! exact at every commit, and a job that is undone takes its changes with it.
//! Anywhere else (a connection of its own, as in tests) each change is
//! written at once.

use crate::message::{Millis, Status};
use rusqlite::{Connection, OptionalExtension, params};
use std::cell::RefCell;
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Status(&'static str),
    Queue(String, i64),
    /// An API key and a UTC day (its midnight).
    Made(String, Millis),
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

/// Count `n` more messages made by `api_key` on the UTC day starting at `day`.
pub(super) fn created(c: &Connection, api_key: &str, day: Millis, n: i64) -> rusqlite::Result<()> {
    add(c, Key::Made(api_key.to_string(), day), n)
}

/// The messages `api_key` made on the UTC day starting at `day`: those
/// written, and those of this group not written yet.
pub(super) fn created_on(c: &Connection, api_key: &str, day: Millis) -> rusqlite::Result<i64> {
    let written: i64 = c
        .prepare_cached("SELECT n FROM key_days WHERE api_key = ?1 AND day = ?2")?
        .query_row(params![api_key, day], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    let key = Key::Made(api_key.to_string(), day);
    let summed = SUMS.with_borrow(|sums| {
        sums.as_ref().map_or(0, |s| s.job.get(&key).copied().unwrap_or(0) + s.group.get(&key).copied().unwrap_or(0))
    });
    Ok(written + summed)
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
        Key::Made(api_key, day) => c
            .prepare_cached(
                "INSERT INTO key_days (api_key, day, n) VALUES (?1, ?2, ?3)
                 ON CONFLICT (api_key, day) DO UPDATE SET n = n + ?3",
            )?
            .execute(params![api_key, day, n])?,
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
