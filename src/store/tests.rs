//! Store tests on a real SQLite file: the paths the end-to-end tests reach
//! only by timing (receipt before submit result, reports for ids that came
//! round again, reassembly, roll-up, a long message resumed after a failed
//! part).

use super::*;
use crate::config::Policy;
use crate::message::{Priority, ReceiptStatus, Status};
use crate::sms::Encoding;

fn new_msg(segments: u32) -> NewMessage {
    NewMessage {
        to: "+79161234567".into(),
        from: None,
        text: "x".into(),
        encoding: Encoding::Gsm7,
        segments,
        priority: Priority::Transactional,
        route: "r".into(),
        reference: None,
        send_at: None,
        valid_until: now_ms() + 60_000,
        callback_url: None,
        tz: None,
        receipt: None,
        via: None,
    }
}

async fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.db")).unwrap();
    (dir, store)
}

/// Rules that read no word: inbound messages are linked, never acted on.
fn no_replies() -> std::sync::Arc<crate::replies::ReplyRules> {
    std::sync::Arc::new(crate::replies::ReplyRules::default())
}

fn part(seq: u8, text: &str) -> InboundPart {
    InboundPart {
        route: "r".into(),
        from: "+79160000001".into(),
        to: "+79160000002".into(),
        text: text.into(),
        concat: Some((7, 3, seq)),
        sent_at: Some(1_700_000_000_000),
        undecodable: None,
    }
}

/// Keep the writer busy for 300 ms (the jobs sent meanwhile wait and then
/// go as one group); await the handle to know it let go.
async fn hold_writer(s: &Store) -> tokio::task::JoinHandle<Result<(), StoreError>> {
    let s = s.clone();
    let hold = tokio::spawn(async move {
        s.write(|_| {
            std::thread::sleep(std::time::Duration::from_millis(300));
            Ok(())
        })
        .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    hold
}

#[tokio::test]
async fn a_failing_job_is_undone_alone_and_the_rest_of_its_group_commits_once() {
    let (_d, s) = open().await;
    s.write(|c| Ok(c.execute_batch("CREATE TABLE t (n INTEGER NOT NULL)")?)).await.unwrap();
    // Hold the writer while the jobs below queue up, so they go as one group.
    let hold = hold_writer(&s).await;
    let jobs: Vec<_> = (0..10i64)
        .map(|n| {
            let s = s.clone();
            tokio::spawn(async move {
                s.write(move |c| {
                    c.execute("INSERT INTO t (n) VALUES (?1)", [n])?;
                    messages::insert(c, "k", &new_msg(1), None, &Policy::default(), now_ms())?;
                    if n == 5 {
                        // Wrote a row, then failed: the row must go too.
                        c.execute("INSERT INTO t (n) VALUES (NULL)", [])?;
                    }
                    Ok(n)
                })
                .await
            })
        })
        .collect();
    hold.await.unwrap().unwrap();
    for (n, job) in jobs.into_iter().enumerate() {
        let r = job.await.unwrap();
        if n == 5 {
            assert!(r.is_err(), "the failing job reports its failure");
        } else {
            assert_eq!(r.unwrap(), n as i64);
        }
    }
    let rows: Vec<i64> =
        s.read(|c| c.prepare("SELECT n FROM t ORDER BY n")?.query_map([], |r| r.get(0))?.collect()).await.unwrap();
    assert_eq!(rows, [0, 1, 2, 3, 4, 6, 7, 8, 9], "each other job's row once, the failed one's not at all");
    // The counts the group changed are written with it, the failed job's not.
    let counts = s.counts().await.unwrap();
    assert_counts_match(&s, &counts, "after a group with a failed job");
    assert_eq!(counts.by_status.get("queued"), Some(&9));
    let today = crate::message::utc_day_start(now_ms());
    let made: i64 = s
        .read(move |c| c.query_row("SELECT n FROM key_days WHERE api_key = 'k' AND day = ?1", [today], |r| r.get(0)))
        .await
        .unwrap();
    assert_eq!(made, 9, "the key's count for the day holds the committed messages only");
}

#[tokio::test]
async fn a_daily_quota_holds_between_requests_committed_together() {
    let (_d, s) = open().await;
    // Hold the writer while the requests below queue up, so they go as one group.
    let hold = hold_writer(&s).await;
    let requests: Vec<_> = (0..3)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(
                async move { s.enqueue("k".into(), None, vec![new_msg(1); 2], Some(5), Policy::default()).await },
            )
        })
        .collect();
    hold.await.unwrap().unwrap();
    let mut outcomes = Vec::new();
    for r in requests {
        outcomes.push(match r.await.unwrap().unwrap() {
            EnqueueOutcome::Created(m) => format!("created {}", m.len()),
            EnqueueOutcome::OverQuota { used } => format!("over quota, {used} used"),
            other => format!("{other:?}"),
        });
    }
    outcomes.sort();
    assert_eq!(
        outcomes,
        ["created 2", "created 2", "over quota, 4 used"],
        "two of the group fit under 5, the third does not"
    );
    let counts = s.counts().await.unwrap();
    assert_eq!(counts.by_status.get("queued"), Some(&4));
}

#[tokio::test]
async fn concatenated_inbound_is_joined_in_order_whatever_the_arrival_order() {
    let (_d, s) = open().await;
    assert_eq!(s.record_inbound(part(3, "three"), no_replies()).await.unwrap(), None);
    assert_eq!(s.record_inbound(part(1, "one "), no_replies()).await.unwrap(), None);
    // A duplicate of a part (a network retry) does not count twice.
    assert_eq!(s.record_inbound(part(1, "one "), no_replies()).await.unwrap(), None);
    let id = s.record_inbound(part(2, "two "), no_replies()).await.unwrap().expect("complete");
    let v = s.inbound(id, None).await.unwrap().unwrap();
    assert_eq!(v.text, "one two three");
    assert_eq!((v.parts, v.complete), (3, true));
    assert_eq!(v.sent_at, Some(1_700_000_000_000));
    let single = InboundPart { concat: None, ..part(1, "hi") };
    let id2 = s.record_inbound(single, no_replies()).await.unwrap().unwrap();
    let list = s.list_inbound(None, None, 10).await.unwrap();
    assert_eq!(list.iter().map(|v| v.id).collect::<Vec<_>>(), [id2, id]);
}

#[tokio::test]
async fn stale_parts_are_stored_incomplete() {
    let (_d, s) = open().await;
    s.record_inbound(part(1, "first "), no_replies()).await.unwrap();
    s.record_inbound(part(3, "third"), no_replies()).await.unwrap();
    assert_eq!(s.flush_stale_inbound(60_000, no_replies()).await.unwrap(), 0);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(s.flush_stale_inbound(10, no_replies()).await.unwrap(), 1);
    let v = s.list_inbound(None, None, 10).await.unwrap().remove(0);
    assert_eq!(v.text, "first third");
    assert_eq!((v.parts, v.complete), (2, false));
}

#[tokio::test]
async fn receipt_before_submit_result_is_kept_and_applied() {
    let (_d, s) = open().await;
    let EnqueueOutcome::Created(a) =
        s.enqueue("k".into(), None, vec![new_msg(2)], None, Policy::default()).await.unwrap()
    else {
        panic!("created")
    };
    let id = a[0].id;
    assert_eq!(s.claim("r".into(), 10, Policy::default()).await.unwrap().len(), 1);
    let receipt = |rid: &str, status| Receipt {
        route: "r".into(),
        remote_id: rid.into(),
        status,
        error_code: None,
        error_text: None,
        sc_time: None,
        legacy_id: None,
    };
    // The receipt for part 0 overtakes the submit result.
    assert_eq!(s.record_receipt(receipt("A", ReceiptStatus::Delivered)).await.unwrap(), ReceiptMatch::Early);
    let parts = vec![
        SubmittedPart { index: 0, remote_id: Some("A".into()) },
        SubmittedPart { index: 1, remote_id: Some("B".into()) },
    ];
    s.record_submitted(id, "r".into(), parts, None).await.unwrap();
    let v = s.get(id).await.unwrap().unwrap();
    assert_eq!(v.status, Status::Submitted, "one part still open");
    assert_eq!(v.parts[0].status, "delivered");
    assert!(matches!(
        s.record_receipt(receipt("B", ReceiptStatus::Delivered)).await.unwrap(),
        ReceiptMatch::Final { status: Status::Delivered, .. }
    ));
    assert_eq!(s.record_receipt(receipt("B", ReceiptStatus::Delivered)).await.unwrap(), ReceiptMatch::Duplicate);
    let v = s.get(id).await.unwrap().unwrap();
    assert_eq!(v.status, Status::Delivered);
    let states: Vec<Status> = v.history.iter().map(|h| h.status).collect();
    assert_eq!(states, [Status::Queued, Status::Submitted, Status::Delivered]);
}

#[tokio::test]
async fn one_undelivered_part_makes_the_message_undelivered() {
    let (_d, s) = open().await;
    let EnqueueOutcome::Created(a) =
        s.enqueue("k".into(), None, vec![new_msg(2)], None, Policy::default()).await.unwrap()
    else {
        panic!("created")
    };
    let id = a[0].id;
    s.claim("r".into(), 10, Policy::default()).await.unwrap();
    let parts = (0..2).map(|i| SubmittedPart { index: i, remote_id: Some(format!("p{i}")) }).collect();
    s.record_submitted(id, "r".into(), parts, None).await.unwrap();
    let r = |rid: &str, status, code: Option<&str>| Receipt {
        route: "r".into(),
        remote_id: rid.into(),
        status,
        error_code: code.map(str::to_string),
        error_text: None,
        sc_time: None,
        legacy_id: None,
    };
    s.record_receipt(r("p1", ReceiptStatus::Undelivered, Some("smpp_err_001"))).await.unwrap();
    s.record_receipt(r("p0", ReceiptStatus::Delivered, None)).await.unwrap();
    let v = s.get(id).await.unwrap().unwrap();
    assert_eq!(v.status, Status::Undelivered);
    assert_eq!(v.error_code.as_deref(), Some("smpp_err_001"));
}

