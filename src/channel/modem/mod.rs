//! The GSM modem route (`kind = "modem"`): a pool of USB modems driven over
//! serial AT commands. The dispatcher hands a message to the route; the
//! pool gives it to a ready, idle modem under its caps (preferring one
//! whose SIM belongs to the recipient's operator), each modem sending one
//! message at a time. A long message whose earlier attempt got some parts
//! out goes on from the next part through the same SIM under the same
//! reference (a phone joins only parts from one sender), or starts over
//! elsewhere when that SIM has left; an auto-reply leaves from the SIM its
//! question came to (`Outbound::via`), or another once that one has been
//! out of service for a while. Modems named by a glob are picked up
//! when they appear; each heals on its own, and one sick modem never stalls
//! the rest.

mod answers;
pub mod at;
pub mod config;
mod ids;
pub mod pin;
pub mod probe;
pub mod profile;
mod run;
mod session;
pub mod state;

use super::{Channel, Device, EventSender, Health, Member, Outbound, RouteState, SubmitError, Submitted};
use config::ModemRoute;
use futures::future::BoxFuture;
use state::{Context, Modem, Phase, SendJob};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;

/// How long a message waits for a modem to be free before it goes back to
/// the queue (without spending one of its attempts).
const WAIT_FOR_MODEM: Duration = Duration::from_secs(30);
/// How long the rest of a long message waits for the SIM that sent its
/// first parts to be in service before it starts over on another.
const WAIT_FOR_SIM: Duration = Duration::from_secs(20);

pub struct Pool {
    ctx: Arc<Context>,
    /// Set when smsgw stops: submits waiting for a free modem give up.
    stopping: CancellationToken,
    modems: Mutex<BTreeMap<String, Arc<Modem>>>,
    /// The SIMs an answer is waiting for (out of service or at a cap): one
    /// at a time, so answers to a capped SIM do not fill the lane's slots.
    awaited: Mutex<std::collections::HashSet<String>>,
}

/// An answer's claim to wait for its SIM; given back when it stops waiting.
struct Awaiting<'a> {
    pool: &'a Pool,
    sim: String,
}

impl<'a> Awaiting<'a> {
    /// The turn to wait for `sim`, unless another answer has it.
    fn take(pool: &'a Pool, sim: &str) -> Option<Awaiting<'a>> {
        let first = pool.awaited.lock().unwrap_or_else(|e| e.into_inner()).insert(sim.to_string());
        first.then(|| Awaiting { pool, sim: sim.to_string() })
    }
}

impl Drop for Awaiting<'_> {
    fn drop(&mut self) {
        self.pool.awaited.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.sim);
    }
}

/// The ports the config names: plain paths, or globs matched now.
fn expand(patterns: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for p in patterns {
        if p.contains(['*', '?', '[']) {
            if let Ok(paths) = glob::glob(p) {
                out.extend(paths.filter_map(Result::ok).map(|p| p.display().to_string()));
            }
        } else {
            out.push(p.clone());
        }
    }
    out.sort();
    out.dedup();
    out
}

