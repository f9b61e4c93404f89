//! One modem's life: open its port, start an AT session, serve the pool's
//! send jobs, URCs, health checks and sweeps one at a time, and heal:
//! reopen a port that stopped answering (resetting it if the profile says
//! that is safe) and wait for an unplugged one to come back.

use super::at::{AtError, AtPort, UrcReceiver};
use super::profile;
use super::session::AtSession;
use super::state::{Context, Modem, Phase, SendJob};
use crate::channel::SubmitError;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::mpsc;

/// Start driving the modem on `port`. The driver runs supervised: after a
/// panic it starts again on the same [`Modem`] and the same job queue, so
/// the pool keeps its handle and nothing queued for it is lost.
pub fn spawn(port: String, ctx: Arc<Context>) -> Arc<Modem> {
    let (tx, rx) = mpsc::channel(1);
    let modem = Arc::new(Modem::new(&port, tx));
    let jobs = Arc::new(tokio::sync::Mutex::new(rx));
    let (m, stop, route) = (modem.clone(), ctx.cancel.clone(), ctx.route.clone());
    tokio::spawn(crate::supervise::run("modem", route, stop, move || {
        run(port.clone(), ctx.clone(), m.clone(), jobs.clone())
    }));
    modem
}

/// Why a session with the modem ended.
enum End {
    Stopped,
    /// Reopen after this pause.
    Retry(Duration),
}

async fn run(
    port: String,
    ctx: Arc<Context>,
    modem: Arc<Modem>,
    jobs: Arc<tokio::sync::Mutex<mpsc::Receiver<SendJob>>>,
) {
    let mut jobs = jobs.lock().await;
    // A run after a panic: the job the last one held was answered when it
    // was dropped, so the modem is free again.
    modem.busy.store(false, Ordering::Relaxed);
    loop {
        let end = tokio::select! {
            end = session(&port, &ctx, &modem, &mut jobs) => end,
            _ = ctx.cancel.cancelled() => End::Stopped,
        };
        modem.busy.store(false, Ordering::Relaxed);
        match end {
            End::Stopped => return,
            End::Retry(pause) => {
                // Jobs that arrive while the modem is down go back at once.
                let deadline = tokio::time::Instant::now() + pause;
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep_until(deadline) => break,
                        _ = ctx.cancel.cancelled() => return,
                        Some(job) = jobs.recv() => {
                            let _ = job.reply.send(Err(SubmitError::untried("modem_down", "the modem is not ready")));
                            modem.busy.store(false, Ordering::Relaxed);
                        }
                    }
                }
            }
        }
    }
}

