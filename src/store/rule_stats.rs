//! Per-rule statistics and the schedule of rule messages, read from the
//! rows the trigger engine writes (`rule_runs`, messages with a `rule`,
//! `inbound.reply_to`, `conversions`): what the API, `/metrics` and the
//! status page's funnel show. Nothing is counted in memory, so the numbers
//! survive a restart and agree with the messages themselves.
//!
//! Each count is one grouped statement over an index of migration 9
//! (`rule_runs_outcome`, `messages_rule`, `conversions_rule`), so a scrape
//! reads index pages, not message rows; the cancelled and suppressed
//! breakdowns and the expired-after-submit check read only the rows in
//! those states (`messages_status`).

use super::{Store, StoreError};
use crate::message::Millis;
use rusqlite::{Connection, params};
use serde::Serialize;
use std::collections::BTreeMap;

/// One rule's numbers (the JSON of `GET /v1/rules/{name}/stats`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RuleStats {
    pub rule: String,
    /// Every time the rule matched an event (all its runs).
    pub triggered: u64,
    /// Its messages queued now (waiting for their delay or their turn).
    pub scheduled: u64,
    /// Its messages cancelled, by the event type that cancelled them.
    pub cancelled: BTreeMap<String, u64>,
    /// Its messages a policy stopped, by reason (`opted_out`, `no_consent`, `capped`).
    pub suppressed: BTreeMap<String, u64>,
    /// Runs that failed (a missing variable, ...).
    pub errors: u64,
    /// Runs the rule's limit refused.
    pub limited: u64,
    /// Its messages the route took (submitted, delivered, undelivered, or
    /// expired after they were submitted).
    pub sent: u64,
    pub delivered: u64,
    /// Its messages answered by at least one inbound message.
    pub replied: u64,
    /// Its messages followed by the rule's goal event.
    pub converted: u64,
}

/// The funnel stages `/metrics` reports, in order, with the rule's count at each.
impl RuleStats {
    pub fn stages(&self) -> [(&'static str, u64); 8] {
        [
            ("triggered", self.triggered),
            ("scheduled", self.scheduled),
            ("cancelled", self.cancelled.values().sum()),
            ("suppressed", self.suppressed.values().sum()),
            ("sent", self.sent),
            ("delivered", self.delivered),
            ("replied", self.replied),
            ("converted", self.converted),
        ]
    }
}

/// One hour of the schedule: queued rule messages due in it, by rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ScheduleHour {
    /// The hour's start (UTC, epoch ms); the API shows it as RFC 3339.
    #[serde(skip)]
    pub start: Millis,
    pub rules: BTreeMap<String, u64>,
    pub total: u64,
}

const HOUR_MS: Millis = 3_600_000;

fn entry(by: &mut BTreeMap<String, RuleStats>, name: String) -> &mut RuleStats {
    by.entry(name.clone()).or_insert_with(|| RuleStats { rule: name, ..RuleStats::default() })
}