#[tokio::test]
async fn claim_serves_priority_then_age_and_skips_other_routes() {
    let (_d, s) = open().await;
    let mut msgs = Vec::new();
    for p in [Priority::Promotional, Priority::Transactional, Priority::Otp, Priority::Promotional] {
        msgs.push(NewMessage { priority: p, ..new_msg(1) });
    }
    msgs.push(NewMessage { route: "other".into(), priority: Priority::Otp, ..new_msg(1) });
    // Whatever the hour the test runs at: no quiet hours.
    let policy = Policy {
        quiet_hours: crate::config::QuietHours { promotional: None, transactional: None },
        ..Policy::default()
    };
    s.enqueue("k".into(), None, msgs, None, policy).await.unwrap();
    let got: Vec<i64> = s.claim("r".into(), 3, policy).await.unwrap().iter().map(|m| m.id).collect();
    assert_eq!(got, [3, 2, 1]);
    let got: Vec<i64> = s.claim("r".into(), 3, policy).await.unwrap().iter().map(|m| m.id).collect();
    assert_eq!(got, [4]);
}

/// The write functions on their own connection, at times the test chooses.
fn conn() -> (tempfile::TempDir, rusqlite::Connection) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = rusqlite::Connection::open(dir.path().join("t.db")).unwrap();
    schema::migrate(&mut c).unwrap();
    (dir, c)
}

/// A message of `segments` parts, claimed at `now`.
fn claimed(c: &rusqlite::Connection, segments: u32, now: Millis) -> Claimed {
    let EnqueueOutcome::Created(a) =
        messages::enqueue(c, "k", None, &[new_msg(segments)], None, &Policy::default(), now).unwrap()
    else {
        panic!("created")
    };
    let mut got = messages::claim(c, "r", 100, &Policy::default(), now).unwrap().claimed;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, a[0].id);
    got.remove(0)
}

fn report(remote_id: &str, sc_time: Option<Millis>) -> Receipt {
    Receipt {
        route: "r".into(),
        remote_id: remote_id.into(),
        status: ReceiptStatus::Delivered,
        error_code: None,
        error_text: None,
        sc_time,
        legacy_id: None,
    }
}

fn status(c: &rusqlite::Connection, id: i64) -> String {
    c.query_row("SELECT status FROM messages WHERE id = ?1", [id], |r| r.get(0)).unwrap()
}

fn one(id: &str) -> Vec<SubmittedPart> {
    vec![SubmittedPart { index: 0, remote_id: Some(id.into()) }]
}

#[test]
fn reports_for_an_id_that_came_round_again_find_their_own_part() {
    let (_d, c) = conn();
    let t0 = 1_700_000_000_000;
    let hour = 3_600_000;
    // A modem's TP-MR wrapped: two open parts carry the same id, an hour apart.
    let old = claimed(&c, 1, t0).id;
    messages::record_submitted(&c, old, "r", &one("X"), None, t0).unwrap();
    let new = claimed(&c, 1, t0 + hour).id;
    messages::record_submitted(&c, new, "r", &one("X"), None, t0 + hour).unwrap();
    // The older part's report (the network took it at t0) is the older one's,
    // though a newer part has its id.
    let m = messages::apply_receipt(&c, &report("X", Some(t0 - 1_000)), t0 + hour + 5).unwrap();
    assert!(matches!(m, ReceiptMatch::Final { status: Status::Delivered, .. }), "{m:?}");
    assert_eq!((status(&c, old).as_str(), status(&c, new).as_str()), ("delivered", "submitted"));
    // The same report again is a duplicate, not the newer part's.
    let m = messages::apply_receipt(&c, &report("X", Some(t0 - 1_000)), t0 + hour + 6).unwrap();
    assert_eq!(m, ReceiptMatch::Duplicate);
    assert_eq!(status(&c, new), "submitted");
    let m = messages::apply_receipt(&c, &report("X", Some(t0 + hour)), t0 + hour + 7).unwrap();
    assert!(matches!(m, ReceiptMatch::Final { status: Status::Delivered, .. }), "{m:?}");

    // Once every earlier part with the id has its report, the id's next
    // part still gets its own (not taken for a duplicate).
    let third = claimed(&c, 1, t0 + 2 * hour).id;
    messages::record_submitted(&c, third, "r", &one("X"), None, t0 + 2 * hour).unwrap();
    messages::apply_receipt(&c, &report("X", Some(t0 + 2 * hour)), t0 + 2 * hour + 1).unwrap();
    assert_eq!(status(&c, third), "delivered");
}

#[test]
fn a_report_without_a_usable_time_takes_the_newest_open_part() {
    let (_d, c) = conn();
    let t0 = 1_700_000_000_000;
    let a = claimed(&c, 1, t0).id;
    messages::record_submitted(&c, a, "r", &one("Y"), None, t0).unwrap();
    let b = claimed(&c, 1, t0 + 1_000).id;
    messages::record_submitted(&c, b, "r", &one("Y"), None, t0 + 1_000).unwrap();
    // A network clock a day behind fits no part: the newest one.
    messages::apply_receipt(&c, &report("Y", Some(t0 - 86_400_000)), t0 + 2_000).unwrap();
    assert_eq!((status(&c, a).as_str(), status(&c, b).as_str()), ("submitted", "delivered"));
    messages::apply_receipt(&c, &report("Y", None), t0 + 3_000).unwrap();
    assert_eq!(status(&c, a), "delivered");
}

#[test]
fn an_early_report_waits_for_its_part_and_a_stale_one_does_not_take_a_new_part() {
    let (_d, c) = conn();
    let t0 = 1_700_000_000_000;
    // A report whose part was never recorded (the process died first).
    assert_eq!(messages::apply_receipt(&c, &report("Z", Some(t0)), t0).unwrap(), ReceiptMatch::Early);
    // An hour later a new part gets that id: the stale report is not its.
    let late = claimed(&c, 1, t0 + 3_600_000).id;
    messages::record_submitted(&c, late, "r", &one("Z"), None, t0 + 3_600_000).unwrap();
    assert_eq!(status(&c, late), "submitted");
    // Its own report, overtaking the submit result, is applied when it is recorded.
    let next = claimed(&c, 1, t0 + 7_200_000).id;
    let early = report("W", Some(t0 + 7_200_000));
    assert_eq!(messages::apply_receipt(&c, &early, t0 + 7_200_001).unwrap(), ReceiptMatch::Early);
    messages::record_submitted(&c, next, "r", &one("W"), None, t0 + 7_200_002).unwrap();
    assert_eq!(status(&c, next), "delivered");
}

#[test]
fn parts_named_by_an_earlier_version_still_match() {
    let (_d, c) = conn();
    let t0 = 1_700_000_000_000;
    let id = claimed(&c, 1, t0).id;
    messages::record_submitted(&c, id, "r", &one("250011234567890:5:79161234567"), None, t0).unwrap();
    let r = Receipt {
        legacy_id: Some("250011234567890:5:79161234567".into()),
        ..report("250011234567890:5:79161234567:867856030456784", Some(t0))
    };
    messages::apply_receipt(&c, &r, t0 + 1).unwrap();
    assert_eq!(status(&c, id), "delivered");
}

#[test]
fn a_long_message_resumes_after_its_sent_parts_and_is_delivered_only_when_all_are() {
    let (_d, c) = conn();
    let t0 = 1_700_000_000_000;
    let m = claimed(&c, 3, t0);
    assert!(m.sent.is_empty() && m.concat_ref.is_none());
    // Part 1 went out, part 2 was refused.
    let f = AttemptFailure {
        code: "cms_38".into(),
        text: "network out of order".into(),
        retry_at: Some(t0 + 10),
        final_status: Status::Queued,
        untried: false,
        accepted: one("p1"),
        concat_ref: Some(42),
    };
    messages::record_failure(&c, m.id, &f, t0).unwrap();
    // Its report alone does not make the message delivered.
    messages::apply_receipt(&c, &report("p1", None), t0 + 5).unwrap();
    assert_eq!(status(&c, m.id), "queued");
    // The retry knows what went out and under which reference.
    let again = messages::claim(&c, "r", 10, &Policy::default(), t0 + 20).unwrap().claimed.remove(0);
    assert_eq!((again.sent, again.concat_ref), (vec![Some("p1".to_string())], Some(42)));
    let rest = vec![
        SubmittedPart { index: 1, remote_id: Some("p2".into()) },
        SubmittedPart { index: 2, remote_id: Some("p3".into()) },
    ];
    messages::record_submitted(&c, m.id, "r", &rest, Some(42), t0 + 30).unwrap();
    messages::apply_receipt(&c, &report("p2", None), t0 + 40).unwrap();
    assert_eq!(status(&c, m.id), "submitted");
    messages::apply_receipt(&c, &report("p3", None), t0 + 50).unwrap();
    assert_eq!(status(&c, m.id), "delivered");
    let parts: i64 = c.query_row("SELECT count(*) FROM parts WHERE message_id = ?1", [m.id], |r| r.get(0)).unwrap();
    assert_eq!(parts, 3);
}

