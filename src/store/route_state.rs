//! A route's state as events: `route.state_changed` is written only when
//! the state differs from the last one recorded for that route, which the
//! outbox's named pointers (`outbox_cursor`, row `route:<name>`) keep, so
//! a restart does not announce a route that was up and is still up.

use super::events::{self, NewEvent};
use crate::message::{EventKind, Millis};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

/// What a `route.state_changed` event says (its `data`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteStateData {
    pub route: String,
    /// `up`, `degraded` or `down`.
    pub state: String,
    pub detail: Option<String>,
}

/// Record `route`'s state; true when it changed (and the event was written).
pub(super) fn record(c: &Connection, now: Millis, s: &RouteStateData) -> rusqlite::Result<bool> {
    let pointer = format!("route:{}", s.route);
    let last: Option<Option<String>> = c
        .prepare_cached("SELECT e.data FROM outbox_cursor o JOIN events e ON e.id = o.event_id WHERE o.name = ?1")?
        .query_row(params![pointer], |r| r.get(0))
        .optional()?;
    let last: Option<RouteStateData> = last.flatten().and_then(|d| serde_json::from_str(&d).ok());
    if last.is_some_and(|l| l.state == s.state) {
        return Ok(false);
    }
    let data = super::to_json(s)?;
    let event = NewEvent { subject: Some(&s.route), data: Some(&data), ..NewEvent::default() };
    let id = events::emit(c, EventKind::RouteStateChanged, now, &event)?;
    c.prepare_cached(
        "INSERT INTO outbox_cursor (name, event_id) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET event_id = excluded.event_id",
    )?
    .execute(params![pointer, id])?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_change_is_an_event() {
        let mut c = Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut c).unwrap();
        let s = |state: &str, detail: &str| RouteStateData {
            route: "gsm".into(),
            state: state.into(),
            detail: Some(detail.into()),
        };
        assert!(record(&c, 1, &s("up", "2/2 modems")).unwrap());
        assert!(!record(&c, 2, &s("up", "still")).unwrap());
        assert!(record(&c, 3, &s("down", "no modem")).unwrap());
        let other = RouteStateData { route: "smpp".into(), state: "up".into(), detail: None };
        assert!(record(&c, 4, &other).unwrap());
        let n: i64 =
            c.query_row("SELECT count(*) FROM events WHERE kind = 'route.state_changed'", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 3);
    }
}
