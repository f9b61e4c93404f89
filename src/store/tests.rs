//! Store tests on a real SQLite file: the paths the end-to-end tests reach
//! only by timing (receipt before submit result, reassembly, roll-up).

use super::*;
use crate::message::{Priority, Status};
use crate::sms::Encoding;

fn new_msg(segments: u32) -> NewMessage {
    NewMessage {
        recipient: "+79161234567".into(),
        sender: None,
        body: "x".into(),
        encoding: Encoding::Gsm7,
        segments,
        priority: Priority::Transactional,
        route: "r".into(),
        reference: None,
        send_at: None,
        valid_until: now_ms() + 60_000,
    }
}

async fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.db")).unwrap();
    (dir, store)
}

fn part(seq: u8, text: &str) -> InboundPart {
    InboundPart {
        route: "r".into(),
        sender: "+79160000001".into(),
        recipient: "+79160000002".into(),
        text: text.into(),
        concat: Some((7, 3, seq)),
        sent_at: Some(1_700_000_000_000),
        undecodable: None,
    }
}

#[tokio::test]
async fn concatenated_inbound_is_joined_in_order_whatever_the_arrival_order() {
    let (_d, s) = open().await;
    assert_eq!(s.record_inbound(part(3, "three")).await.unwrap(), None);
    assert_eq!(s.record_inbound(part(1, "one ")).await.unwrap(), None);
    // A duplicate of a part (a network retry) does not count twice.
    assert_eq!(s.record_inbound(part(1, "one ")).await.unwrap(), None);
    let id = s.record_inbound(part(2, "two ")).await.unwrap().expect("complete");
    let v = s.inbound(id, None).await.unwrap().unwrap();
    assert_eq!(v.text, "one two three");
    assert_eq!((v.parts, v.complete), (3, true));
    assert_eq!(v.sent_at, Some(1_700_000_000_000));
    let single = InboundPart { concat: None, ..part(1, "hi") };
    let id2 = s.record_inbound(single).await.unwrap().unwrap();
    let list = s.list_inbound(None, None, 10).await.unwrap();
    assert_eq!(list.iter().map(|v| v.id).collect::<Vec<_>>(), [id2, id]);
}

#[tokio::test]
async fn stale_parts_are_stored_incomplete() {
    let (_d, s) = open().await;
    s.record_inbound(part(1, "first ")).await.unwrap();
    s.record_inbound(part(3, "third")).await.unwrap();
    assert_eq!(s.flush_stale_inbound(60_000).await.unwrap(), 0);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(s.flush_stale_inbound(10).await.unwrap(), 1);
    let v = s.list_inbound(None, None, 10).await.unwrap().remove(0);
    assert_eq!(v.text, "first third");
    assert_eq!((v.parts, v.complete), (2, false));
}

#[tokio::test]
async fn receipt_before_submit_result_is_kept_and_applied() {
    let (_d, s) = open().await;
    let EnqueueOutcome::Created(a) = s.enqueue("k".into(), None, vec![new_msg(2)], None).await.unwrap() else {
        panic!("created")
    };
    let id = a[0].id;
    assert_eq!(s.claim("r".into(), 10).await.unwrap().len(), 1);
    let receipt = |rid: &str, status| Receipt {
        route: "r".into(),
        remote_id: rid.into(),
        status,
        error_code: None,
        error_text: None,
    };
    // The receipt for part 0 overtakes the submit result.
    assert_eq!(s.record_receipt(receipt("A", ReceiptStatus::Delivered)).await.unwrap(), ReceiptMatch::Early);
    let parts = vec![
        SubmittedPart { index: 0, remote_id: Some("A".into()) },
        SubmittedPart { index: 1, remote_id: Some("B".into()) },
    ];
    s.record_submitted(id, "r".into(), parts).await.unwrap();
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
    assert_eq!(states, [Status::Queued, Status::Sending, Status::Submitted, Status::Delivered]);
}

#[tokio::test]
async fn one_undelivered_part_makes_the_message_undelivered() {
    let (_d, s) = open().await;
    let EnqueueOutcome::Created(a) = s.enqueue("k".into(), None, vec![new_msg(2)], None).await.unwrap() else {
        panic!("created")
    };
    let id = a[0].id;
    s.claim("r".into(), 10).await.unwrap();
    let parts = (0..2).map(|i| SubmittedPart { index: i, remote_id: Some(format!("p{i}")) }).collect();
    s.record_submitted(id, "r".into(), parts).await.unwrap();
    let r = |rid: &str, status, code: Option<&str>| Receipt {
        route: "r".into(),
        remote_id: rid.into(),
        status,
        error_code: code.map(str::to_string),
        error_text: None,
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
    s.enqueue("k".into(), None, msgs, None).await.unwrap();
    let got: Vec<i64> = s.claim("r".into(), 3).await.unwrap().iter().map(|m| m.id).collect();
    assert_eq!(got, [3, 2, 1]);
    let got: Vec<i64> = s.claim("r".into(), 3).await.unwrap().iter().map(|m| m.id).collect();
    assert_eq!(got, [4]);
}

#[test]
fn a_daily_quota_counts_the_key_s_messages_since_utc_midnight() {
    let mut c = rusqlite::Connection::open_in_memory().unwrap();
    schema::migrate(&mut c).unwrap();
    let midnight = crate::message::utc_day_start(1_700_000_000_000);
    let enqueue = |key: &str, n: usize, quota, at| messages::enqueue(&c, key, None, &vec![new_msg(1); n], quota, at);
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
    let reply = |from: &str| InboundPart { sender: from.into(), concat: None, ..part(1, "reply") };
    let early = s.record_inbound(reply("+79161234567")).await.unwrap().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    s.enqueue("k".into(), None, vec![new_msg(1)], None).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let later = s.record_inbound(reply("+79161234567")).await.unwrap().unwrap();
    let stranger = s.record_inbound(reply("+79160000009")).await.unwrap().unwrap();
    let ids = |v: Vec<InboundView>| v.iter().map(|m| m.id).collect::<Vec<_>>();
    assert_eq!(ids(s.list_inbound(Some("k".into()), None, 10).await.unwrap()), [later]);
    assert_eq!(ids(s.list_inbound(None, None, 10).await.unwrap()), [stranger, later, early]);
    assert!(s.inbound(early, Some("k".into())).await.unwrap().is_none());
    assert!(s.inbound(stranger, Some("other".into())).await.unwrap().is_none());
    assert!(s.inbound(later, Some("k".into())).await.unwrap().is_some());
}