#[test]
fn a_message_submitted_with_a_part_missing_is_not_delivered() {
    let (_d, c) = conn();
    let t0 = 1_700_000_000_000;
    let m = claimed(&c, 3, t0);
    // The route says it took parts 2 and 3, but part 1 was never recorded.
    let rest = vec![
        SubmittedPart { index: 1, remote_id: Some("q2".into()) },
        SubmittedPart { index: 2, remote_id: Some("q3".into()) },
    ];
    messages::record_submitted(&c, m.id, "r", &rest, Some(7), t0).unwrap();
    messages::apply_receipt(&c, &report("q2", None), t0 + 1).unwrap();
    messages::apply_receipt(&c, &report("q3", None), t0 + 2).unwrap();
    assert_eq!(status(&c, m.id), "submitted");
}

#[test]
fn a_daily_quota_counts_the_key_s_messages_since_utc_midnight() {
    let mut c = rusqlite::Connection::open_in_memory().unwrap();
    schema::migrate(&mut c).unwrap();
    let midnight = crate::message::utc_day_start(1_700_000_000_000);
    let enqueue = |key: &str, n: usize, quota, at| {
        messages::enqueue(&c, key, None, &vec![new_msg(1); n], quota, &Policy::default(), at)
    };
    // Yesterday's messages and another key's do not count.
    assert!(matches!(enqueue("k", 3, Some(3), midnight - 1).unwrap(), EnqueueOutcome::Created(_)));
    assert!(matches!(enqueue("other", 5, None, midnight + 1).unwrap(), EnqueueOutcome::Created(_)));
    assert!(matches!(enqueue("k", 2, Some(3), midnight).unwrap(), EnqueueOutcome::Created(_)));
    assert!(matches!(enqueue("k", 2, Some(3), midnight + 2).unwrap(), EnqueueOutcome::OverQuota { used: 2 }));
    assert!(matches!(enqueue("k", 1, Some(3), midnight + 3).unwrap(), EnqueueOutcome::Created(_)));
    let total: i64 = c.query_row("SELECT count(*) FROM messages WHERE api_key = 'k'", [], |r| r.get(0)).unwrap();
    assert_eq!(total, 6, "the refused batch wrote nothing");
}

#[tokio::test]
async fn a_key_sees_the_replies_from_numbers_it_wrote_to_before_they_came() {
    let (_d, s) = open().await;
    let reply = |from: &str| InboundPart { from: from.into(), concat: None, ..part(1, "reply") };
    let early = s.record_inbound(reply("+79161234567"), no_replies()).await.unwrap().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    s.enqueue("k".into(), None, vec![new_msg(1)], None, Policy::default()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let later = s.record_inbound(reply("+79161234567"), no_replies()).await.unwrap().unwrap();
    let stranger = s.record_inbound(reply("+79160000009"), no_replies()).await.unwrap().unwrap();
    // Another key writes to the number after: the next reply is both keys'.
    s.enqueue("k2".into(), None, vec![new_msg(1)], None, Policy::default()).await.unwrap();
    let both = s.record_inbound(reply("+79161234567"), no_replies()).await.unwrap().unwrap();
    let ids = |v: Vec<InboundView>| v.iter().map(|m| m.id).collect::<Vec<_>>();
    assert_eq!(ids(s.list_inbound(Some("k".into()), None, 10).await.unwrap()), [both, later]);
    assert_eq!(ids(s.list_inbound(Some("k".into()), Some(both), 10).await.unwrap()), [later]);
    assert_eq!(ids(s.list_inbound(Some("k2".into()), None, 10).await.unwrap()), [both]);
    assert_eq!(ids(s.list_inbound(None, None, 10).await.unwrap()), [both, stranger, later, early]);
    assert!(s.inbound(early, Some("k".into())).await.unwrap().is_none());
    assert!(s.inbound(stranger, Some("other".into())).await.unwrap().is_none());
    assert!(s.inbound(later, Some("k".into())).await.unwrap().is_some());
}

const DAY: Millis = 24 * 3600 * 1000;

fn keep_90_days() -> Retention {
    Retention { finished_ms: Some(90 * DAY), inbound_ms: Some(90 * DAY), orphan_receipt_ms: Some(2 * DAY) }
}

async fn enqueue_ids(s: &Store, msgs: Vec<NewMessage>) -> Vec<i64> {
    match s.enqueue("k".into(), None, msgs, None, Policy::default()).await.unwrap() {
        EnqueueOutcome::Created(a) => a.iter().map(|a| a.id).collect(),
        other => panic!("expected created, got {other:?}"),
    }
}

fn dlr(remote_id: &str, status: ReceiptStatus) -> Receipt {
    Receipt {
        route: "r".into(),
        remote_id: remote_id.into(),
        status,
        error_code: None,
        error_text: None,
        sc_time: None,
        legacy_id: None,
    }
}

fn final_failure() -> AttemptFailure {
    AttemptFailure {
        code: "refused".into(),
        text: "permanent".into(),
        retry_at: None,
        final_status: Status::Failed,
        untried: false,
        accepted: Vec::new(),
        concat_ref: None,
    }
}

/// A connection of the test's own on the store's file, to look at rows the
/// store's API does not show.
fn raw(s: &Store) -> rusqlite::Connection {
    rusqlite::Connection::open(s.path()).unwrap()
}

fn rows_of(c: &rusqlite::Connection, table: &str, id: i64) -> i64 {
    c.query_row(&format!("SELECT count(*) FROM {table} WHERE message_id = ?1"), [id], |r| r.get(0)).unwrap()
}

/// One message in each state: queued, sending, submitted (waiting for its
/// report), delivered, failed, cancelled, expired. Returns their ids in
/// that order.
async fn one_of_each(s: &Store) -> [i64; 7] {
    let ids = enqueue_ids(s, (0..6).map(|_| new_msg(2)).collect()).await;
    let gone = NewMessage { valid_until: now_ms() - 1, ..new_msg(1) };
    let expired = enqueue_ids(s, vec![gone]).await[0];
    // Claim ids[1..5] (the oldest five after cancelling the last).
    assert_eq!(s.cancel(ids[5], None).await.unwrap(), CancelOutcome::Cancelled);
    let claimed: Vec<i64> = s.claim("r".into(), 4, Policy::default()).await.unwrap().iter().map(|m| m.id).collect();
    assert_eq!(claimed, ids[..4]);
    assert_eq!(s.sweep(DAY).await.unwrap(), 1, "the message past its validity expires");
    let submit = |n: i64| (0..2).map(|i| SubmittedPart { index: i, remote_id: Some(format!("{n}-{i}")) }).collect();
    s.record_submitted(ids[2], "r".into(), submit(ids[2]), None).await.unwrap();
    s.record_submitted(ids[3], "r".into(), submit(ids[3]), None).await.unwrap();
    for i in 0..2 {
        s.record_receipt(dlr(&format!("{}-{i}", ids[3]), ReceiptStatus::Delivered)).await.unwrap();
    }
    s.record_failure(ids[0], final_failure()).await.unwrap();
    // ids[0] failed; ids[1] stays sending; ids[4] was not claimed: queued.
    let [failed, sending, submitted, delivered, queued, cancelled] = ids[..] else { unreachable!() };
    [queued, sending, submitted, delivered, failed, cancelled, expired]
}

#[tokio::test]
async fn prune_removes_old_finished_messages_with_their_parts_and_history_only() {
    let (_d, s) = open().await;
    let [queued, sending, submitted, delivered, failed, cancelled, expired] = one_of_each(&s).await;
    for (id, status) in [
        (queued, Status::Queued),
        (sending, Status::Sending),
        (submitted, Status::Submitted),
        (delivered, Status::Delivered),
        (failed, Status::Failed),
        (cancelled, Status::Cancelled),
        (expired, Status::Expired),
    ] {
        assert_eq!(s.get(id).await.unwrap().unwrap().status, status, "message {id}");
    }
    let c = raw(&s);
    assert_eq!(rows_of(&c, "parts", delivered), 2);

    // Within the retention nothing goes.
    assert_eq!(s.prune(keep_90_days(), now_ms() + 89 * DAY).await.unwrap().messages, 0);
    // Long after it, only the finished ones go, with their parts and history;
    // the unfinished stay however old they are.
    let pruned = s.prune(keep_90_days(), now_ms() + 10_000 * DAY).await.unwrap();
    assert_eq!(pruned.messages, 4);
    for id in [delivered, failed, cancelled, expired] {
        assert!(s.get(id).await.unwrap().is_none(), "message {id} pruned");
        assert_eq!((rows_of(&c, "parts", id), rows_of(&c, "history", id)), (0, 0), "message {id}'s rows");
    }
    for id in [queued, sending, submitted] {
        let v = s.get(id).await.unwrap().unwrap();
        assert!(!v.history.is_empty(), "message {id} keeps its history");
    }
    assert_eq!(s.get(submitted).await.unwrap().unwrap().parts.len(), 2);
    // Keeping forever keeps everything.
    let forever = Retention { finished_ms: None, inbound_ms: None, orphan_receipt_ms: None };
    assert_eq!(s.prune(forever, i64::MAX / 2).await.unwrap().rows(), 0);
}

#[tokio::test]
async fn prune_removes_old_inbound_and_orphan_receipts() {
    let (_d, s) = open().await;
    // A key wrote to the sender before: the unlinked reply is its to see.
    let from = part(1, "hi").from;
    let to_sender = NewMessage { to: from.clone(), ..new_msg(1) };
    s.enqueue("k2".into(), None, vec![to_sender], None, Policy::default()).await.unwrap();
    let inbound = s.record_inbound(InboundPart { concat: None, ..part(1, "hi") }, no_replies()).await.unwrap().unwrap();
    assert!(s.inbound(inbound, Some("k2".into())).await.unwrap().is_some());
    assert_eq!(s.record_receipt(dlr("nobody-sent-this", ReceiptStatus::Delivered)).await.unwrap(), ReceiptMatch::Early);
    let c = raw(&s);
    let orphans = || c.query_row("SELECT count(*) FROM early_receipts", [], |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!(orphans(), 1);

    let pruned = s.prune(keep_90_days(), now_ms() + DAY).await.unwrap();
    assert_eq!((pruned.inbound, pruned.receipts), (0, 0), "a day old: kept");
    let pruned = s.prune(keep_90_days(), now_ms() + 3 * DAY).await.unwrap();
    assert_eq!((pruned.inbound, pruned.receipts), (0, 1), "the orphan receipt goes after two days");
    assert_eq!(orphans(), 0);
    assert!(s.inbound(inbound, None).await.unwrap().is_some());
    let pruned = s.prune(keep_90_days(), now_ms() + 91 * DAY).await.unwrap();
    assert_eq!(pruned.inbound, 1);
    assert!(s.inbound(inbound, None).await.unwrap().is_none());
    let keys = c.query_row("SELECT count(*) FROM inbound_keys", [], |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!(keys, 0, "who could see a pruned reply goes with it");
}

#[tokio::test]
async fn prune_gives_the_space_back_to_the_file_system() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let s = Store::open(&path).unwrap();
    assert!(s.can_shrink().await.unwrap(), "a new store is created with incremental auto-vacuum");
    // More than one prune batch of big messages, expired at once.
    for _ in 0..3 {
        let msgs = (0..1000).map(|_| NewMessage { text: "x".repeat(2000), valid_until: now_ms() - 1, ..new_msg(1) });
        enqueue_ids(&s, msgs.collect()).await;
    }
    while s.sweep(DAY).await.unwrap() > 0 {}
    s.close().await;
    drop(s);
    let full = std::fs::metadata(&path).unwrap().len();
    assert!(full > 6_000_000, "the messages are on disk: {full} bytes");

    let s = Store::open(&path).unwrap();
    let pruned = s.prune(keep_90_days(), now_ms() + 91 * DAY).await.unwrap();
    assert_eq!(pruned.messages, 3000);
    assert!(pruned.freed_bytes > 5_000_000, "freed {} bytes", pruned.freed_bytes);
    s.close().await;
    let after = std::fs::metadata(&path).unwrap().len();
    assert!(after < full / 4, "the file shrank from {full} to {after} bytes");
}

#[tokio::test]
async fn vacuum_lets_an_old_file_shrink() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    {
        // A store file from before incremental auto-vacuum.
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);").unwrap();
    }
    let s = Store::open(&path).unwrap();
    assert!(!s.can_shrink().await.unwrap());
    s.vacuum().await.unwrap();
    assert!(s.can_shrink().await.unwrap());
    // The store still works after the rewrite.
    enqueue_ids(&s, vec![new_msg(1)]).await;
    s.close().await;
}

