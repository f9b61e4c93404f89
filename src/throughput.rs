//! Per-minute counts of the last hour (sent, delivered, failed) for the
//! status page's chart. Kept in memory: a restart starts a new hour.

use crate::message::Millis;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Mutex;
use utoipa::ToSchema;

const MINUTES: usize = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    Delivered,
    Failed,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Minute {
    /// Start of the minute, RFC 3339.
    pub at: String,
    pub sent: u64,
    pub delivered: u64,
    pub failed: u64,
}

#[derive(Default)]
pub struct Throughput {
    /// (minute since the epoch, counts), oldest first.
    minutes: Mutex<VecDeque<(i64, [u64; 3])>>,
}

impl Throughput {
    pub fn count(&self, now: Millis, what: Outcome) {
        let minute = now.div_euclid(60_000);
        let Ok(mut m) = self.minutes.lock() else { return };
        if m.back().is_none_or(|b| b.0 != minute) {
            m.push_back((minute, [0; 3]));
            while m.len() > MINUTES {
                m.pop_front();
            }
        }
        if let Some(b) = m.back_mut() {
            b.1[what as usize] += 1;
        }
    }

    /// The last hour up to `now`, one entry per minute, gaps filled with zeros.
    pub fn last_hour(&self, now: Millis) -> Vec<Minute> {
        let current = now.div_euclid(60_000);
        let m = self.minutes.lock().map(|m| m.clone()).unwrap_or_default();
        (current - MINUTES as i64 + 1..=current)
            .map(|minute| {
                let c = m.iter().find(|(k, _)| *k == minute).map_or([0; 3], |(_, c)| *c);
                Minute { at: crate::message::to_rfc3339(minute * 60_000), sent: c[0], delivered: c[1], failed: c[2] }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_minute_and_forgets_after_an_hour() {
        let t = Throughput::default();
        let base = 1_700_000_000_000 / 60_000 * 60_000;
        t.count(base, Outcome::Sent);
        t.count(base + 59_999, Outcome::Delivered);
        t.count(base + 60_000, Outcome::Failed);
        let h = t.last_hour(base + 60_000);
        assert_eq!(h.len(), 60);
        assert_eq!((h[58].sent, h[58].delivered, h[58].failed), (1, 1, 0));
        assert_eq!((h[59].sent, h[59].failed), (0, 1));
        let later = t.last_hour(base + 61 * 60_000);
        assert!(later.iter().all(|m| m.sent == 0));
    }
}
