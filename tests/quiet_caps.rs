//! Quiet hours and frequency caps through the real binary and a sim route:
//! a promotion due in the recipient's quiet hours (a window crossing local
//! midnight in Asia/Vladivostok, the zone its number tells) waits until the
//! window opens and then goes, while an `otp` to the same number goes at
//! once; a `tz` given with the message is the one kept; a frequency cap
//! counts across a restart (the third promotion within the window is
//! `suppressed`, `capped`), and another class is not capped by it.

mod common;
use chrono::{Duration as ChronoDuration, Timelike, Utc};
use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// A Vladivostok mobile (914 6500000-7399999: Приморский край).
const VLADIVOSTOK: &str = "+79147001234";
/// A Moscow mobile.
const MOSCOW: &str = "+79161234567";

fn start(dir: &std::path::Path, policy: &str) -> Daemon {
    write_config(dir, policy, &sim_route(dir, "sim", "", "delivery_delay_ms = 0"));
    Daemon::start(dir)
}

fn history_details(m: &Value) -> Vec<String> {
    m["history"].as_array().into_iter().flatten().filter_map(|h| h["detail"].as_str()).map(str::to_string).collect()
}

#[tokio::test]
async fn a_promotion_waits_out_quiet_hours_across_midnight_in_the_recipient_s_zone() {
    let dir = tempfile::tempdir().unwrap();
    // Quiet from a minute after `opens` round the clock (across local
    // midnight) to `opens`, five seconds from now, Vladivostok time: the
    // window covers now and ends in five seconds.
    let tz = chrono_tz::Asia::Vladivostok;
    let opens_at = Utc::now() + ChronoDuration::seconds(5);
    let opens_at = opens_at.with_nanosecond(0).unwrap() + ChronoDuration::seconds(1);
    let to = opens_at.with_timezone(&tz).time();
    let from = to + ChronoDuration::seconds(60);
    let window = format!("{}-{}", from.format("%H:%M:%S"), to.format("%H:%M:%S"));
    let d = start(
        dir.path(),
        &format!("[policy]\ndefault_tz = \"Europe/Moscow\"\n[policy.quiet_hours]\npromotional = \"{window}\"\n"),
    );

    let promo = d.send(json!({"to": VLADIVOSTOK, "text": "sale", "priority": "promotional"})).await;
    let given =
        d.send(json!({"to": MOSCOW, "text": "sale", "priority": "promotional", "tz": "Asia/Vladivostok"})).await;
    let otp = d.send(json!({"to": VLADIVOSTOK, "text": "code 1234", "priority": "otp"})).await;

    // The otp goes at once; the promotions wait, deferred to the opening.
    d.wait_status(otp, "delivered", 5).await;
    // The opening reads "21:09" on a whole minute and "21:09:01" otherwise.
    let clock = if to.second() == 0 { to.format("%H:%M") } else { to.format("%H:%M:%S") };
    let expected = format!("deferred by quiet hours until {clock} Asia/Vladivostok");
    let deadline = Instant::now() + Duration::from_secs(5);
    for id in [promo, given] {
        loop {
            let m = d.message(id).await;
            if history_details(&m).contains(&expected) {
                assert_eq!(m["status"], "queued", "{m:#}");
                assert_eq!(m["tz"], "Asia/Vladivostok", "{m:#}");
                break;
            }
            assert!(Instant::now() < deadline, "message {id} was not deferred: {m:#}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert!(Utc::now() < opens_at, "the window closed before the test could look");
    let metrics = d.metrics().await;
    assert!(metrics.contains("smsgw_messages_quiet_deferred_total "), "{metrics}");

    // Then both go, not before the window opened.
    for id in [promo, given] {
        let m = d.wait_status(id, "delivered", 10).await;
        let sent = m["history"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["status"] == "submitted")
            .and_then(|h| h["at"].as_str())
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .expect("a submitted row");
        assert!(sent >= opens_at, "sent at {sent}, before the window opened at {opens_at}");
    }
}

#[tokio::test]
async fn a_bad_tz_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), "");
    let (s, v) = d.post("/v1/messages", &json!({"to": MOSCOW, "text": "x", "tz": "Mars/Olympus"})).await;
    assert_eq!((s, v["errors"][0]["field"].as_str()), (422, Some("tz")), "{v}");
    // Without a tz, the number's zone is kept.
    let id = d.send(json!({"to": VLADIVOSTOK, "text": "x"})).await;
    assert_eq!(d.message(id).await["tz"], "Asia/Vladivostok");
}

#[tokio::test]
async fn a_frequency_cap_counts_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let policy = "[policy.caps]\npromotional = { count = 2, days = 30 }\n";
    let d = start(dir.path(), policy);
    for text in ["offer one", "offer two"] {
        let id = d.send(json!({"to": MOSCOW, "text": text, "priority": "promotional"})).await;
        d.wait_status(id, "delivered", 10).await;
    }
    d.terminate();

    let d = Daemon::start(dir.path());
    let third = d.send(json!({"to": MOSCOW, "text": "offer three", "priority": "promotional"})).await;
    let m = d.wait_status(third, "suppressed", 10).await;
    assert_eq!(m["error"]["code"], "capped", "{m:#}");
    // Another class is not capped; another number neither.
    let receipt = d.send(json!({"to": MOSCOW, "text": "your receipt", "priority": "transactional"})).await;
    d.wait_status(receipt, "delivered", 10).await;
    let other = d.send(json!({"to": "+79160000002", "text": "offer one", "priority": "promotional"})).await;
    d.wait_status(other, "delivered", 10).await;
    let texts: Vec<String> =
        records(&d.dir, "sim").iter().filter_map(|r| r["text"].as_str()).map(str::to_string).collect();
    assert!(!texts.contains(&"offer three".to_string()), "{texts:?}");
    let metrics = d.metrics().await;
    assert!(metrics.contains("smsgw_messages_suppressed_total{reason=\"capped\"} 1"), "{metrics}");
}