/// The counts scrapes read, against a real GROUP BY over the messages.
fn assert_counts_match(s: &Store, counts: &Counts, when: &str) {
    let c = raw(s);
    let mut by_status = std::collections::BTreeMap::new();
    let mut q = c.prepare("SELECT status, count(*) FROM messages GROUP BY status").unwrap();
    for r in q.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))).unwrap() {
        let (k, v) = r.unwrap();
        by_status.insert(k, v);
    }
    assert_eq!(counts.by_status, by_status, "by status, {when}");
    let mut queued: std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>> = Default::default();
    let mut q = c
        .prepare("SELECT route, priority, count(*) FROM messages WHERE status = 'queued' GROUP BY route, priority")
        .unwrap();
    for r in q.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))).unwrap() {
        let (route, pri, n) = r.unwrap();
        queued.entry(route).or_default().insert(Priority::from_i64(pri).unwrap().as_str().into(), n as u64);
    }
    assert_eq!(counts.queued, queued, "queue by route and priority, {when}");
    let oldest: Option<Millis> =
        c.query_row("SELECT min(created_at) FROM messages WHERE status = 'queued'", [], |r| r.get(0)).unwrap();
    assert_eq!(counts.oldest_queued_at, oldest, "oldest queued, {when}");
}

#[tokio::test]
async fn counts_stay_exact_through_every_kind_of_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let s = Store::open(&path).unwrap();
    assert_counts_match(&s, &s.counts().await.unwrap(), "empty");
    one_of_each(&s).await;
    assert_counts_match(&s, &s.counts().await.unwrap(), "one of each");
    // More traffic on three routes at every priority.
    let mut msgs = Vec::new();
    for (i, route) in ["r", "a", "b"].iter().cycle().take(30).enumerate() {
        let priority = Priority::ALL[(i / 3) % Priority::ALL.len()];
        msgs.push(NewMessage { route: route.to_string(), priority, ..new_msg(1) });
    }
    let ids = enqueue_ids(&s, msgs).await;
    s.cancel(ids[3], None).await.unwrap();
    // A retry goes back to the queue; a final failure leaves it.
    let claimed = s.claim("a".into(), 4, Policy::default()).await.unwrap();
    let retry = AttemptFailure { retry_at: Some(now_ms()), final_status: Status::Failed, ..final_failure() };
    s.record_failure(claimed[0].id, retry).await.unwrap();
    s.record_failure(claimed[1].id, final_failure()).await.unwrap();
    assert_counts_match(&s, &s.counts().await.unwrap(), "after failures");
    // Route "b" goes away; failover moves some of "r" to "a".
    assert_eq!(s.reroute("b".into(), "a".into()).await.unwrap(), 10);
    s.move_queued("r".into(), 3, |_| Some("a".to_string())).await.unwrap();
    assert_counts_match(&s, &s.counts().await.unwrap(), "after reroute and failover");
    // A crash with messages in flight: they go back to the queue at start.
    s.claim("a".into(), 5, Policy::default()).await.unwrap();
    drop(s);
    let s = Store::open(&path).unwrap();
    let counts = s.counts().await.unwrap();
    assert_eq!(counts.by_status.get("sending"), None, "nothing left sending after a restart");
    assert_counts_match(&s, &counts, "after a restart");
    s.prune(keep_90_days(), now_ms() + 91 * DAY).await.unwrap();
    let counts = s.counts().await.unwrap();
    assert_counts_match(&s, &counts, "after a prune");
    assert_eq!(s.queued_total().await.unwrap(), counts.queued.values().flat_map(|m| m.values()).sum::<u64>());
    let mut routes = s.queued_routes().await.unwrap();
    routes.sort();
    assert_eq!(routes, ["a", "r"]);
}

/// An outbox row: (kind, message, inbound, subject).
type EventRow = (String, Option<i64>, Option<i64>, Option<String>);