/// A `COUNT(*)` column (SQLite's integers are signed).
fn count(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<u64> {
    Ok(r.get::<_, i64>(i)?.max(0) as u64)
}

/// Statistics of every rule that has a `rules` row, a run or a message, by
/// name; with `only`, of that rule alone (`None` when it has none of these).
pub(super) fn stats(c: &Connection, only: Option<&str>) -> rusqlite::Result<Vec<RuleStats>> {
    // One statement text per filter, so each has its own plan (an
    // `?1 IS NULL OR rule = ?1` would keep SQLite from seeking the index).
    let filter = |col: &str| match only {
        Some(_) => format!("{col} = ?1"),
        None => format!("{col} IS NOT NULL AND ?1 IS NULL"),
    };
    let mut by: BTreeMap<String, RuleStats> = BTreeMap::new();

    let sql = format!("SELECT name FROM rules WHERE {}", filter("name"));
    let mut q = c.prepare_cached(&sql)?;
    let mut rows = q.query(params![only])?;
    while let Some(r) = rows.next()? {
        entry(&mut by, r.get(0)?);
    }

    let sql = format!("SELECT rule, outcome, COUNT(*) FROM rule_runs WHERE {} GROUP BY rule, outcome", filter("rule"));
    let mut q = c.prepare_cached(&sql)?;
    let mut rows = q.query(params![only])?;
    while let Some(r) = rows.next()? {
        let (outcome, n): (String, u64) = (r.get(1)?, count(r, 2)?);
        let s = entry(&mut by, r.get(0)?);
        s.triggered += n;
        match outcome.as_str() {
            "limited" => s.limited += n,
            "error" => s.errors += n,
            _ => {}
        }
    }

    let sql = format!("SELECT rule, status, COUNT(*) FROM messages WHERE {} GROUP BY rule, status", filter("rule"));
    let mut q = c.prepare_cached(&sql)?;
    let mut rows = q.query(params![only])?;
    while let Some(r) = rows.next()? {
        let (status, n): (String, u64) = (r.get(1)?, count(r, 2)?);
        let s = entry(&mut by, r.get(0)?);
        match status.as_str() {
            "queued" => s.scheduled += n,
            "submitted" | "undelivered" => s.sent += n,
            "delivered" => {
                s.sent += n;
                s.delivered += n;
            }
            _ => {}
        }
    }

    // The breakdowns and the expired messages read only the rows in those
    // states. An expired message with parts expired at the network (its
    // receipt said so): it was sent; one without expired in the queue.
    let sql = format!(
        "SELECT rule, status, CASE status WHEN 'cancelled' THEN cancelled_by ELSE error_code END, COUNT(*)
         FROM messages
         WHERE {} AND status IN ('cancelled', 'suppressed', 'expired')
           AND (status <> 'expired' OR EXISTS (SELECT 1 FROM parts WHERE message_id = messages.id))
         GROUP BY 1, 2, 3",
        filter("rule")
    );
    let mut q = c.prepare_cached(&sql)?;
    let mut rows = q.query(params![only])?;
    while let Some(r) = rows.next()? {
        let (status, why, n): (String, Option<String>, u64) = (r.get(1)?, r.get(2)?, count(r, 3)?);
        let s = entry(&mut by, r.get(0)?);
        // A message cancelled through `DELETE /v1/messages/{id}` has no event type.
        let why = why.unwrap_or_else(|| if status == "cancelled" { "api" } else { "unknown" }.to_string());
        match status.as_str() {
            "cancelled" => *s.cancelled.entry(why).or_default() += n,
            "suppressed" => *s.suppressed.entry(why).or_default() += n,
            _ => s.sent += n,
        }
    }

    let sql = format!(
        "SELECT m.rule, COUNT(DISTINCT m.id) FROM inbound i JOIN messages m ON m.id = i.reply_to
         WHERE i.reply_to IS NOT NULL AND {} GROUP BY m.rule",
        filter("m.rule")
    );
    let mut q = c.prepare_cached(&sql)?;
    let mut rows = q.query(params![only])?;
    while let Some(r) = rows.next()? {
        entry(&mut by, r.get(0)?).replied += count(r, 1)?;
    }

    let sql = format!("SELECT rule, COUNT(*) FROM conversions WHERE {} GROUP BY rule", filter("rule"));
    let mut q = c.prepare_cached(&sql)?;
    let mut rows = q.query(params![only])?;
    while let Some(r) = rows.next()? {
        entry(&mut by, r.get(0)?).converted += count(r, 1)?;
    }

    Ok(by.into_values().collect())
}

/// Queued rule messages by the hour they fall due, from the hour of `now`
/// for `hours` hours; one due already (waiting for its lane) counts in the
/// first hour. Every hour is listed, empty ones too.
pub(super) fn schedule(c: &Connection, hours: u32, now: Millis) -> rusqlite::Result<Vec<ScheduleHour>> {
    let first = now - now.rem_euclid(HOUR_MS);
    let end = first + HOUR_MS * hours as Millis;
    let mut out: Vec<ScheduleHour> = (0..hours as Millis)
        .map(|i| ScheduleHour { start: first + i * HOUR_MS, rules: BTreeMap::new(), total: 0 })
        .collect();
    let mut q = c.prepare_cached(
        "SELECT rule, (MAX(due_at, ?1) - ?1) / 3600000, COUNT(*) FROM messages
         WHERE rule IS NOT NULL AND status = 'queued' AND due_at < ?2
         GROUP BY 1, 2",
    )?;
    let mut rows = q.query(params![first, end])?;
    while let Some(r) = rows.next()? {
        let (rule, idx, n): (String, i64, u64) = (r.get(0)?, r.get(1)?, count(r, 2)?);
        if let Some(h) = usize::try_from(idx).ok().and_then(|i| out.get_mut(i)) {
            *h.rules.entry(rule).or_default() += n;
            h.total += n;
        }
    }
    Ok(out)
}

impl Store {
    /// Every rule's statistics, by name.
    pub async fn rule_stats(&self) -> Result<Vec<RuleStats>, StoreError> {
        self.read(|c| stats(c, None)).await
    }

    /// One rule's statistics; `None` when the rule has no `rules` row, no
    /// run and no message.
    pub async fn rule_stats_of(&self, rule: &str) -> Result<Option<RuleStats>, StoreError> {
        let rule = rule.to_string();
        self.read(move |c| Ok(stats(c, Some(&rule))?.into_iter().next())).await
    }

    /// Queued rule messages by due hour for the next `hours` hours.
    pub async fn rule_schedule(&self, hours: u32, now: Millis) -> Result<Vec<ScheduleHour>, StoreError> {
        self.read(move |c| schedule(c, hours, now)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Policy;
    use crate::message::{Priority, now_ms};
    use crate::sms::Encoding;
    use crate::store::messages::{NewMessage, RuleOrigin, insert};

    fn conn() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(&dir.path().join("t.db")).unwrap());
        let c = Connection::open(dir.path().join("t.db")).unwrap();
        (dir, c)
    }

    /// A message of `rule` made through the one insert, then moved to `status`.
    fn message(c: &Connection, rule: &str, due: Millis, status: &str, why: Option<&str>) -> i64 {
        let m = NewMessage {
            to: "+79161234567".into(),
            from: None,
            text: "x".into(),
            encoding: Encoding::Gsm7,
            segments: 1,
            priority: Priority::Promotional,
            route: "sim".into(),
            reference: None,
            send_at: Some(due),
            valid_until: due + 60_000,
            callback_url: None,
            tz: None,
            receipt: None,
            via: None,
        };
        let origin = RuleOrigin { rule: rule.into(), step: 0, key: Some("cart-1".into()), run_id: 1 };
        let id = insert(c, "k", &m, Some(&origin), &Policy::default(), now_ms()).unwrap().id;
        c.execute(
            "UPDATE messages SET status = ?2,
                    cancelled_by = CASE WHEN ?2 = 'cancelled' THEN ?3 END,
                    error_code = CASE WHEN ?2 = 'suppressed' THEN ?3 END WHERE id = ?1",
            params![id, status, why],
        )
        .unwrap();
        id
    }

    fn run(c: &Connection, rule: &str, outcome: &str) {
        c.execute(
            "INSERT INTO rule_runs (rule, event_id, key, recipient, at, outcome) VALUES (?1, 1, 'cart-1', '+79161234567', 0, ?2)",
            params![rule, outcome],
        )
        .unwrap();
    }

    #[test]
    fn every_stage_is_counted_from_the_rows() {
        let (_d, c) = conn();
        let now = now_ms();
        for o in ["scheduled", "scheduled", "scheduled", "scheduled", "scheduled", "limited", "error"] {
            run(&c, "cart", o);
        }
        run(&c, "other", "scheduled");
        message(&c, "cart", now + HOUR_MS, "queued", None);
        message(&c, "cart", now, "cancelled", Some("order.paid"));
        message(&c, "cart", now, "suppressed", Some("capped"));
        let delivered = message(&c, "cart", now, "delivered", None);
        message(&c, "cart", now, "submitted", None);
        message(&c, "cart", now, "expired", None); // in the queue: not sent
        let late = message(&c, "cart", now, "expired", None);
        c.execute(
            "INSERT INTO parts (message_id, idx, route, status, submitted_at) VALUES (?1, 0, 'sim', 'expired', 0)",
            [late],
        )
        .unwrap();
        for _ in 0..2 {
            c.execute(
                "INSERT INTO inbound (route, sender, recipient, body, parts, complete, received_at, reply_to)
                 VALUES ('sim', '+79161234567', 'x', 'ok', 1, 1, 0, ?1)",
                [delivered],
            )
            .unwrap();
        }
        c.execute("INSERT INTO conversions (message_id, rule, event_id, at) VALUES (?1, 'cart', 9, 0)", [delivered])
            .unwrap();
        c.execute(
            "INSERT INTO rules (name, origin, spec, created_at, updated_at) VALUES ('idle', 'config', '{}', 0, 0)",
            [],
        )
        .unwrap();

        let all = stats(&c, None).unwrap();
        assert_eq!(all.iter().map(|s| s.rule.as_str()).collect::<Vec<_>>(), ["cart", "idle", "other"]);
        let cart = &all[0];
        assert_eq!(
            cart,
            &RuleStats {
                rule: "cart".into(),
                triggered: 7,
                scheduled: 1,
                cancelled: [("order.paid".to_string(), 1)].into(),
                suppressed: [("capped".to_string(), 1)].into(),
                errors: 1,
                limited: 1,
                sent: 3,
                delivered: 1,
                replied: 1,
                converted: 1,
            }
        );
        assert_eq!(all[1], RuleStats { rule: "idle".into(), ..RuleStats::default() });
        assert_eq!(stats(&c, Some("cart")).unwrap(), vec![cart.clone()]);
        assert_eq!(stats(&c, Some("nope")).unwrap(), vec![]);
    }

    #[test]
    fn the_schedule_buckets_queued_rule_messages_by_due_hour() {
        let (_d, c) = conn();
        let now = now_ms();
        let first = now - now.rem_euclid(HOUR_MS);
        message(&c, "cart", now - 5_000, "queued", None); // overdue: this hour
        message(&c, "cart", first + 2 * HOUR_MS + 1, "queued", None);
        message(&c, "win", first + 2 * HOUR_MS + 5, "queued", None);
        message(&c, "cart", first + 2 * HOUR_MS, "cancelled", Some("order.paid"));
        message(&c, "cart", first + 30 * HOUR_MS, "queued", None); // past the window
        let h = schedule(&c, 24, now).unwrap();
        assert_eq!(h.len(), 24);
        assert_eq!(h[0].start, first);
        assert_eq!((h[0].total, h[1].total, h[2].total), (1, 0, 2));
        assert_eq!(h[2].rules, [("cart".to_string(), 1), ("win".to_string(), 1)].into());
        assert_eq!(h.iter().map(|x| x.total).sum::<u64>(), 3);
    }
}
