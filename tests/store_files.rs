//! The store's files on disk: private to the daemon whatever the umask, and
//! a store that stops taking writes makes the daemon not ready.

mod common;
use common::*;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;

fn plain_sim() -> String {
    "[[routes]]\nname = \"sim\"\nkind = \"sim\"\n".into()
}

#[tokio::test]
async fn the_store_files_are_private_under_umask_022() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "", &plain_sim());
    let d = Daemon::start_after(dir.path(), "umask 022");
    d.send(msg("+79161234567", "a write, so every file exists")).await;
    for suffix in ["", "-wal", "-shm", ".lock"] {
        let path = dir.path().join(format!("smsgw.db{suffix}"));
        let mode = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{} is {:o}", path.display(), mode & 0o777);
    }
}

#[tokio::test]
async fn not_ready_while_the_store_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "", &plain_sim());
    // Files may grow to 2 MB; past that a write fails (EFBIG) rather than
    // killing the process, as on a full disk.
    let d = Daemon::start_after(dir.path(), "trap '' XFSZ\nulimit -f 4096");
    let (s, v) = d.get("/readyz").await;
    assert_eq!(s, 200, "{v}");
    let text = "x".repeat(150);
    let mut refused = None;
    for i in 0..400 {
        let batch: Vec<_> = (0..100).map(|j| json!({"to": format!("+7916{:07}", i * 100 + j), "text": text})).collect();
        let (s, v) = d.post("/v1/messages", &json!({ "messages": batch })).await;
        if s != 202 {
            refused = Some((s, v));
            break;
        }
    }
    let (s, v) = refused.expect("the store never filled up");
    assert_eq!(s, 503, "{v}");
    let (s, v) = d.get("/readyz").await;
    assert_eq!(s, 503, "ready with a store that takes no writes: {v}");
    assert!(v["detail"].as_str().unwrap_or("").contains("not writable"), "{v}");
}
