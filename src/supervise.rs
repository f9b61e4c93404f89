//! Long-lived tasks that come back after a panic. A bind, a modem, a
//! dispatcher lane or the event recorder runs under [`run`]: a panic is
//! caught, logged at error level with its message, counted in
//! `smsgw_task_restarts_total{task, route}`, and the task is started again
//! after a pause that doubles with each panic in a row (capped at 30 s,
//! back to the start once it has run well for a minute). A task that
//! returns normally is not restarted. What a restarted task needs from its
//! previous life (a modem's state, a job queue's receiver) is owned outside
//! the future it makes, so a restart starts from the same inputs.
//!
//! Also the one fault-injection hook the end-to-end tests use to prove the
//! above ([`fault_point`]): inert unless `SMSGW_FAULT_PANIC` is set.

use futures::FutureExt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const FIRST_PAUSE: Duration = Duration::from_millis(500);
const MAX_PAUSE: Duration = Duration::from_secs(30);
/// A task that ran this long before panicking starts again after the first
/// pause: its earlier panics are old news.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

/// The pause before the next start, given the last one and how long the
/// task ran before it panicked.
fn next_pause(last: Option<Duration>, ran: Duration) -> Duration {
    match last {
        Some(p) if ran < HEALTHY_AFTER => (p * 2).min(MAX_PAUSE),
        _ => FIRST_PAUSE,
    }
}

/// The text a panic carried (`panic!("...")` gives a `&str` or a `String`).
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// Run the future `make` builds until it returns, building and running a
/// new one after each panic. `task` and `route` label the log line and the
/// restart counter; `stop` ends the pause before a restart (smsgw is
/// stopping or the route was removed), so nothing waits on a task that
/// will not come back.
pub async fn run<F, Fut>(task: &'static str, route: String, stop: CancellationToken, mut make: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut pause = None;
    loop {
        let started = Instant::now();
        let Err(payload) = AssertUnwindSafe(make()).catch_unwind().await else { return };
        let why = panic_text(payload.as_ref());
        let wait = next_pause(pause, started.elapsed());
        pause = Some(wait);
        tracing::error!(task, route = %route, panic = %why, restart_in_ms = wait.as_millis() as u64, "task panicked; restarting it");
        metrics::counter!(crate::metrics::TASK_RESTARTS, "task" => task, "route" => route.clone()).increment(1);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// A test hook: `SMSGW_FAULT_PANIC=<task>:<name-substring>:<n>` (e.g.
/// `modem:modem1:1`, `smpp:carrier:3`, `lane:carrier:1`) makes the first task of that kind
/// whose name contains the substring panic when it passes its n-th fault
/// point, once per process. Without the variable this is a load and a
/// compare. Tasks call it where they take a job, so a panic there also
/// shows that the job in hand is answered.
pub fn fault_point(task: &str, name: &str) {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    struct Fault {
        task: String,
        name: String,
        nth: u64,
        seen: AtomicU64,
        fired: AtomicBool,
    }
    static FAULT: OnceLock<Option<Fault>> = OnceLock::new();
    let fault = FAULT.get_or_init(|| {
        let spec = std::env::var("SMSGW_FAULT_PANIC").ok()?;
        let mut it = spec.splitn(3, ':');
        let (task, name, nth) = (it.next()?, it.next()?, it.next()?.parse().ok()?);
        Some(Fault {
            task: task.into(),
            name: name.into(),
            nth,
            seen: AtomicU64::new(0),
            fired: AtomicBool::new(false),
        })
    });
    let Some(f) = fault else { return };
    if f.task != task || !name.contains(&f.name) || f.fired.load(Ordering::Relaxed) {
        return;
    }
    if f.seen.fetch_add(1, Ordering::Relaxed) + 1 == f.nth && !f.fired.swap(true, Ordering::Relaxed) {
        panic!("fault injected by SMSGW_FAULT_PANIC in {task} {name}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn pauses_double_up_to_the_cap_and_reset_after_health() {
        let quick = Duration::from_secs(1);
        let mut p = next_pause(None, quick);
        assert_eq!(p, FIRST_PAUSE);
        for _ in 0..20 {
            p = next_pause(Some(p), quick);
        }
        assert_eq!(p, MAX_PAUSE);
        assert_eq!(next_pause(Some(p), HEALTHY_AFTER), FIRST_PAUSE);
    }

    #[tokio::test]
    async fn a_panicking_task_is_started_again_and_a_finished_one_is_not() {
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        run("test", "r".into(), CancellationToken::new(), move || {
            let r = r.clone();
            async move {
                if r.fetch_add(1, Ordering::SeqCst) < 1 {
                    panic!("boom");
                }
            }
        })
        .await;
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn stopping_ends_the_pause_before_a_restart() {
        let stop = CancellationToken::new();
        stop.cancel();
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        run("test", "r".into(), stop, move || {
            r.fetch_add(1, Ordering::SeqCst);
            async { panic!("boom") }
        })
        .await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn panic_messages_are_read_from_either_form() {
        assert_eq!(panic_text(&"x"), "x");
        assert_eq!(panic_text(&String::from("y")), "y");
        assert_eq!(panic_text(&1u8), "a panic without a message");
    }
}