/// The outbox rows in id order.
fn events(c: &rusqlite::Connection) -> Vec<EventRow> {
    c.prepare("SELECT kind, message_id, inbound_id, subject FROM events ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn every_reportable_change_writes_its_event_in_the_same_transaction() {
    let (_d, c) = conn();
    let t0 = 1_700_000_000_000;
    let m = claimed(&c, 1, t0).id;
    messages::record_submitted(&c, m, "r", &one("X"), None, t0).unwrap();
    messages::apply_receipt(&c, &report("X", None), t0 + 1).unwrap();
    let single = InboundPart { concat: None, ..part(1, "Да") };
    let i = inbound::record(&c, &single, &no_replies(), t0 + 2).unwrap().unwrap();
    let stop = OptOutChange {
        number: "+79160000001".into(),
        scope: "promotional".into(),
        source: "keyword".into(),
        route: Some("r".into()),
        api_key: None,
        inbound_id: Some(i),
        opted_out: true,
    };
    assert!(optouts::set(&c, &stop, t0 + 3).unwrap());
    // The same opt-out again changes nothing and tells nobody.
    assert!(!optouts::set(&c, &stop, t0 + 4).unwrap());
    assert!(optouts::set(&c, &OptOutChange { opted_out: false, ..stop.clone() }, t0 + 5).unwrap());
    let n = Some("+79160000001".to_string());
    assert_eq!(
        events(&c),
        [
            ("message.submitted".into(), Some(m), None, None),
            ("message.delivered".into(), Some(m), None, None),
            ("inbound.received".into(), None, Some(i), None),
            ("optout.changed".into(), None, Some(i), n.clone()),
            ("optout.changed".into(), None, Some(i), n),
        ]
    );
    // A change whose transaction rolls back leaves no event behind.
    let EnqueueOutcome::Created(q) =
        messages::enqueue(&c, "k", None, &[new_msg(1)], None, &Policy::default(), t0).unwrap()
    else {
        panic!("created")
    };
    c.execute_batch("BEGIN").unwrap();
    assert_eq!(messages::cancel(&c, q[0].id, None, t0).unwrap(), CancelOutcome::Cancelled);
    c.execute_batch("ROLLBACK").unwrap();
    assert_eq!(events(&c).len(), 5);
}

fn optout(number: &str, scope: &str) -> OptOutChange {
    OptOutChange {
        number: number.into(),
        scope: scope.into(),
        source: "api".into(),
        route: None,
        api_key: Some("k".into()),
        inbound_id: None,
        opted_out: true,
    }
}

fn promo(send_at: Option<Millis>) -> NewMessage {
    NewMessage { priority: Priority::Promotional, send_at, ..new_msg(1) }
}

/// (status, error_code) of a message.
fn status_of(c: &rusqlite::Connection, id: i64) -> (String, Option<String>) {
    c.query_row("SELECT status, error_code FROM messages WHERE id = ?1", [id], |r| Ok((r.get(0)?, r.get(1)?))).unwrap()
}

#[test]
fn an_optout_that_came_while_a_message_waited_suppresses_it_at_claim() {
    let (_d, c) = conn();
    let t0 = 1_700_000_000_000;
    let policy = Policy::default();
    let batch = [promo(Some(t0 + 5_000)), NewMessage { priority: Priority::Otp, ..promo(Some(t0 + 5_000)) }];
    let EnqueueOutcome::Created(a) = messages::enqueue(&c, "k", None, &batch, None, &policy, t0).unwrap() else {
        panic!("created")
    };
    assert!(a.iter().all(|a| a.status == Status::Queued && a.reason.is_none()));
    assert!(optouts::set(&c, &optout("+79161234567", "promotional"), t0 + 1_000).unwrap());
    let claim = messages::claim(&c, "r", 10, &policy, t0 + 5_000).unwrap();
    // The otp still goes; the promotion is stopped, in the claim's transaction.
    assert_eq!(claim.claimed.iter().map(|m| m.id).collect::<Vec<_>>(), [a[1].id]);
    assert_eq!(claim.suppressed, [OPTED_OUT]);
    assert_eq!(status_of(&c, a[0].id), ("suppressed".into(), Some(OPTED_OUT.into())));
    let kinds: Vec<String> = events(&c).into_iter().filter(|e| e.1 == Some(a[0].id)).map(|e| e.0).collect();
    assert_eq!(kinds, ["message.suppressed"]);
    let counted: i64 =
        c.query_row("SELECT n FROM message_counts WHERE status = 'suppressed'", [], |r| r.get(0)).unwrap();
    assert_eq!(counted, 1);
    // Nothing of it is left to claim.
    assert!(messages::claim(&c, "r", 10, &policy, t0 + 6_000).unwrap().claimed.is_empty());
}

#[test]
fn policy_decides_at_accept_by_scope_and_consent() {
    let (_d, c) = conn();
    let t0 = 1_700_000_000_000;
    let site_promo = Policy::default();
    let site_all = Policy { optout_scope: crate::message::OptOutScope::All, ..Policy::default() };
    let consent = Policy { require_consent: true, ..Policy::default() };
    let otp = NewMessage { priority: Priority::Otp, ..new_msg(1) };
    let accept = |m: &NewMessage, p: &Policy| {
        let EnqueueOutcome::Created(mut a) =
            messages::enqueue(&c, "k", None, std::slice::from_ref(m), None, p, t0).unwrap()
        else {
            panic!("created")
        };
        let a = a.remove(0);
        (a.status, a.reason)
    };
    let queued = (Status::Queued, None);
    let opted_out = (Status::Suppressed, Some(OPTED_OUT.to_string()));
    let no_consent = (Status::Suppressed, Some(NO_CONSENT.to_string()));
    assert_eq!(accept(&promo(None), &site_promo), queued);
    optouts::set(&c, &optout("+79161234567", "promotional"), t0).unwrap();
    assert_eq!(accept(&promo(None), &site_promo), opted_out);
    assert_eq!(accept(&otp, &site_promo), queued);
    assert_eq!(accept(&otp, &site_all), opted_out);
    optouts::set(&c, &OptOutChange { opted_out: false, ..optout("+79161234567", "promotional") }, t0).unwrap();
    optouts::set(&c, &optout("+79161234567", "all"), t0).unwrap();
    assert_eq!(accept(&otp, &site_promo), opted_out);
    optouts::set(&c, &OptOutChange { opted_out: false, ..optout("+79161234567", "all") }, t0).unwrap();

    assert_eq!(accept(&promo(None), &consent), no_consent);
    assert_eq!(accept(&otp, &consent), queued, "consent is asked of promotions only");
    let given = NewConsent {
        number: "+79161234567".into(),
        scope: "promotional".into(),
        source: "web form".into(),
        proof: Some("I agree to receive offers".into()),
        recorded_by: "k".into(),
        at: t0,
    };
    let record = consents::add(&c, &given, t0).unwrap();
    assert_eq!(accept(&promo(None), &consent), queued);
    assert!(matches!(consents::withdraw(&c, record.id, t0 + 1).unwrap(), WithdrawOutcome::Withdrawn(_)));
    assert!(matches!(consents::withdraw(&c, record.id, t0 + 2).unwrap(), WithdrawOutcome::AlreadyWithdrawn(_)));
    assert_eq!(accept(&promo(None), &consent), no_consent);
    let kept = consents::get(&c, record.id).unwrap().unwrap();
    assert_eq!((kept.withdrawn_at, kept.proof), (Some(t0 + 1), given.proof));
    // Recorded and withdrawn: two events, each with the record as it then
    // stood; withdrawing it again tells nobody.
    let told: Vec<(String, Option<String>, serde_json::Value)> = c
        .prepare("SELECT kind, subject, data FROM events WHERE kind LIKE 'consent.%' ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, serde_json::from_str(&r.get::<_, String>(2)?).unwrap())))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(told.len(), 2, "{told:?}");
    for (kind, subject, _) in &told {
        assert_eq!((kind.as_str(), subject.as_deref()), ("consent.changed", Some("+79161234567")));
    }
    assert_eq!(told[0].2["active"], true);
    assert_eq!(told[0].2["proof"], "I agree to receive offers");
    assert_eq!(told[0].2["withdrawn_at"], serde_json::Value::Null);
    assert_eq!(told[1].2["active"], false);
    assert_eq!(told[1].2["id"], record.id);
    assert_eq!(told[1].2["withdrawn_at"], crate::message::to_rfc3339(t0 + 1));
}

// ---- conversations: linking and keywords ----

/// Rules as a Russian deployment has them: a few words of each meaning,
/// numbers written nationally in RU, a one-hour window.
fn ru_replies() -> crate::replies::ReplyRules {
    use crate::replies::{Intent, Keyword, ReplyRules};
    let mut r = ReplyRules::default()
        .keyword(Keyword::OptoutAll, &["STOPALL"])
        .keyword(Keyword::Optout, &["STOP", "СТОП"])
        .keyword(Keyword::Optin, &["START"])
        .keyword(Keyword::Help, &["ПОМОЩЬ"])
        .intent(Intent::Yes, &["ДА"]);
    r.help_text = "Отписаться: СТОП".into();
    r.region = "RU".into();
    r.window_ms = 3_600_000;
    r
}

/// A message from `key` to `to` on route "r", claimed (so it went out) at `now`.
fn sent(c: &rusqlite::Connection, key: &str, to: &str, reference: &str, now: Millis) -> i64 {
    let m = NewMessage { to: to.into(), reference: Some(reference.into()), ..new_msg(1) };
    let EnqueueOutcome::Created(a) = messages::enqueue(c, key, None, &[m], None, &Policy::default(), now).unwrap()
    else {
        panic!("created")
    };
    messages::claim(c, "r", 100, &Policy::default(), now).unwrap();
    a[0].id
}

fn text_from(from: &str, text: &str) -> InboundPart {
    InboundPart { from: from.into(), concat: None, ..part(1, text) }
}

fn view_of(c: &rusqlite::Connection, id: i64) -> InboundView {
    inbound::get(c, id, None).unwrap().expect("stored")
}

#[test]
fn an_answer_is_linked_to_the_latest_message_sent_to_its_number_within_the_window() {
    let (_d, c) = conn();
    let rules = ru_replies();
    let t0 = 1_700_000_000_000;
    let _older = sent(&c, "b", "+79160000001", "older", t0);
    let asked = sent(&c, "a", "+79160000001", "table-8pm", t0 + 1_000);
    // Another number's message, and one still waiting to go, asked nothing here.
    sent(&c, "b", "+79160000002", "other", t0 + 2_000);
    messages::enqueue(
        &c,
        "b",
        None,
        &[NewMessage { to: "+79160000001".into(), ..new_msg(1) }],
        None,
        &Policy::default(),
        t0 + 3_000,
    )
    .unwrap();
    // Written nationally, the sender is still the number the message went to.
    let id = inbound::record(&c, &text_from("8 916 000-00-01", "Да!"), &rules, t0 + 60_000).unwrap().unwrap();
    let v = view_of(&c, id);
    assert_eq!(
        v.reply_to,
        Some(ReplyTo { message_id: asked, api_key: Some("a".into()), reference: Some("table-8pm".into()) })
    );
    assert_eq!((v.intent.as_deref(), v.keyword.as_deref()), (Some("yes"), None));
    let key: Option<String> =
        c.query_row("SELECT api_key FROM events WHERE inbound_id = ?1", [id], |r| r.get(0)).unwrap();
    assert_eq!(key.as_deref(), Some("a"), "the event goes to the key whose message it answers");
    // The key that asked sees it; the other one, which wrote to the number
    // before, does not: the answer is not to its message.
    assert!(inbound::get(&c, id, Some("a")).unwrap().is_some());
    assert!(inbound::get(&c, id, Some("b")).unwrap().is_none());
    let listed = |key: &str| inbound::list(&c, Some(key), None, 10).unwrap().iter().map(|v| v.id).collect::<Vec<_>>();
    assert_eq!((listed("a"), listed("b")), (vec![id], vec![]));
    // Still the key's once retention has pruned the message it answers.
    c.execute("DELETE FROM messages WHERE id = ?1", [asked]).unwrap();
    assert!(inbound::get(&c, id, Some("a")).unwrap().is_some());
    assert_eq!(listed("a"), [id]);

    // Past the window: linked to nothing, nobody's event.
    let late = inbound::record(&c, &text_from("+79160000001", "да"), &rules, t0 + 1_000 + 3_600_001).unwrap().unwrap();
    let v = view_of(&c, late);
    assert_eq!((v.reply_to, v.intent.as_deref()), (None, Some("yes")));
    let key: Option<String> =
        c.query_row("SELECT api_key FROM events WHERE inbound_id = ?1", [late], |r| r.get(0)).unwrap();
    assert_eq!(key, None);
    // An alphanumeric sender is read but linked to nothing.
    let bank = inbound::record(&c, &text_from("MyBank", "STOP"), &rules, t0 + 70_000).unwrap().unwrap();
    let v = view_of(&c, bank);
    assert_eq!((v.reply_to, v.keyword.as_deref()), (None, Some("optout")));
    let optouts: i64 = c.query_row("SELECT count(*) FROM optouts", [], |r| r.get(0)).unwrap();
    assert_eq!(optouts, 0, "no number to opt out");
}

type OptOutRow = (String, String, String, Option<String>, Option<String>, Option<i64>);

fn optout_rows(c: &rusqlite::Connection) -> Vec<OptOutRow> {
    c.prepare("SELECT number, scope, source, route, api_key, inbound_id FROM optouts ORDER BY scope")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// smsgw's own messages: (to, route, priority, text, reference).
fn auto_replies(c: &rusqlite::Connection) -> Vec<(String, String, i64, String, Option<String>)> {
    c.prepare("SELECT recipient, route, priority, body, reference FROM messages WHERE api_key = 'smsgw' ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn keywords_act_in_the_transaction_that_stores_them() {
    let (_d, c) = conn();
    let mut rules = ru_replies();
    rules.optout_reply = Some("Вы отписаны".into());
    let t0 = 1_700_000_000_000;
    sent(&c, "shop", "+79160000001", "promo", t0);
    let stop = inbound::record(&c, &text_from("+79160000001", "CTOП"), &rules, t0 + 1_000).unwrap().unwrap();
    let n = "+79160000001".to_string();
    let row =
        |scope: &str, id| (n.clone(), scope.into(), "keyword".into(), Some("r".into()), Some("shop".into()), Some(id));
    assert_eq!(optout_rows(&c), [row("promotional", stop)]);
    let all = inbound::record(&c, &text_from("+79160000001", "stop all"), &rules, t0 + 2_000).unwrap().unwrap();
    assert_eq!(optout_rows(&c), [row("all", all), row("promotional", stop)]);
    // Each opt-out is confirmed through the route it came in on, as smsgw's own transactional message.
    let confirm = |id: i64, kw: &str| {
        (n.clone(), "r".to_string(), 1, "Вы отписаны".to_string(), Some(format!("inbound:{id}:{kw}")))
    };
    assert_eq!(auto_replies(&c), [confirm(stop, "optout"), confirm(all, "optout_all")]);

    // START takes both back, and no confirmation is set for it.
    let start = inbound::record(&c, &text_from("+79160000001", "Start."), &rules, t0 + 3_000).unwrap().unwrap();
    assert_eq!(optout_rows(&c), []);
    assert_eq!(auto_replies(&c).len(), 2);
    let changes: i64 = c
        .query_row("SELECT count(*) FROM events WHERE kind = 'optout.changed' AND inbound_id = ?1", [start], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(changes, 2);

    // HELP is answered; the answer is not what a later "Да" answers.
    let help = inbound::record(&c, &text_from("+79160000001", "помощь"), &rules, t0 + 4_000).unwrap().unwrap();
    assert_eq!(
        auto_replies(&c)[2],
        (n.clone(), "r".into(), 1, "Отписаться: СТОП".into(), Some(format!("inbound:{help}:help")))
    );
    messages::claim(&c, "r", 100, &Policy::default(), t0 + 5_000).unwrap();
    let yes = inbound::record(&c, &text_from("+79160000001", "да"), &rules, t0 + 6_000).unwrap().unwrap();
    assert_eq!(view_of(&c, yes).reply_to.and_then(|r| r.api_key).as_deref(), Some("shop"));

    // Two machines answering each other stop at the auto-reply limit.
    for i in 0..10 {
        inbound::record(&c, &text_from("+79160000001", "ПОМОЩЬ"), &rules, t0 + 7_000 + i).unwrap();
    }
    assert_eq!(auto_replies(&c).len(), 5);
}

#[tokio::test]
async fn a_keyword_whose_action_fails_leaves_no_inbound_row_behind() {
    let (_d, s) = open().await;
    // The registry cannot take the opt-out: the writer undoes the whole job.
    s.write(|c| Ok(c.execute_batch("DROP TABLE optouts")?)).await.unwrap();
    let stop = text_from("+79160000001", "STOP");
    assert!(s.record_inbound(stop, std::sync::Arc::new(ru_replies())).await.is_err());
    assert!(s.list_inbound(None, None, 10).await.unwrap().is_empty());
    let events: i64 = s.read(|c| c.query_row("SELECT count(*) FROM events", [], |r| r.get(0))).await.unwrap();
    assert_eq!(events, 0);
}

// --- time zones, quiet hours and frequency caps at claim ---

/// 2026-12-06 12:00 UTC: 22:00 in Vladivostok, 15:00 in Moscow.
const NOON_UTC: Millis = 1_796_558_400_000;

fn to_claim(to: &str, priority: Priority, tz: Option<&str>) -> NewMessage {
    NewMessage { to: to.into(), priority, tz: tz.map(str::to_string), valid_until: NOON_UTC + 86_400_000, ..new_msg(1) }
}

fn tz_of(c: &rusqlite::Connection, id: i64) -> String {
    c.query_row("SELECT tz FROM messages WHERE id = ?1", [id], |r| r.get(0)).unwrap()
}

#[test]
fn a_claim_reads_one_index_range_per_class() {
    let (_d, c) = conn();
    // With the store's own settings (one plan per statement, whatever the
    // values bound later).
    configure(&c).unwrap();
    let plan: Vec<String> = c
        .prepare(&format!("EXPLAIN QUERY PLAN {}", messages::CLAIM_SQL))
        .unwrap()
        .query_map(rusqlite::params!["r", 0, 10, "k", 0], |r| r.get::<_, String>(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    // No sort and no scan: the due rows of one class, in index order.
    assert_eq!(plan, ["SEARCH messages USING INDEX messages_queue (route=? AND priority=? AND due_at<?)"]);
}

#[test]
fn the_opt_out_registry_pages_newest_first_without_sorting_it() {
    let (_d, c) = conn();
    configure(&c).unwrap();
    let cursor = OptOutCursor { at: 5, number: "+79160000001".into(), scope: "all".into() };
    for f in [
        OptOutFilter { limit: 100, ..OptOutFilter::default() },
        OptOutFilter { limit: 100, after: Some(cursor), ..OptOutFilter::default() },
    ] {
        let (sql, args) = optouts::list_sql(&f);
        let plan: Vec<String> = c
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(plan.iter().all(|p| p.contains("optouts_recent") && !p.contains("TEMP B-TREE")), "{sql}: {plan:?}");
    }
}

#[test]
fn the_zone_is_the_one_given_else_the_number_s_else_the_default() {
    let (_d, c) = conn();
    let policy = Policy { default_tz: chrono_tz::Europe::Berlin, ..Policy::default() };
    let msgs = [
        to_claim("+79161234567", Priority::Otp, Some("Asia/Tokyo")),
        to_claim("+79147001234", Priority::Otp, None),
        to_claim("+12025550100", Priority::Otp, None),
    ];
    let EnqueueOutcome::Created(a) = messages::enqueue(&c, "k", None, &msgs, None, &policy, NOON_UTC).unwrap() else {
        panic!("created")
    };
    let zones: Vec<String> = a.iter().map(|m| tz_of(&c, m.id)).collect();
    assert_eq!(zones, ["Asia/Tokyo", "Asia/Vladivostok", "Europe/Berlin"]);
}

#[test]
fn quiet_hours_defer_in_the_recipient_s_zone_and_otp_goes() {
    let (_d, c) = conn();
    let policy = Policy::default(); // promotional quiet 21:00-09:00
    let msgs = [
        to_claim("+79147001234", Priority::Promotional, None), // 22:00 in Vladivostok: quiet
        to_claim("+79161234567", Priority::Promotional, None), // 15:00 in Moscow: goes
        to_claim("+79147001234", Priority::Otp, None),         // otp: never held
    ];
    messages::enqueue(&c, "k", None, &msgs, None, &policy, NOON_UTC).unwrap();
    let got: Vec<i64> = messages::claim(&c, "r", 10, &policy, NOON_UTC).unwrap().claimed.iter().map(|m| m.id).collect();
    assert_eq!(got, [3, 2]);
    assert_eq!(status(&c, 1), "queued");
    let (due, detail): (Millis, String) = c
        .query_row("SELECT due_at, (SELECT detail FROM history WHERE message_id = 1 ORDER BY rowid DESC LIMIT 1) FROM messages WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(due, NOON_UTC + 11 * 3_600_000, "09:00 next morning in Vladivostok is 23:00 UTC");
    assert_eq!(detail, "deferred by quiet hours until 09:00 Asia/Vladivostok");
    // Not due before the window opens; claimed when it has.
    assert!(messages::claim(&c, "r", 10, &policy, due - 1).unwrap().claimed.is_empty());
    let got = messages::claim(&c, "r", 10, &policy, due).unwrap().claimed;
    assert_eq!(got.iter().map(|m| m.id).collect::<Vec<_>>(), [1]);
}

#[test]
fn a_cap_counts_each_message_once_and_suppresses_beyond_it() {
    let (_d, c) = conn();
    let cap = crate::config::Cap { count: 2, window_ms: 30 * 86_400_000 };
    let policy = Policy {
        quiet_hours: crate::config::QuietHours { promotional: None, transactional: None },
        caps: crate::config::Caps { promotional: Some(cap), ..Default::default() },
        ..Policy::default()
    };
    let promo = || to_claim("+79161234567", Priority::Promotional, None);
    let mut now = NOON_UTC;
    for _ in 0..2 {
        messages::enqueue(&c, "k", None, &[promo()], None, &policy, now).unwrap();
        assert_eq!(messages::claim(&c, "r", 10, &policy, now).unwrap().claimed.len(), 1);
        now += 1_000;
    }
    // A retry of a counted message is not counted again.
    c.execute("UPDATE messages SET status = 'queued' WHERE id = 2", []).unwrap();
    assert_eq!(messages::claim(&c, "r", 10, &policy, now).unwrap().claimed.len(), 1);
    let ledger: i64 = c.query_row("SELECT count(*) FROM sends", [], |r| r.get(0)).unwrap();
    assert_eq!(ledger, 2);
    // The third promotion is suppressed; a transactional one still goes.
    let more = [promo(), to_claim("+79161234567", Priority::Transactional, None)];
    messages::enqueue(&c, "k", None, &more, None, &policy, now).unwrap();
    let claim = messages::claim(&c, "r", 10, &policy, now).unwrap();
    assert_eq!(claim.claimed.iter().map(|m| m.id).collect::<Vec<_>>(), [4]);
    assert_eq!(claim.suppressed, ["capped"]);
    let (st, code): (String, String) = c
        .query_row("SELECT status, error_code FROM messages WHERE id = 3", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert_eq!((st.as_str(), code.as_str()), ("suppressed", "capped"));
    // Past the window the number may get promotions again.
    let later = NewMessage { valid_until: now + cap.window_ms + 60_000, ..promo() };
    messages::enqueue(&c, "k", None, &[later], None, &policy, now + cap.window_ms).unwrap();
    assert_eq!(messages::claim(&c, "r", 10, &policy, now + cap.window_ms).unwrap().claimed.len(), 1);
}

#[test]
fn the_caps_ledger_is_pruned_past_the_longest_window_a_cap_may_have() {
    let (_d, c) = conn();
    let keep = retention::SENDS_KEEP_MS;
    for (id, at) in [(1, NOON_UTC - keep - 1), (2, NOON_UTC - keep + 1)] {
        c.execute(
            "INSERT INTO sends (recipient, priority, at, message_id) VALUES ('+79161234567', 2, ?1, ?2)",
            [at, id],
        )
        .unwrap();
    }
    let forever = Retention { finished_ms: None, inbound_ms: None, orphan_receipt_ms: None };
    let pruned = retention::prune_batch(&c, &forever, NOON_UTC, 100).unwrap();
    assert_eq!(pruned.sends, 1);
    let left: Vec<i64> = c
        .prepare("SELECT message_id FROM sends")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(left, [2]);
}

fn smpp_part(seq: u8, coding: u8, data: &[u8]) -> SmppPart {
    SmppPart {
        account: "acc".into(),
        source: "SMSGW".into(),
        dest: "79161234567".into(),
        reference: 9,
        total: 3,
        seq,
        coding,
        data: data.to_vec(),
    }
}

#[tokio::test]
async fn a_set_whose_message_policy_stopped_joins_without_a_queued_history_row() {
    let (_d, s) = open().await;
    let stop = OptOutChange {
        number: "+79161234567".into(),
        scope: "all".into(),
        source: "api".into(),
        route: None,
        api_key: None,
        inbound_id: None,
        opted_out: true,
    };
    assert!(s.set_optout(stop).await.unwrap());
    let add = |p: SmppPart| s.smpp_part("smpp:acc".into(), new_msg(1), SmppPart { total: 2, ..p }, Policy::default());
    let PartOutcome::Stored { message_id: id, joined: false } = add(smpp_part(1, 0, b"one ")).await.unwrap() else {
        panic!("the first part is stored")
    };
    assert_eq!(add(smpp_part(2, 0, b"two")).await.unwrap(), PartOutcome::Stored { message_id: id, joined: true });
    let m = s.get(id).await.unwrap().unwrap();
    assert_eq!(m.status, Status::Suppressed);
    assert_eq!(m.text, "one two", "the text is joined all the same");
    let history: Vec<Status> = m.history.iter().map(|h| h.status).collect();
    assert_eq!(history, [Status::Suppressed], "it ended at its first part: {:?}", m.history);
}

#[tokio::test]
async fn smpp_parts_hold_the_message_until_the_set_joins() {
    let (_d, s) = open().await;
    let add = |p: SmppPart| {
        s.smpp_part("smpp:acc".into(), NewMessage { receipt: Some(1), ..new_msg(1) }, p, Policy::default())
    };
    let (high, low) = ([0xD8, 0x3D], [0xDE, 0x00]); // 😀 split across parts 2 and 3
    let first = add(smpp_part(3, 8, &[low[0], low[1], 0x00, b'!'])).await.unwrap();
    let PartOutcome::Stored { message_id: id, joined: false } = first else { panic!("{first:?}") };
    assert_eq!(s.claim("r".into(), 10, Policy::default()).await.unwrap().len(), 0, "held while parts wait");
    assert_eq!(add(smpp_part(3, 8, &[0, 0])).await.unwrap(), PartOutcome::Duplicate { message_id: id });
    assert_eq!(add(smpp_part(2, 0, b"x")).await.unwrap(), PartOutcome::MixedCoding { set: 8 });
    assert_eq!(
        add(smpp_part(1, 8, &[0x04, 0x1F, 0x04, 0x40])).await.unwrap(),
        PartOutcome::Stored { message_id: id, joined: false }
    );
    assert_eq!(
        add(smpp_part(2, 8, &[0x00, b' ', high[0], high[1]])).await.unwrap(),
        PartOutcome::Stored { message_id: id, joined: true }
    );
    let m = s.get(id).await.unwrap().unwrap();
    assert_eq!((m.text.as_str(), m.status), ("Пр 😀!", Status::Queued));
    assert_eq!(s.claim("r".into(), 10, Policy::default()).await.unwrap().len(), 1, "due once joined");
    // A part sent again after the join: the same message, nothing stored.
    assert_eq!(add(smpp_part(2, 8, &[0, 0])).await.unwrap(), PartOutcome::Duplicate { message_id: id });
    assert_eq!(s.get(id).await.unwrap().unwrap().text, "Пр 😀!");
    // Once the marker is forgotten, the same reference starts a new message.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert_eq!(s.smpp_expire_parts(0, 100).await.unwrap(), 0, "a joined set is not incomplete");
    let again = add(smpp_part(1, 8, &[0x04, 0x1F])).await.unwrap();
    assert!(matches!(again, PartOutcome::Stored { message_id, joined: false } if message_id != id), "{again:?}");
}

#[tokio::test]
async fn an_smpp_set_past_the_join_timeout_fails_incomplete() {
    let (_d, s) = open().await;
    let out = s.smpp_part(
        "smpp:acc".into(),
        NewMessage { receipt: Some(2), ..new_msg(1) },
        smpp_part(2, 0, b"middle"),
        Policy::default(),
    );
    let PartOutcome::Stored { message_id: id, .. } = out.await.unwrap() else { panic!() };
    assert_eq!(s.smpp_expire_parts(60_000, 100).await.unwrap(), 0, "not yet");
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert_eq!(s.smpp_expire_parts(0, 100).await.unwrap(), 1);
    let m = s.get(id).await.unwrap().unwrap();
    assert_eq!(
        (m.text.as_str(), m.status, m.error_code.as_deref()),
        ("[…]middle[…]", Status::Failed, Some("incomplete"))
    );
    assert_eq!(s.smpp_expire_parts(0, 100).await.unwrap(), 0, "its parts are gone");
}

#[test]
fn the_stores_connections_plan_each_statement_once() {
    let (_d, c) = conn();
    configure(&c).unwrap();
    // Shapes SQLite would otherwise plan again on every new parameter value:
    // an equality it used for the ORDER BY, and one compared with a partial
    // index's condition.
    for sql in [
        "SELECT status, error_code, error_text FROM parts WHERE message_id = ?1 ORDER BY idx",
        "SELECT at FROM history WHERE message_id = ?1 ORDER BY rowid",
        "SELECT id FROM messages WHERE status = ?1",
    ] {
        for value in 0..3i64 {
            let mut q = c.prepare_cached(sql).unwrap();
            q.query([value]).unwrap().next().unwrap();
            if value == 2 {
                assert_eq!(q.get_status(rusqlite::StatementStatus::RePrepare), 0, "{sql}");
            }
        }
    }
}

#[test]
fn a_status_change_builds_no_temporary_table() {
    // Every status change writes `updated_at`, so SQLite checks each
    // partial index of `messages` for the old and the new row. A condition
    // with a constant IN list of more than two values would build a
    // temporary b-tree for each check.
    let (_d, c) = conn();
    for sql in [
        "UPDATE messages SET status = 'delivered', updated_at = 2, error_code = NULL WHERE id = 1",
        "INSERT INTO messages (api_key, recipient, body, encoding, segments, priority, route, status, created_at,
                               updated_at, due_at) VALUES ('k', '+7', 'b', 'gsm7', 1, 1, 'r', 'queued', 1, 1, 1)",
    ] {
        let program: Vec<String> = c
            .prepare(&format!("EXPLAIN {sql}"))
            .unwrap()
            .query_map([], |r| r.get::<_, String>(1))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(program.iter().all(|op| op != "OpenEphemeral"), "{sql}: {program:?}");
    }
}

fn replacement(text: &str) -> Replacement {
    Replacement {
        owner: "k".into(),
        from: None,
        text: text.into(),
        encoding: Encoding::Gsm7,
        segments: 1,
        send_at: None,
        valid_until: None,
        receipt: 1,
        by: "through SMPP by account \"crm\"".into(),
    }
}

#[test]
fn only_a_queued_message_nothing_of_which_went_out_is_replaced() {
    let (_d, c) = conn();
    let t0 = 1_700_000_000_000;
    // Queued and untouched: text, receipt bits and (a time already past
    // meaning now) schedule replaced, with a history row.
    let later = NewMessage { send_at: Some(t0 + 3_600_000), valid_until: t0 + 7_200_000, ..new_msg(1) };
    let EnqueueOutcome::Created(a) = messages::enqueue(&c, "k", None, &[later], None, &Policy::default(), t0).unwrap()
    else {
        panic!("created")
    };
    let id = a[0].id;
    let r = Replacement { send_at: Some(t0 - 1), ..replacement("new text") };
    let out = messages::replace(&c, id, &r, t0 + 10).unwrap();
    assert_eq!(out, ReplaceOutcome::Replaced { route: "r".into() });
    let row: (String, Option<Millis>, Millis, Option<Millis>, Option<i64>) = c
        .query_row("SELECT body, send_at, due_at, valid_until, receipt FROM messages WHERE id = ?1", [id], |q| {
            Ok((q.get(0)?, q.get(1)?, q.get(2)?, q.get(3)?, q.get(4)?))
        })
        .unwrap();
    assert_eq!(row, ("new text".into(), None, t0 + 10, Some(t0 + 7_200_000), Some(1)));
    let detail: String = c
        .query_row("SELECT detail FROM history WHERE message_id = ?1 ORDER BY rowid DESC", [id], |q| q.get(0))
        .unwrap();
    assert_eq!(detail, "replaced through SMPP by account \"crm\": text (1 segment, gsm7), schedule");
    assert_eq!(events(&c), [("message.replaced".into(), Some(id), None, None)], "a service is told");
    // Another key's message is not found; another sender is refused; a
    // validity before the due time is refused; none of them changes it.
    let theirs = Replacement { owner: "other".into(), ..replacement("x") };
    assert_eq!(messages::replace(&c, id, &theirs, t0).unwrap(), ReplaceOutcome::NotFound);
    let sender = Replacement { from: Some("BANK".into()), ..replacement("x") };
    assert_eq!(messages::replace(&c, id, &sender, t0).unwrap(), ReplaceOutcome::OtherSender);
    let short = Replacement { valid_until: Some(t0 + 5), ..replacement("x") };
    assert_eq!(messages::replace(&c, id, &short, t0 + 10).unwrap(), ReplaceOutcome::ExpiresBeforeDue);
    assert_eq!(messages::replace(&c, 999_999, &replacement("x"), t0).unwrap(), ReplaceOutcome::NotFound);
    let body: String = c.query_row("SELECT body FROM messages WHERE id = ?1", [id], |q| q.get(0)).unwrap();
    assert_eq!(body, "new text");
    assert_eq!(events(&c).len(), 1, "a refused replacement tells nobody");

    // Once it has left the queue it is too late.
    messages::cancel(&c, id, None, t0 + 11).unwrap();
    assert_eq!(
        messages::replace(&c, id, &replacement("x"), t0 + 12).unwrap(),
        ReplaceOutcome::TooLate(Status::Cancelled)
    );

    // A long message whose first part went out before a failure: queued
    // again, but under way.
    let m = claimed(&c, 3, t0 + 20);
    let f = AttemptFailure {
        code: "cms_38".into(),
        text: "network out of order".into(),
        retry_at: Some(t0 + 30),
        final_status: Status::Queued,
        untried: false,
        accepted: one("p1"),
        concat_ref: Some(42),
    };
    messages::record_failure(&c, m.id, &f, t0 + 20).unwrap();
    assert_eq!(status(&c, m.id), "queued");
    assert_eq!(messages::replace(&c, m.id, &replacement("x"), t0 + 25).unwrap(), ReplaceOutcome::Underway);

    // A message still waiting for its SMPP parts: under way.
    let part = SmppPart {
        account: "crm".into(),
        source: "S".into(),
        dest: "79161234567".into(),
        reference: 7,
        total: 2,
        seq: 1,
        coding: 0,
        data: b"first half".to_vec(),
    };
    let (PartOutcome::Stored { message_id, joined: false }, None) =
        smpp_parts::add(&c, "k", &NewMessage { receipt: Some(0), ..new_msg(1) }, &part, &Policy::default(), t0)
            .unwrap()
    else {
        panic!("held")
    };
    assert_eq!(messages::replace(&c, message_id, &replacement("x"), t0).unwrap(), ReplaceOutcome::Underway);
}

#[test]
fn a_list_since_a_time_reads_from_the_first_message_made_then() {
    let (_d, c) = conn();
    let add = "INSERT INTO messages (api_key, recipient, body, encoding, segments, priority, route, status,
               created_at, updated_at, due_at) VALUES ('k', '+1', 'x', 'gsm7', 1, 0, 'r', 'delivered', ?1, ?1, ?1)";
    // Messages a second apart, then the clock stepped back a minute, and
    // some pruned (gaps in the ids).
    for i in 0..2_000i64 {
        c.execute(add, [1_000_000 + i * 1000]).unwrap();
    }
    c.execute(add, [1_000_000 + 1_940_000]).unwrap(); // id 2001, a minute behind id 2000
    c.execute("DELETE FROM messages WHERE id BETWEEN 500 AND 1200", []).unwrap();

    assert_eq!(query::first_id_from(&c, 0).unwrap(), 1);
    assert_eq!(query::first_id_from(&c, 1_000_000 + 1_500 * 1000).unwrap(), 1501);
    assert_eq!(query::first_id_from(&c, 1_000_000 + 800 * 1000).unwrap(), 500, "inside the gap: its start");
    assert_eq!(query::first_id_from(&c, 1_000_000 + 1_000_000_000).unwrap(), 2002, "none that new");

    let list = |since: Millis, limit: usize| -> Vec<i64> {
        let f = ListFilter { since: Some(since), limit, ..ListFilter::default() };
        query::list(&c, &f).unwrap().iter().map(|m| m.id).collect()
    };
    // The last ten seconds before the newest: ids 1991..=2000, and 2001,
    // made later but stamped earlier, is still within the clock's slack.
    let since = 1_000_000 + 1_990_000;
    assert_eq!(list(since, 100), (1991..=2000).rev().collect::<Vec<_>>());
    assert_eq!(list(1_000_000 + 1_930_000, 100).first(), Some(&2001));
    assert_eq!(list(0, 3), [2001, 2000, 1999]);
    assert_eq!(list(1_000_000 + 1_000_000_000, 10), Vec::<i64>::new());
}

#[tokio::test]
async fn a_read_that_runs_past_its_limit_is_stopped_and_its_connection_reused() {
    let (_d, s) = open().await;
    s.set_read_limit(std::time::Duration::from_millis(200));
    let endless = |c: &rusqlite::Connection| {
        c.query_row("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r", [], |r| {
            r.get::<_, i64>(0)
        })
    };
    let stopped = tokio::time::timeout(std::time::Duration::from_secs(20), s.read(endless)).await.expect("stopped");
    let Err(StoreError::Unavailable(why)) = stopped else { panic!("{stopped:?}") };
    assert!(why.contains("the longest a read may run"), "{why}");
    // The same pooled connection answers the next read.
    let n = s.read(|c| c.query_row("SELECT count(*) FROM messages", [], |r| r.get::<_, i64>(0))).await.unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn an_answer_s_address_goes_with_its_route_and_not_past_a_failover() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let s = Store::open(&path).unwrap();
    let msgs = vec![NewMessage { route: "gsm".into(), ..new_msg(1) }; 2];
    let ids = enqueue_ids(&s, msgs).await;
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute("UPDATE messages SET via = '+79160001111'", []).unwrap();
    let claimed = s.claim("gsm".into(), 1, Policy::default()).await.unwrap();
    assert_eq!((claimed[0].id, claimed[0].via.as_deref()), (ids[0], Some("+79160001111")));
    // Failed over to a carrier, the SIM's number is no address to send from.
    s.move_queued("gsm".into(), 10, |_| Some("carrier".to_string())).await.unwrap();
    let claimed = s.claim("carrier".into(), 1, Policy::default()).await.unwrap();
    assert_eq!((claimed[0].id, claimed[0].via.as_deref()), (ids[1], None));
}
