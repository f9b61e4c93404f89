//! The SMPP carrier route (`kind = "smpp"`): one or more binds to a
//! carrier's SMSC, all used. A message's parts become submit_sm PDUs that
//! any bound session with room in its window takes; the carrier's rate is
//! shared by all binds; throttling answers slow the route down and resend,
//! never fail. Receipts and inbound messages come back as events.

pub mod config;
pub mod pdus;
pub mod receipt;
mod session;
pub mod status;

use super::{Channel, EventSender, Health, Member, Outbound, RouteState, SubmitError, Submitted};
use config::{BindMode, SmppRoute};
use futures::future::BoxFuture;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use session::{BindContext, BindKind, BindState, PartResult, SubmitJob};
use std::num::NonZeroU32;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Throttled submits wait at most this long in all before the message goes
/// back to the queue (as a temporary failure, retried later).
const MAX_THROTTLE_WAIT: Duration = Duration::from_secs(60);
const THROTTLE_START: Duration = Duration::from_millis(100);
const THROTTLE_MAX: Duration = Duration::from_secs(5);

pub struct Smpp {
    cfg: SmppRoute,
    jobs: async_channel::Sender<SubmitJob>,
    sessions: Vec<Arc<BindState>>,
    limiter: Option<DefaultDirectRateLimiter>,
    /// While set, nobody submits: the carrier asked us to slow down.
    throttle: Mutex<(Option<Instant>, Duration)>,
    cancel: CancellationToken,
    tasks: tokio_util::task::TaskTracker,
}

impl Smpp {
    pub fn new(name: &str, cfg: SmppRoute, events: EventSender) -> std::io::Result<Arc<Smpp>> {
        let (jobs, jobs_rx) = async_channel::bounded(cfg.window * cfg.binds);
        let cancel = CancellationToken::new();
        let tls = if cfg.tls { Some(tls_connector(&cfg)?) } else { None };
        let shared = Arc::new(BindContext {
            route: name.to_string(),
            cfg: cfg.clone(),
            events,
            jobs: jobs_rx,
            cancel: cancel.clone(),
            tls,
        });
        let kinds: &[BindKind] = match cfg.bind_mode {
            BindMode::Transceiver => &[BindKind::Transceiver],
            BindMode::TransmitterReceiver => &[BindKind::Transmitter, BindKind::Receiver],
        };
        let tasks = tokio_util::task::TaskTracker::new();
        let mut sessions = Vec::new();
        for i in 0..cfg.binds {
            for m in kinds {
                let st = Arc::new(BindState::new(*m, i));
                sessions.push(st.clone());
                let (shared, st2) = (shared.clone(), st.clone());
                tasks.spawn(crate::supervise::run("smpp", name.to_string(), cancel.clone(), move || {
                    session::run(shared.clone(), st2.clone())
                }));
            }
        }
        tasks.close();
        let limiter = cfg.max_submits_per_sec.map(|r| {
            let period = Duration::from_secs_f64(1.0 / r).max(Duration::from_nanos(1));
            RateLimiter::direct(
                Quota::with_period(period).expect("period is at least 1 ns").allow_burst(NonZeroU32::MIN),
            )
        });
        Ok(Arc::new(Smpp { cfg, jobs, sessions, limiter, throttle: Mutex::new((None, THROTTLE_START)), cancel, tasks }))
    }

    fn throttled_until(&self) -> Option<Instant> {
        self.throttle.lock().ok().and_then(|t| t.0).filter(|t| *t > Instant::now())
    }

    /// The carrier said "too fast": pause all submits, longer each time.
    fn slow_down(&self) -> Duration {
        let Ok(mut t) = self.throttle.lock() else { return THROTTLE_START };
        let pause = t.1;
        t.0 = Some(Instant::now() + pause);
        t.1 = (pause * 2).min(THROTTLE_MAX);
        pause
    }

    fn speed_up(&self) {
        if let Ok(mut t) = self.throttle.lock() {
            t.1 = THROTTLE_START;
        }
    }