async fn session(port: &str, ctx: &Arc<Context>, modem: &Arc<Modem>, jobs: &mut mpsc::Receiver<SendJob>) -> End {
    let own = port.rsplit('/').next().unwrap_or(port).to_string();
    modem.set(Phase::Starting, None);
    let (at, mut urcs): (AtPort, UrcReceiver) = match AtPort::open(port, ctx.cfg.baud).await {
        Ok(p) => p,
        Err(e) => {
            let gone = !std::path::Path::new(port).exists();
            modem.set(if gone { Phase::Gone } else { Phase::Unresponsive }, Some(e.to_string()));
            return End::Retry(Duration::from_secs(if gone { 2 } else { 5 }));
        }
    };
    let profile = profile::choose(&ctx.profiles, "", "").clone();
    let mut s = AtSession { at, ctx, modem, profile, own: own.clone(), memories: Vec::new() };
    if let Err((phase, why)) = s.start().await {
        tracing::warn!(route = %ctx.route, modem = %own, %why, "modem not ready");
        modem.set(phase, Some(why));
        if phase == Phase::Unresponsive && !s.profile.reset.is_empty() {
            tracing::warn!(route = %ctx.route, modem = %own, "resetting the modem");
            let _ = s.at.command(&s.profile.reset, Duration::from_secs(5)).await;
        }
        // A PIN or a SIM missing will not fix itself quickly.
        let pause = if matches!(phase, Phase::PinNeeded | Phase::NoSim) { ctx.cfg.retry_secs } else { 5 };
        return End::Retry(Duration::from_secs(pause));
    }
    modem.set(Phase::Ready, None);
    ctx.free.notify_waiters();
    tracing::info!(route = %ctx.route, modem = %own, profile = %s.profile.name, "modem ready");
    if let Err(e) = s.sweep().await {
        tracing::warn!(modem = %own, error = %e, "cannot list stored messages");
    }
    let mut health = tokio::time::interval(Duration::from_secs(ctx.cfg.health_interval_secs));
    health.reset();
    let mut sweep = tokio::time::interval(Duration::from_secs(300));
    sweep.reset();
    let mut failures = 0u32;
    loop {
        let mut hung = false;
        let result = tokio::select! {
            job = jobs.recv() => {
                let Some(job) = job else { return End::Stopped };
                crate::supervise::fault_point("modem", port);
                modem.set(Phase::Sending, None);
                let r = s.send(&job).await;
                // Counted in SMS, as SIM plans count them (a long message is
                // several, and the parts sent before a failed one count too).
                let parts = match &r {
                    Ok(sent) => sent.remote_ids.len(),
                    Err(e) => {
                        modem.failed.fetch_add(1, Ordering::Relaxed);
                        e.accepted.remote_ids.len()
                    }
                };
                modem.sent.fetch_add(parts as u64, Ordering::Relaxed);
                if let Ok(mut w) = modem.window.lock() {
                    let now = std::time::Instant::now();
                    w.extend(std::iter::repeat_n(now, parts));
                }
                let gone = r.as_ref().err().is_some_and(|e| e.code == "modem_gone");
                let stuck = r.as_ref().err().is_some_and(|e| e.code == "modem_timeout");
                let _ = job.reply.send(r);
                modem.set(Phase::Ready, None);
                modem.busy.store(false, Ordering::Relaxed);
                ctx.free.notify_waiters();
                if gone {
                    Err(AtError::Gone("the port went away during a send".into()))
                } else if stuck {
                    // A send that never ended: if the modem does not answer a
                    // plain AT either, it has hung; reopen it now rather than
                    // hand it the next message.
                    match s.at.command("AT", Duration::from_secs(3)).await {
                        Ok(_) => Ok(()),
                        Err(AtError::Gone(why)) => Err(AtError::Gone(why)),
                        Err(_) => {
                            hung = true;
                            Err(AtError::Timeout { cmd: "AT+CMGS".into(), secs: ctx.cfg.send_timeout_secs as f64 })
                        }
                    }
                } else {
                    Ok(())
                }
            }
            u = urcs.0.recv() => match u {
                Some(u) => s.urc(u).await,
                None => Err(AtError::Gone("the port closed".into())),
            },
            _ = health.tick() => s.health().await,
            _ = sweep.tick() => s.sweep().await,
            _ = ctx.cancel.cancelled() => return End::Stopped,
        };
        match result {
            Ok(()) => failures = 0,
            Err(AtError::Gone(why)) => {
                tracing::warn!(route = %ctx.route, modem = %own, %why, "modem gone; waiting for it to come back");
                modem.set(Phase::Gone, Some(why));
                return End::Retry(Duration::from_secs(2));
            }
            Err(e @ AtError::Timeout { .. }) => {
                failures += 1;
                if failures >= 3 || hung {
                    tracing::warn!(route = %ctx.route, modem = %own, error = %e, "modem stopped answering; reopening");
                    modem.set(Phase::Unresponsive, Some(e.to_string()));
                    if !s.profile.reset.is_empty() {
                        let _ = s.at.command(&s.profile.reset, Duration::from_secs(5)).await;
                    }
                    return End::Retry(Duration::from_secs(2));
                }
            }
            Err(e) => tracing::debug!(modem = %own, error = %e, "modem command failed"),
        }
    }
}