impl Pool {
    pub fn new(name: &str, cfg: ModemRoute, events: EventSender) -> std::io::Result<Arc<Pool>> {
        let profiles = profile::load(cfg.profiles_dir.as_deref()).map_err(std::io::Error::other)?;
        let ctx = Arc::new(Context {
            route: name.to_string(),
            cfg,
            profiles,
            events,
            free: Arc::new(Notify::new()),
            sent_before: Mutex::new(Default::default()),
            cancel: CancellationToken::new(),
        });
        let pool = Arc::new(Pool {
            ctx,
            stopping: CancellationToken::new(),
            modems: Mutex::new(BTreeMap::new()),
            awaited: Mutex::new(Default::default()),
        });
        pool.discover();
        // Globs pick up modems plugged in later.
        let (p, stop) = (pool.clone(), pool.ctx.cancel.clone());
        tokio::spawn(crate::supervise::run("modem_discovery", name.to_string(), stop, move || {
            let p = p.clone();
            async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(5)) => p.discover(),
                        _ = p.ctx.cancel.cancelled() => return,
                    }
                }
            }
        }));
        Ok(pool)
    }

    fn discover(&self) {
        let Ok(mut modems) = self.modems.lock() else { return };
        for port in expand(&self.ctx.cfg.ports) {
            if !modems.contains_key(&port) {
                tracing::info!(route = %self.ctx.route, %port, "modem port found");
                modems.insert(port.clone(), run::spawn(port, self.ctx.clone()));
            }
        }
    }

    fn all(&self) -> Vec<Arc<Modem>> {
        self.modems.lock().map(|m| m.values().cloned().collect()).unwrap_or_default()
    }

    /// A free modem for `to`. When the number has preferred SIMs (its
    /// operator's) and one of them is in service, only those: a busy one is
    /// waited for rather than passed over, so the preference holds under
    /// load. Otherwise any free modem, the least used first.
    fn pick(&self, to: &str, parts: usize) -> Option<Arc<Modem>> {
        let cfg = &self.ctx.cfg;
        let all = self.all();
        let preferred: Vec<&str> =
            cfg.prefer.iter().filter(|p| to.starts_with(&p.prefix)).map(|p| p.imsi_prefix.as_str()).collect();
        let imsi = |m: &Arc<Modem>| m.info.lock().ok().and_then(|i| i.imsi.clone()).unwrap_or_default();
        let own: Vec<&Arc<Modem>> = all
            .iter()
            .filter(|m| {
                preferred.iter().any(|p| imsi(m).starts_with(p)) && m.in_service(parts, cfg.per_minute, cfg.per_day)
            })
            .collect();
        let candidates: Vec<&Arc<Modem>> = if own.is_empty() { all.iter().collect() } else { own };
        candidates
            .into_iter()
            .filter(|m| m.can_take(parts, cfg.per_minute, cfg.per_day))
            .min_by_key(|m| m.sent.load(std::sync::atomic::Ordering::Relaxed))
            .cloned()
    }

    /// A free modem with the SIM `sender` (as [`ids::sender_of`] names
    /// it), and whether any modem with that SIM is in service at all (with
    /// `caps`, only one with room under its SIM's caps counts).
    fn pick_sim(&self, sender: &str, parts: usize, caps: bool) -> (Option<Arc<Modem>>, bool) {
        let cfg = &self.ctx.cfg;
        let all = self.all();
        let with_sim: Vec<&Arc<Modem>> = all.iter().filter(|m| m.sender().as_deref() == Some(sender)).collect();
        let in_service = with_sim.iter().any(|m| match caps {
            true => m.in_service(parts, cfg.per_minute, cfg.per_day),
            false => matches!(m.phase().0, Phase::Ready | Phase::Sending),
        });
        let free = with_sim
            .into_iter()
            .filter(|m| m.can_take(parts, cfg.per_minute, cfg.per_day))
            .min_by_key(|m| m.sent.load(std::sync::atomic::Ordering::Relaxed))
            .cloned();
        (free, in_service)
    }

    /// The SIM (as [`ids::sender_of`] names it) of a modem in the pool whose
    /// SIM is `via`: its number as the SIM gave it, or its IMSI.
    fn sim_named(&self, via: &str) -> Option<String> {
        self.all().iter().find_map(|m| {
            let number = m.info.lock().ok().and_then(|i| i.number.clone());
            let sender = m.sender()?;
            (number.as_deref() == Some(via) || sender == via).then_some(sender)
        })
    }

    /// Every modem, for the API.
    pub fn modems(&self) -> Vec<ModemView> {
        self.all().iter().map(|m| self.view(m)).collect()
    }

    fn view(&self, m: &Modem) -> ModemView {
        let (phase, detail) = m.phase();
        let info = m.info.lock().map(|i| i.clone()).unwrap_or_default();
        let cfg = &self.ctx.cfg;
        let at_cap = matches!(phase, Phase::Ready | Phase::Sending) && !m.in_service(1, cfg.per_minute, cfg.per_day);
        ModemView {
            route: self.ctx.route.clone(),
            state: phase,
            detail: detail.or_else(|| at_cap.then(|| "at the SIM's SMS cap".to_string())),
            at_cap,
            sent: m.sent.load(std::sync::atomic::Ordering::Relaxed),
            failed: m.failed.load(std::sync::atomic::Ordering::Relaxed),
            received: m.received.load(std::sync::atomic::Ordering::Relaxed),
            info,
        }
    }
}