    async fn submit_part(&self, pdu: rusmpp::pdus::SubmitSm) -> Result<String, SubmitError> {
        let mut throttled_for = Duration::ZERO;
        loop {
            if let Some(until) = self.throttled_until() {
                tokio::time::sleep_until(until).await;
            }
            if let Some(l) = &self.limiter {
                l.until_ready().await;
            }
            let (tx, rx) = oneshot::channel();
            // A bind must take the part within one response timeout, and
            // answer within another.
            let wait = Duration::from_secs(self.cfg.response_timeout_secs) * 2;
            let job = SubmitJob { pdu: pdu.clone(), reply: tx };
            let answer = tokio::time::timeout(wait, async {
                self.jobs.send(job).await.map_err(|_| Gone::Route)?;
                rx.await.map_err(|_| Gone::Bind)
            })
            .await;
            match answer {
                Ok(Ok(PartResult::Accepted(id))) => {
                    self.speed_up();
                    return Ok(receipt::canonical_resp_id(&id));
                }
                Ok(Ok(PartResult::Refused(st))) => match status::class(st) {
                    status::Class::Throttle => {
                        let pause = self.slow_down();
                        throttled_for += pause;
                        tracing::debug!(
                            code = status::name(st),
                            pause_ms = pause.as_millis() as u64,
                            "carrier throttles; slowing down"
                        );
                        // The carrier keeps asking us to wait: the part never went in.
                        if throttled_for > MAX_THROTTLE_WAIT {
                            return Err(SubmitError::untried(
                                &status::code(st),
                                format!("{} for over a minute", status::name(st)),
                            ));
                        }
                    }
                    status::Class::Temporary => {
                        return Err(SubmitError::temporary(
                            &status::code(st),
                            format!("carrier refused: {}", status::name(st)),
                        ));
                    }
                    status::Class::Permanent => {
                        return Err(SubmitError::permanent(
                            &status::code(st),
                            format!("carrier refused: {}", status::name(st)),
                        ));
                    }
                },
                Ok(Ok(PartResult::Lost(why))) => return Err(SubmitError::temporary("smpp_no_answer", why)),
                Ok(Ok(PartResult::Protocol(why))) => return Err(SubmitError::temporary("smpp_protocol_error", why)),
                // The bind's task took the part and ended without a word
                // (it panicked and is being restarted): the part goes back
                // to the queue without spending an attempt.
                Ok(Err(Gone::Bind)) => {
                    return Err(SubmitError::untried("smpp_bind_restarted", "the bind stopped before it answered"));
                }
                Ok(Err(Gone::Route)) => return Err(SubmitError::untried("smpp_stopped", "the route is stopping")),
                Err(_) => {
                    return Err(SubmitError::temporary(
                        "smpp_no_bind",
                        format!("no bind took and answered the part within {} s", wait.as_secs()),
                    ));
                }
            }
        }
    }
}

/// Why a part got no answer from a bind at all.
enum Gone {
    /// The route closed its queue: smsgw is stopping.
    Route,
    /// A bind took the part and dropped it unanswered.
    Bind,
}

/// TLS client settings: the configured CA file, else the system's roots.
fn tls_connector(cfg: &SmppRoute) -> std::io::Result<tokio_rustls::TlsConnector> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    match &cfg.tls_ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?;
            for cert in certs {
                let cert = cert.map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?;
                roots.add(cert).map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

impl Channel for Smpp {
    fn kind(&self) -> &'static str {
        "smpp"
    }

    fn submit(&self, msg: Outbound) -> BoxFuture<'_, Result<Submitted, SubmitError>> {
        Box::pin(async move {
            // The parts' reference comes from the message (or the one its
            // earlier parts carried), and a retry resumes after the parts
            // the carrier already took: the phone joins both tries' parts
            // instead of showing a stray or doubled one.
            let reference = msg.resume.concat_ref.unwrap_or(msg.id as u16);
            let pdus = pdus::submits(&msg, &self.cfg, reference)
                .map_err(|e| SubmitError::permanent("smpp_encoding", e.to_string()))?;
            // Parts taken before, unless they no longer fit (the long-message
            // mode changed): then all again.
            let first_part = if msg.resume.remote_ids.len() < pdus.len() { msg.resume.remote_ids.len() } else { 0 };
            let long = pdus.len() > 1;
            let mut sent = Submitted { first_part, remote_ids: Vec::new(), concat_ref: long.then_some(reference) };
            for pdu in pdus.into_iter().skip(first_part) {
                match self.submit_part(pdu).await {
                    Ok(id) => sent.remote_ids.push(Some(id)),
                    Err(e) => return Err(e.after(sent)),
                }
            }
            Ok(sent)
        })
    }

    fn health(&self) -> Health {
        let members: Vec<Member> = self
            .sessions
            .iter()
            .map(|s| {
                let bound = s.bound.load(Ordering::Relaxed);
                Member {
                    name: format!("{} #{}", s.kind.name(), s.index),
                    state: if bound { RouteState::Up } else { RouteState::Down },
                    detail: if bound { None } else { s.last_error.lock().ok().and_then(|e| e.clone()) },
                    in_flight: s.in_window.load(Ordering::Relaxed),
                    capacity: if s.kind.submits() { self.cfg.window } else { 0 },
                    inbound_waiting: s.inbound_waiting.load(Ordering::Relaxed),
                    signal_dbm: None,
                }
            })
            .collect();
        let sending = self.sessions.iter().filter(|s| s.kind.submits()).collect::<Vec<_>>();
        let up = sending.iter().filter(|s| s.bound.load(Ordering::Relaxed)).count();
        let state = if up == 0 {
            RouteState::Down
        } else if up < sending.len() || members.iter().any(|m| m.state == RouteState::Down) {
            RouteState::Degraded
        } else {
            RouteState::Up
        };
        let mut detail = format!("{up}/{} transmitting binds up", sending.len());
        if self.throttled_until().is_some() {
            detail.push_str("; carrier is throttling");
        }
        Health { state, detail: Some(detail), members }
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.cancel.cancel();
            self.jobs.close();
            self.tasks.wait().await;
        })
    }
}
