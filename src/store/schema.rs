//! Schema migrations: an ordered list of SQL scripts, applied at start-up
//! inside one transaction each, tracked by SQLite's `user_version`.

use rusqlite::Connection;

/// Each entry moves the schema from version `i` to `i + 1`. Append only.
const MIGRATIONS: &[&str] = &[
    // 1: messages, their parts at the route, their history, idempotency.
    r#"
CREATE TABLE messages (
    id          INTEGER PRIMARY KEY,
    api_key     TEXT    NOT NULL,
    reference   TEXT,
    recipient   TEXT    NOT NULL,
    sender      TEXT,
    body        TEXT    NOT NULL,
    encoding    TEXT    NOT NULL,
    segments    INTEGER NOT NULL,
    priority    INTEGER NOT NULL,
    route       TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    send_at     INTEGER,
    due_at      INTEGER NOT NULL,
    valid_until INTEGER,
    attempts    INTEGER NOT NULL DEFAULT 0,
    error_code  TEXT,
    error_text  TEXT
);
CREATE INDEX messages_queue     ON messages(route, priority, due_at, id) WHERE status = 'queued';
CREATE INDEX messages_expiry    ON messages(valid_until) WHERE status = 'queued' AND valid_until IS NOT NULL;
CREATE INDEX messages_status    ON messages(status, id);
CREATE INDEX messages_recipient ON messages(recipient, id);

CREATE TABLE parts (
    message_id   INTEGER NOT NULL,
    idx          INTEGER NOT NULL,
    route        TEXT    NOT NULL,
    remote_id    TEXT,
    status       TEXT    NOT NULL,
    error_code   TEXT,
    error_text   TEXT,
    submitted_at INTEGER NOT NULL,
    done_at      INTEGER,
    PRIMARY KEY (message_id, idx)
) WITHOUT ROWID;
CREATE INDEX parts_remote ON parts(route, remote_id);

CREATE TABLE history (
    message_id INTEGER NOT NULL,
    at         INTEGER NOT NULL,
    status     TEXT    NOT NULL,
    detail     TEXT
);
CREATE INDEX history_message ON history(message_id);

CREATE TABLE idempotency (
    api_key    TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    body_hash  BLOB    NOT NULL,
    response   TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (api_key, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_age ON idempotency(created_at);

-- Delivery reports that arrived before the submit result they belong to
-- was recorded; matched when that part is written.
CREATE TABLE early_receipts (
    route      TEXT    NOT NULL,
    remote_id  TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    error_code TEXT,
    error_text TEXT,
    at         INTEGER NOT NULL,
    PRIMARY KEY (route, remote_id)
) WITHOUT ROWID;
"#,
    // 2: inbound messages, and the parts of concatenated ones still waiting
    // for their siblings (kept on disk so an acknowledged part survives a
    // crash).
    r#"
CREATE TABLE inbound (
    id          INTEGER PRIMARY KEY,
    route       TEXT    NOT NULL,
    sender      TEXT    NOT NULL,
    recipient   TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    parts       INTEGER NOT NULL,
    complete    INTEGER NOT NULL,
    sent_at     INTEGER,
    received_at INTEGER NOT NULL
);
CREATE TABLE inbound_parts (
    route       TEXT    NOT NULL,
    sender      TEXT    NOT NULL,
    reference   INTEGER NOT NULL,
    total       INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    recipient   TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    sent_at     INTEGER,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (route, sender, reference, total, seq)
) WITHOUT ROWID;
CREATE INDEX inbound_parts_age ON inbound_parts(received_at);
"#,
    // 3: a PDU from a modem that could not be decoded is kept as it came,
    // with the reason, so it can leave the SIM without being lost.
    r#"
ALTER TABLE inbound ADD COLUMN pdu TEXT;
ALTER TABLE inbound ADD COLUMN undecodable TEXT;
"#,
    // 4: a long message's concatenation reference and its number of parts
    // at the route, so a retry resumes where the last attempt stopped and
    // the message is final only once every part was sent; the network's
    // time on a report (TP-SCTS), to tell apart parts whose ids came round
    // again.
    r#"
ALTER TABLE messages ADD COLUMN concat_ref INTEGER;
ALTER TABLE messages ADD COLUMN parts_total INTEGER;
ALTER TABLE parts ADD COLUMN sc_time INTEGER;
ALTER TABLE early_receipts ADD COLUMN sc_time INTEGER;
"#,
    // 5: a key's own messages, newest first (lists for keys without admin),
    // and how many it created today (its daily quota), both from the index
    // alone: ids grow with created_at, so counting back from the newest
    // stops at the first message from before midnight.
    r#"
CREATE INDEX messages_by_key ON messages(api_key, id, created_at);
"#,
    // 6: retention and counts without scans. Indexes that let pruning find
    // old rows directly; counts of messages by status and of the queue by
    // route and priority, kept by triggers so every statement that inserts,
    // deletes or moves a message keeps them exact in its own transaction.
    r#"
CREATE INDEX messages_finished ON messages(updated_at)
    WHERE status IN ('delivered', 'undelivered', 'expired', 'failed', 'cancelled');
CREATE INDEX inbound_age ON inbound(received_at);
CREATE INDEX early_receipts_age ON early_receipts(at);

CREATE TABLE message_counts (
    status TEXT    PRIMARY KEY,
    n      INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE queue_counts (
    route    TEXT    NOT NULL,
    priority INTEGER NOT NULL,
    n        INTEGER NOT NULL,
    PRIMARY KEY (route, priority)
) WITHOUT ROWID;
INSERT INTO message_counts (status, n) SELECT status, count(*) FROM messages GROUP BY status;
INSERT INTO queue_counts (route, priority, n)
    SELECT route, priority, count(*) FROM messages WHERE status = 'queued' GROUP BY route, priority;

CREATE TRIGGER messages_counted_in AFTER INSERT ON messages BEGIN
    INSERT INTO message_counts (status, n) VALUES (NEW.status, 1)
        ON CONFLICT (status) DO UPDATE SET n = n + 1;
    INSERT INTO queue_counts (route, priority, n) SELECT NEW.route, NEW.priority, 1 WHERE NEW.status = 'queued'
        ON CONFLICT (route, priority) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER messages_counted_out AFTER DELETE ON messages BEGIN
    UPDATE message_counts SET n = n - 1 WHERE status = OLD.status;
    UPDATE queue_counts SET n = n - 1
        WHERE OLD.status = 'queued' AND route = OLD.route AND priority = OLD.priority;
END;
CREATE TRIGGER messages_counted_status AFTER UPDATE OF status ON messages
    WHEN OLD.status IS NOT NEW.status BEGIN
    UPDATE message_counts SET n = n - 1 WHERE status = OLD.status;
    INSERT INTO message_counts (status, n) VALUES (NEW.status, 1)
        ON CONFLICT (status) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER messages_counted_queue AFTER UPDATE OF status, route, priority ON messages
    WHEN (OLD.status = 'queued' OR NEW.status = 'queued')
     AND (OLD.status IS NOT NEW.status OR OLD.route IS NOT NEW.route OR OLD.priority IS NOT NEW.priority) BEGIN
    UPDATE queue_counts SET n = n - 1
        WHERE OLD.status = 'queued' AND route = OLD.route AND priority = OLD.priority;
    INSERT INTO queue_counts (route, priority, n) SELECT NEW.route, NEW.priority, 1 WHERE NEW.status = 'queued'
        ON CONFLICT (route, priority) DO UPDATE SET n = n + 1;
END;
"#,
    // 7: what closes the loop with LAN services. The outbox (`events`): one
    // row per thing that happened, written in the transaction that made it
    // happen, read by the webhook deliverer. A message's own callback URL.
    // The opt-out registry and the consent records that policy enforces;
    // `suppressed` is final, so retention prunes it like the other ends.
    // An inbound message's link to the message it answers, and what its
    // text means (a keyword's action, a yes or no). Webhook subscriptions
    // and their deliveries, each attempt kept for the API.
    r#"
DROP INDEX messages_finished;
CREATE INDEX messages_finished ON messages(updated_at)
    WHERE status IN ('delivered', 'undelivered', 'expired', 'failed', 'cancelled', 'suppressed');
ALTER TABLE messages ADD COLUMN callback_url TEXT;

CREATE TABLE events (
    id         INTEGER PRIMARY KEY,
    kind       TEXT    NOT NULL,
    at         INTEGER NOT NULL,
    api_key    TEXT,
    message_id INTEGER,
    inbound_id INTEGER,
    subject    TEXT,
    data       TEXT
);
CREATE INDEX events_age ON events(at);

CREATE TABLE optouts (
    number     TEXT    NOT NULL,
    scope      TEXT    NOT NULL,
    source     TEXT    NOT NULL,
    route      TEXT,
    api_key    TEXT,
    inbound_id INTEGER,
    at         INTEGER NOT NULL,
    PRIMARY KEY (number, scope)
) WITHOUT ROWID;

CREATE TABLE consents (
    id           INTEGER PRIMARY KEY,
    number       TEXT    NOT NULL,
    scope        TEXT    NOT NULL,
    source       TEXT    NOT NULL,
    proof        TEXT,
    recorded_by  TEXT    NOT NULL,
    at           INTEGER NOT NULL,
    withdrawn_at INTEGER
);
CREATE INDEX consents_number ON consents(number, scope);

ALTER TABLE inbound ADD COLUMN reply_to INTEGER;
ALTER TABLE inbound ADD COLUMN keyword TEXT;
ALTER TABLE inbound ADD COLUMN intent TEXT;

-- Webhook subscriptions: from the config (`origin` 'config', named), made
-- through the API ('api'), or a key's endpoint for the callback URLs its
-- messages carry ('callback', no URL of its own). `secrets` is a JSON
-- array, newest first: each signs while a rotation is in progress.
CREATE TABLE webhooks (
    id              INTEGER PRIMARY KEY,
    api_key         TEXT    NOT NULL,
    name            TEXT,
    origin          TEXT    NOT NULL,
    url             TEXT,
    events          TEXT    NOT NULL,
    secrets         TEXT    NOT NULL,
    enabled         INTEGER NOT NULL DEFAULT 1,
    disabled_reason TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE UNIQUE INDEX webhooks_name ON webhooks(name) WHERE name IS NOT NULL;
-- How far the deliverer has fanned the outbox out into deliveries.
CREATE TABLE outbox_cursor (
    name     TEXT    PRIMARY KEY,
    event_id INTEGER NOT NULL
) WITHOUT ROWID;
-- One event for one subscription: pending until a 2xx (done), the end of
-- its retries (dead) or its subscription's end (disabled). Events with the
-- same `order_key` (one message's) go out one after another.
CREATE TABLE deliveries (
    webhook_id      INTEGER NOT NULL,
    event_id        INTEGER NOT NULL,
    url             TEXT,
    order_key       TEXT,
    state           TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    next_at         INTEGER NOT NULL,
    done_at         INTEGER,
    last_status     INTEGER,
    last_error      TEXT,
    last_latency_ms INTEGER,
    PRIMARY KEY (webhook_id, event_id)
) WITHOUT ROWID;
CREATE INDEX deliveries_due ON deliveries(next_at) WHERE state = 'pending';
CREATE INDEX deliveries_order ON deliveries(webhook_id, order_key, event_id) WHERE state = 'pending';
CREATE INDEX deliveries_age ON deliveries(created_at);
CREATE TABLE delivery_attempts (
    webhook_id  INTEGER NOT NULL,
    event_id    INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    http_status INTEGER,
    latency_ms  INTEGER NOT NULL,
    error       TEXT
);
CREATE INDEX delivery_attempts_of ON delivery_attempts(webhook_id, event_id);
CREATE INDEX delivery_attempts_age ON delivery_attempts(at);
"#,
    // 8: a subscription's delivery health read cheaply, from its own rows
    // only: its last success and its pending and dead counts, and its failed
    // attempts of the last day.
    r#"
CREATE INDEX deliveries_health ON deliveries(webhook_id, state, done_at);
CREATE INDEX delivery_attempts_recent ON delivery_attempts(webhook_id, at);
"#,
    // 9: trigger rules. Events posted by services (`trigger_events`,
    // idempotent by the key's own id), the rules (from the config file or the
    // API), each time a rule matched an event (`rule_runs`: scheduled, or why
    // not), the messages a rule made (their rule, step, the event's key and
    // the recipient's time zone on `messages`; a scheduled step is a queued
    // message whose `due_at` is ahead), what cancelled one, the conversions
    // counted for a rule, and the ledger frequency caps count (`sends`).
    r#"
ALTER TABLE messages ADD COLUMN tz TEXT;
ALTER TABLE messages ADD COLUMN rule TEXT;
ALTER TABLE messages ADD COLUMN step INTEGER;
ALTER TABLE messages ADD COLUMN trigger_key TEXT;
ALTER TABLE messages ADD COLUMN run_id INTEGER;
ALTER TABLE messages ADD COLUMN cancelled_by TEXT;
CREATE INDEX messages_rule    ON messages(rule, status) WHERE rule IS NOT NULL;
CREATE INDEX messages_trigger ON messages(trigger_key, rule, status) WHERE trigger_key IS NOT NULL;
CREATE INDEX messages_run     ON messages(run_id) WHERE run_id IS NOT NULL;

CREATE TABLE trigger_events (
    id          INTEGER PRIMARY KEY,
    api_key     TEXT    NOT NULL,
    ext_id      TEXT,
    type        TEXT    NOT NULL,
    recipient   TEXT,
    key         TEXT,
    tz          TEXT,
    locale      TEXT,
    data        TEXT    NOT NULL,
    occurred_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX trigger_events_ext ON trigger_events(api_key, ext_id) WHERE ext_id IS NOT NULL;
CREATE INDEX trigger_events_key ON trigger_events(key, type, occurred_at) WHERE key IS NOT NULL;
CREATE INDEX trigger_events_age ON trigger_events(received_at);

CREATE TABLE rules (
    name       TEXT    PRIMARY KEY,
    origin     TEXT    NOT NULL,
    api_key    TEXT,
    spec       TEXT    NOT NULL,
    enabled    INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE rule_runs (
    id        INTEGER PRIMARY KEY,
    rule      TEXT    NOT NULL,
    event_id  INTEGER NOT NULL,
    key       TEXT,
    recipient TEXT,
    at        INTEGER NOT NULL,
    outcome   TEXT    NOT NULL,
    detail    TEXT
);
CREATE INDEX rule_runs_key       ON rule_runs(rule, key, at) WHERE key IS NOT NULL;
CREATE INDEX rule_runs_recipient ON rule_runs(rule, recipient, at);
CREATE INDEX rule_runs_outcome   ON rule_runs(rule, outcome);

CREATE TABLE conversions (
    message_id INTEGER PRIMARY KEY,
    rule       TEXT    NOT NULL,
    event_id   INTEGER NOT NULL,
    at         INTEGER NOT NULL
);
CREATE INDEX conversions_rule ON conversions(rule);

CREATE TABLE sends (
    recipient  TEXT    NOT NULL,
    priority   INTEGER NOT NULL,
    at         INTEGER NOT NULL,
    message_id INTEGER NOT NULL
);
CREATE INDEX sends_recipient ON sends(recipient, priority, at);
CREATE INDEX sends_age ON sends(at);
"#,
    // 10: receipts owed to SMPP server accounts, each until its deliver_sm is
    // acknowledged (or dead after the configured time); the cursor is the
    // `outbox_cursor` row named `smpp`.
    r#"
CREATE TABLE smpp_outbox (
    id         INTEGER PRIMARY KEY,
    account    TEXT    NOT NULL,
    event_id   INTEGER NOT NULL,
    message_id INTEGER NOT NULL,
    state      TEXT    NOT NULL DEFAULT 'pending',
    attempts   INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    next_at    INTEGER NOT NULL,
    last_error TEXT,
    UNIQUE (account, event_id)
);
CREATE INDEX smpp_outbox_due ON smpp_outbox(account, state, next_at);
"#,
    // 11: the parts of long messages SMPP server accounts submit, each kept
    // until the part completing its set joins them into the message made by
    // the first part (`message_id`), or the join timeout stores the set as
    // incomplete; then a marker row (seq 0, no data) answers parts sent again
    // for one more timeout. And the receipts a message's `registered_delivery`
    // asks for (`messages.receipt`; NULL: not an SMPP message, every final
    // status).
    r#"
CREATE TABLE smpp_parts (
    account    TEXT    NOT NULL,
    source     TEXT    NOT NULL,
    dest       TEXT    NOT NULL,
    ref        INTEGER NOT NULL,
    total      INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    message_id INTEGER NOT NULL,
    coding     INTEGER NOT NULL,
    data       BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (account, source, dest, ref, total, seq)
) WITHOUT ROWID;
CREATE INDEX smpp_parts_age ON smpp_parts(created_at);
CREATE INDEX smpp_parts_message ON smpp_parts(message_id);
ALTER TABLE messages ADD COLUMN receipt INTEGER;
"#,
    // 12: the SMPP server's accounts: a message of an account that policy does
    // not apply to (`policy = false`) is marked exempt, so its claim skips
    // opt-outs, quiet hours and caps as its accept did; an inbound message
    // routed to an account is owed to it as an `smpp_outbox` row with its
    // `inbound_id` (and `message_id` 0: there is no message).
    r#"
ALTER TABLE messages ADD COLUMN exempt INTEGER NOT NULL DEFAULT 0;
ALTER TABLE smpp_outbox ADD COLUMN inbound_id INTEGER;
"#,
    // 13: what the writer does per message and per event, cut to what is
    // read. A message's counts are kept by the code that inserts it or
    // changes its status or route (`messages::count_new`, `moved`,
    // `rerouted`) instead of triggers: a trigger makes SQLite keep a
    // statement journal for each such INSERT and UPDATE, which cost the
    // writer a third of its time. (A delete, rare and in bulk, keeps its
    // trigger.) Posted events are pruned in id order (ids grow with
    // arrival), so their age index goes; a replayed event finds its runs by
    // `rule_runs_event` instead of reading every run.
    r#"
DROP TRIGGER messages_counted_in;
DROP TRIGGER messages_counted_status;
DROP TRIGGER messages_counted_queue;
DROP INDEX trigger_events_age;
CREATE INDEX rule_runs_event ON rule_runs(event_id);
"#,
    // 14: the finished-messages index names the open statuses instead of
    // the six final ones. SQLite evaluates a partial index's condition for
    // the old and the new row of every UPDATE of `updated_at`, which is
    // every status change, and a constant IN list of more than two values
    // makes it build a temporary b-tree each time; two values and one
    // inequality are plain comparisons. The rows it holds are the same.
    // Events are pruned in id order (ids grow with time), so their age
    // index, an entry for each of a message's two or more events, goes.
    r#"
DROP INDEX messages_finished;
CREATE INDEX messages_finished ON messages(updated_at)
    WHERE status NOT IN ('queued', 'sending') AND status <> 'submitted';
DROP INDEX events_age;
"#,
    // 15: the messages each API key made each UTC day, kept as they are
    // made (`tally`), so a daily quota reads one row instead of counting
    // the key's messages since midnight on every request. Only today's
    // count is ever read; older days are pruned.
    r#"
CREATE TABLE key_days (
    api_key TEXT    NOT NULL,
    day     INTEGER NOT NULL,
    n       INTEGER NOT NULL,
    PRIMARY KEY (api_key, day)
) WITHOUT ROWID;
INSERT INTO key_days (api_key, day, n)
    SELECT api_key, created_at - created_at % 86400000, count(*) FROM messages
    WHERE created_at >= unixepoch() / 86400 * 86400000 GROUP BY 1, 2;
"#,
    // 16: the opt-out registry newest first from an index. Each page of
    // `GET /v1/optouts` (and of its CSV export, a page per thousand) sorted
    // the whole registry: an export took time in the square of its size.
    r#"
CREATE INDEX optouts_recent ON optouts(at, number, scope);
"#,
    // 17: a delivery's successful attempt is kept on its `deliveries` row
    // alone (`last_status`, `last_latency_ms`, `done_at` = when the answer
    // came), not also as an attempt row: every done delivery wrote the same
    // facts twice. Attempt rows are the ones that did not end it well.
    r#"
CREATE TEMP TABLE final_successes AS
    SELECT a.rowid AS attempt, a.webhook_id, a.event_id, a.at + a.latency_ms AS answered, a.http_status,
           a.latency_ms, a.error
    FROM delivery_attempts a JOIN deliveries d ON d.webhook_id = a.webhook_id AND d.event_id = a.event_id
    WHERE d.state = 'done' AND a.http_status BETWEEN 200 AND 299
      AND a.rowid = (SELECT max(b.rowid) FROM delivery_attempts b
                     WHERE b.webhook_id = a.webhook_id AND b.event_id = a.event_id);
UPDATE deliveries SET done_at = f.answered, last_status = f.http_status, last_latency_ms = f.latency_ms,
                      last_error = f.error
    FROM final_successes f WHERE f.webhook_id = deliveries.webhook_id AND f.event_id = deliveries.event_id;
DELETE FROM delivery_attempts WHERE rowid IN (SELECT attempt FROM final_successes);
DROP TABLE final_successes;
"#,
    // 18: an inbound message keeps the key of the message it answers, so a
    // key's `GET /v1/inbound` reads its replies from an index instead of
    // walking every key's inbound; the replies linked to nothing, which are
    // still checked one by one, have an index of their own.
    r#"
ALTER TABLE inbound ADD COLUMN api_key TEXT;
UPDATE inbound SET api_key = (SELECT m.api_key FROM messages m WHERE m.id = inbound.reply_to)
    WHERE reply_to IS NOT NULL;
CREATE INDEX inbound_by_key ON inbound(api_key, id) WHERE api_key IS NOT NULL;
CREATE INDEX inbound_unlinked ON inbound(id) WHERE reply_to IS NULL;
"#,
    // 19: the address a message should leave from: an auto-reply goes back
    // from where its question came to, through that SIM on a modem route
    // (its number, or its IMSI when the SIM does not know its number), from
    // that short code or number on a carrier route.
    r#"
ALTER TABLE messages ADD COLUMN via TEXT;
"#,
    // 20: the keys that may see a reply linked to no message (those that
    // wrote to its sender before it came), written when it comes, so a
    // key's `GET /v1/inbound` reads them from an index instead of checking
    // every unlinked reply in turn.
    r#"
CREATE TABLE inbound_keys (
    api_key TEXT NOT NULL,
    inbound_id INTEGER NOT NULL,
    PRIMARY KEY (api_key, inbound_id)
) WITHOUT ROWID;
CREATE INDEX inbound_keys_inbound ON inbound_keys(inbound_id);
INSERT OR IGNORE INTO inbound_keys (api_key, inbound_id)
    SELECT DISTINCT o.api_key, i.id FROM inbound i JOIN messages o INDEXED BY messages_recipient
        ON o.recipient = i.sender AND o.created_at <= i.received_at
    WHERE i.reply_to IS NULL AND o.api_key <> 'smsgw';
DROP INDEX inbound_unlinked;
"#,
    // 21: routes an operator paused: their lanes send nothing until resumed,
    // across restarts.
    r#"
CREATE TABLE route_pauses (
    route TEXT PRIMARY KEY,
    at INTEGER NOT NULL,
    by TEXT NOT NULL,
    reason TEXT
) WITHOUT ROWID;
"#,
];

pub fn latest() -> i64 {
    MIGRATIONS.len() as i64
}

/// Why the schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("cannot read schema version: {0}")]
    Version(rusqlite::Error),
    #[error("schema version {found} is newer than this smsgw understands ({known}); upgrade smsgw")]
    Newer { found: i64, known: i64 },
    #[error("migration {version}: {error}")]
    Step { version: i64, error: rusqlite::Error },
}

/// Bring the database up to the latest schema. Refuses a database written by
/// a newer smsgw instead of guessing.
pub fn migrate(conn: &mut Connection) -> Result<(), MigrateError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(MigrateError::Version)?;
    if current > latest() {
        return Err(MigrateError::Newer { found: current, known: latest() });
    }
    for (i, script) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = i as i64 + 1;
        let step = |error| MigrateError::Step { version, error };
        let tx = conn.transaction().map_err(step)?;
        tx.execute_batch(script).map_err(step)?;
        tx.pragma_update(None, "user_version", version).map_err(step)?;
        tx.commit().map_err(step)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_fresh_and_is_idempotent() {
        let mut c = Connection::open_in_memory().unwrap();
        migrate(&mut c).unwrap();
        migrate(&mut c).unwrap();
        let v: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, latest());
    }

    /// A store as version `v` of smsgw left it.
    fn at_version(v: usize) -> Connection {
        let c = Connection::open_in_memory().unwrap();
        for script in &MIGRATIONS[..v] {
            c.execute_batch(script).unwrap();
        }
        c.pragma_update(None, "user_version", v as i64).unwrap();
        c
    }

    #[test]
    fn counts_start_from_the_messages_already_stored() {
        // A store at version 2, from before the counts were kept.
        let mut c = at_version(2);
        let add = "INSERT INTO messages (api_key, recipient, body, encoding, segments, priority, route, status,
                   created_at, updated_at, due_at) VALUES ('k', '+1', 'x', 'gsm7', 1, ?1, ?2, ?3, 0, 0, 0)";
        for (pri, route, status) in [(0, "a", "queued"), (0, "a", "queued"), (2, "b", "queued"), (1, "a", "delivered")]
        {
            c.execute(add, rusqlite::params![pri, route, status]).unwrap();
        }
        migrate(&mut c).unwrap();
        let rows = |sql: &str| -> Vec<(String, i64)> {
            c.prepare(sql).unwrap().query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
        };
        assert_eq!(
            rows("SELECT status, n FROM message_counts ORDER BY status"),
            [("delivered".into(), 1), ("queued".into(), 3)]
        );
        assert_eq!(
            rows("SELECT route || '/' || priority, n FROM queue_counts ORDER BY route, priority"),
            [("a/0".into(), 2), ("b/2".into(), 1)]
        );
    }

    #[test]
    fn today_s_messages_per_key_are_counted_on_upgrade() {
        let mut c = at_version(14);
        let today = crate::message::utc_day_start(crate::message::now_ms());
        let add = "INSERT INTO messages (api_key, recipient, body, encoding, segments, priority, route, status,
                   created_at, updated_at, due_at) VALUES (?1, '+1', 'x', 'gsm7', 1, 0, 'r', 'queued', ?2, ?2, ?2)";
        for (key, at) in [("a", today), ("a", today + 5), ("a", today - 1), ("b", today + 9)] {
            c.execute(add, rusqlite::params![key, at]).unwrap();
        }
        migrate(&mut c).unwrap();
        let rows: Vec<(String, i64, i64)> = c
            .prepare("SELECT api_key, day, n FROM key_days ORDER BY api_key")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(rows, [("a".into(), today, 2), ("b".into(), today, 1)], "yesterday's message is not counted");
    }

    #[test]
    fn a_done_delivery_s_success_moves_onto_its_row_on_upgrade() {
        let mut c = at_version(16);
        let delivery = "INSERT INTO deliveries (webhook_id, event_id, state, attempts, created_at, next_at, done_at,
                        last_status) VALUES (1, ?1, ?2, 2, 0, 0, 900, ?3)";
        c.execute(delivery, rusqlite::params![1, "done", 204]).unwrap();
        c.execute(delivery, rusqlite::params![2, "dead", 500]).unwrap();
        let attempt = "INSERT INTO delivery_attempts (webhook_id, event_id, at, http_status, latency_ms)
                       VALUES (1, ?1, ?2, ?3, 5)";
        for (event, at, status) in [(1, 100, 503), (1, 200, 204), (2, 100, 500), (2, 200, 500)] {
            c.execute(attempt, rusqlite::params![event, at, status]).unwrap();
        }
        migrate(&mut c).unwrap();
        let attempts: Vec<(i64, i64)> = c
            .prepare("SELECT event_id, http_status FROM delivery_attempts ORDER BY event_id, at")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(attempts, [(1, 503), (2, 500), (2, 500)]);
        let row = |e: i64| -> (i64, Option<i64>) {
            c.query_row("SELECT done_at, last_latency_ms FROM deliveries WHERE event_id = ?1", [e], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap()
        };
        assert_eq!(row(1), (205, Some(5)), "when the success's answer came, and its latency");
        assert_eq!(row(2), (900, None), "a dead one unchanged");
    }

    #[test]
    fn a_linked_reply_takes_its_message_s_key_on_upgrade() {
        let mut c = at_version(17);
        c.execute(
            "INSERT INTO messages (id, api_key, recipient, body, encoding, segments, priority, route, status,
             created_at, updated_at, due_at) VALUES (7, 'k', '+1', 'x', 'gsm7', 1, 0, 'r', 'delivered', 0, 0, 0)",
            [],
        )
        .unwrap();
        let inbound = "INSERT INTO inbound (id, route, sender, recipient, body, parts, complete, received_at, reply_to)
                       VALUES (?1, 'r', '+1', '+2', 'yes', 1, 1, 5, ?2)";
        for (id, reply_to) in [(1, Some(7)), (2, None), (3, Some(8))] {
            c.execute(inbound, rusqlite::params![id, reply_to]).unwrap();
        }
        migrate(&mut c).unwrap();
        let keys: Vec<Option<String>> = c
            .prepare("SELECT api_key FROM inbound ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(keys, [Some("k".into()), None, None], "unlinked, and linked to a pruned message: no key");
    }

    #[test]
    fn an_unlinked_reply_is_shown_to_the_keys_that_wrote_to_its_sender_before_on_upgrade() {
        let mut c = at_version(19);
        let message = "INSERT INTO messages (id, api_key, recipient, body, encoding, segments, priority, route, status,
                       created_at, updated_at, due_at) VALUES (?1, ?2, ?3, 'x', 'gsm7', 1, 0, 'r', 'delivered', ?4, 0, 0)";
        for (id, key, to, at) in
            [(1, "a", "+1", 1), (2, "a", "+1", 2), (3, "b", "+1", 50), (4, "smsgw", "+1", 3), (5, "c", "+2", 1)]
        {
            c.execute(message, rusqlite::params![id, key, to, at]).unwrap();
        }
        let inbound = "INSERT INTO inbound (id, route, sender, recipient, body, parts, complete, received_at, reply_to)
                       VALUES (?1, 'r', ?2, 'me', 'hi', 1, 1, 10, ?3)";
        for (id, from, reply_to) in [(1, "+1", None), (2, "+1", Some(1)), (3, "+3", None)] {
            c.execute(inbound, rusqlite::params![id, from, reply_to]).unwrap();
        }
        migrate(&mut c).unwrap();
        let rows: Vec<(String, i64)> = c
            .prepare("SELECT api_key, inbound_id FROM inbound_keys ORDER BY 1, 2")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        // Key a wrote to +1 before reply 1 (b only after it; smsgw's own
        // answers give no key); reply 2 is linked; nobody wrote to +3.
        assert_eq!(rows, [("a".to_string(), 1)]);
    }

    #[test]
    fn refuses_newer_schema() {
        let mut c = Connection::open_in_memory().unwrap();
        c.pragma_update(None, "user_version", 999).unwrap();
        assert!(migrate(&mut c).unwrap_err().to_string().contains("newer"));
    }
}