/// A modem as `GET /v1/modems` shows it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ModemView {
    pub route: String,
    pub state: Phase,
    pub detail: Option<String>,
    /// Ready, but its SIM has used up its `per_minute` or `per_day` SMS.
    pub at_cap: bool,
    /// SMS sent (a long message counts each part, as SIM plans do).
    pub sent: u64,
    /// Messages a send failed for.
    pub failed: u64,
    /// SMS received (each part of a long message).
    pub received: u64,
    #[serde(flatten)]
    pub info: state::Info,
}

impl Channel for Pool {
    fn kind(&self) -> &'static str {
        "modem"
    }

    fn submit(&self, msg: Outbound) -> BoxFuture<'_, Result<Submitted, SubmitError>> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + WAIT_FOR_MODEM;
            let parts = msg.plan.parts.len();
            let (reply, answer) = oneshot::channel();
            // Parts an earlier attempt got out: the rest go through the same
            // SIM, under the same reference.
            let resume = &msg.resume;
            let mut sim = resume
                .remote_ids
                .first()
                .and_then(|id| id.as_deref())
                .filter(|_| resume.concat_ref.is_some())
                .map(|id| ids::sender_of(id).to_string());
            let mut job = SendJob {
                message: msg.id,
                to: msg.to.clone(),
                plan: msg.plan.clone(),
                valid_until: msg.valid_until,
                first_part: if sim.is_some() { resume.remote_ids.len() } else { 0 },
                concat_ref: resume.concat_ref.and_then(|r| u8::try_from(r).ok()).filter(|_| sim.is_some()),
                reply,
            };
            // An answer leaves from the SIM its question came to, while that
            // SIM is in the pool.
            let pinned = sim.is_none() && msg.via.is_some();
            if pinned {
                sim = msg.via.as_deref().and_then(|v| self.sim_named(v));
            }
            let sim_deadline = tokio::time::Instant::now() + WAIT_FOR_SIM;
            let mut awaiting: Option<Awaiting<'_>> = None;
            loop {
                // Registered before the look, so a modem freed between the
                // look and the wait still wakes this submit.
                let free = self.ctx.free.notified();
                tokio::pin!(free);
                free.as_mut().enable();
                let picked = match &sim {
                    Some(s) => {
                        // The rest of a long message waits for its SIM's
                        // caps; an answer goes through another meanwhile.
                        let (m, in_service) = self.pick_sim(s, parts, pinned);
                        // One answer at a time waits for a SIM that cannot
                        // send now; the others go through another at once.
                        if pinned && !in_service && awaiting.is_none() {
                            awaiting = Awaiting::take(self, s);
                        }
                        let waits = in_service || !pinned || awaiting.is_some();
                        if !in_service && (!waits || tokio::time::Instant::now() >= sim_deadline) {
                            // The SIM has left: a phone joins only parts from
                            // one sender, so every part again, under a new
                            // reference.
                            let what = match (pinned, waits) {
                                (true, true) => {
                                    "the SIM this message should leave from is not in service; sending through another"
                                }
                                (true, false) => {
                                    "the SIM this message should leave from cannot send now and another answer waits \
                                     for it; sending through another"
                                }
                                (false, _) => {
                                    "the SIM that sent the first parts is not in service; sending every part again"
                                }
                            };
                            tracing::info!(route = %self.ctx.route, message = msg.id, sim = %s, "{what}");
                            sim = None;
                            awaiting = None;
                            (job.first_part, job.concat_ref) = (0, None);
                            continue;
                        }
                        m
                    }
                    None => self.pick(&msg.to, parts),
                };
                if let Some(m) = picked {
                    match m.try_send(job) {
                        Ok(()) => {
                            // Sending now: the next answer may wait for this SIM.
                            drop(awaiting.take());
                            // Dropped unanswered: the modem's task ended
                            // (it panicked and is being restarted) while it
                            // held the job. Back to the queue, no attempt spent.
                            return answer.await.map_err(|_| {
                                SubmitError::untried("modem_restarted", "the modem's driver stopped before it answered")
                            })?;
                        }
                        Err(back) => job = back,
                    }
                }
                let sim_wait = async {
                    match &sim {
                        Some(_) if tokio::time::Instant::now() < sim_deadline => {
                            tokio::time::sleep_until(sim_deadline).await
                        }
                        _ => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = sim_wait => {}
                    woken = tokio::time::timeout_at(deadline, &mut free) => if woken.is_err() {
                        let why = format!("no modem was ready within {} s", WAIT_FOR_MODEM.as_secs());
                        return Err(SubmitError::untried("no_modem", why));
                    },
                    _ = self.stopping.cancelled() => {
                        let why = "smsgw stopped while this message waited for a modem";
                        return Err(SubmitError::untried("stopped", why));
                    }
                }
            }
        })
    }

    fn health(&self) -> Health {
        let modems = self.modems();
        let ready = modems.iter().filter(|m| matches!(m.state, Phase::Ready | Phase::Sending)).count();
        // A modem whose SIM has used up its per-minute or per-day SMS takes
        // nothing until the window moves: with every one of them there, the
        // route is down (the dispatcher leaves its queue alone, or fails it
        // over), not up and refusing.
        let capped = modems.iter().filter(|m| m.at_cap).count();
        let state = match ready - capped {
            0 => RouteState::Down,
            n if n < modems.len() => RouteState::Degraded,
            _ => RouteState::Up,
        };
        let detail = match capped {
            0 => format!("{ready}/{} modems ready", modems.len()),
            n => format!("{ready}/{} modems ready, {n} at the SIM's SMS cap", modems.len()),
        };
        let members = modems
            .iter()
            .map(|m| Member {
                name: m.info.port.rsplit('/').next().unwrap_or(&m.info.port).to_string(),
                state: if matches!(m.state, Phase::Ready | Phase::Sending) { RouteState::Up } else { RouteState::Down },
                detail: m.detail.clone().or_else(|| m.info.operator.clone()),
                in_flight: usize::from(m.state == Phase::Sending),
                capacity: 1,
                // One at a time: the driver waits for each commit.
                inbound_waiting: 0,
                signal_dbm: m.info.signal_dbm,
            })
            .collect();
        Health { state, detail: Some(detail), members }
    }

    fn devices(&self) -> Vec<Device> {
        self.modems().iter().map(device).collect()
    }

    fn restore_sent(&self, sent: Vec<(String, crate::message::Millis)>) {
        let Ok(mut before) = self.ctx.sent_before.lock() else { return };
        for (remote_id, at) in sent {
            before.entry(ids::sender_of(&remote_id).to_string()).or_default().push(at);
        }
        // A modem that identified itself before this arrived takes its share now.
        for m in self.all() {
            let imsi = m.info.lock().ok().and_then(|i| i.imsi.clone());
            if let Some(sent) = imsi.and_then(|i| before.remove(&i)) {
                m.restore_window(&sent);
            }
        }
    }

    fn stopping(&self) {
        self.stopping.cancel();
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.stopping.cancel();
            self.ctx.cancel.cancel();
            // Give a modem in the middle of a send a moment to finish.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while self.all().iter().any(|m| m.phase().0 == Phase::Sending) && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    }
}

/// A modem as a member's [`Device`]: its view for `GET /v1/modems` and what
/// its gauges read.
fn device(m: &ModemView) -> Device {
    Device {
        view: serde_json::value::to_raw_value(m).expect("a modem's view is plain data and always serializes"),
        port: m.info.port.clone(),
        ready: matches!(m.state, Phase::Ready | Phase::Sending),
        states: Phase::ALL.iter().map(|&p| (p.as_str(), p == m.state)).collect(),
        signal_dbm: m.info.signal_dbm,
        registration: m.info.registration,
        sent: m.sent,
        failed: m.failed,
        received: m.received,
    }
}
