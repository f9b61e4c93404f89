//! `smsgw modem probe`: a read-only look at a modem.

use super::answers::{cnum_number, smsc_number};
use super::at::{AtError, AtPort};
use super::config::ModemRoute;
use super::profile::{self, Profile};
use super::session::AtSession;
use super::state::{Context, Info, Modem};
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

/// What `smsgw modem probe` prints: a read-only look at a modem.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Probe {
    pub info: Info,
    pub revision: Option<String>,
    pub sim: Option<String>,
    pub registration: Option<u8>,
}

/// Why a probe could not look at the modem.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The port would not open.
    #[error("{0}")]
    Open(AtError),
    /// The modem answered neither of two plain ATs.
    #[error("{port} does not answer AT: {error}")]
    NoAnswer { port: String, error: AtError },
}

/// Identify the modem on `port`, read its SIM state and signal, and choose
/// its profile, changing nothing on it (only ATE0 to read answers cleanly).
pub async fn probe(port: &str, baud: u32, profiles: &[Profile]) -> Result<Probe, ProbeError> {
    let (at, _urcs) = AtPort::open(port, baud).await.map_err(ProbeError::Open)?;
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let ctx = Context {
        route: "probe".into(),
        cfg: ModemRoute {
            ports: vec![port.to_string()],
            baud,
            pin: None,
            profiles_dir: None,
            per_minute: None,
            per_day: None,
            prefer: Vec::new(),
            status_reports: false,
            health_interval_secs: 30,
            registration_timeout_secs: 1,
            send_timeout_secs: 60,
            retry_secs: 60,
        },
        profiles: profiles.to_vec(),
        events: tx,
        free: Arc::new(Notify::new()),
        sent_before: Mutex::new(Default::default()),
        cancel: CancellationToken::new(),
    };
    let modem = spawn_idle(port);
    let mut s = AtSession {
        at,
        ctx: &ctx,
        modem: &modem,
        profile: profile::choose(profiles, "", "").clone(),
        own: port.into(),
        memories: Vec::new(),
    };
    if s.at.command("AT", Duration::from_secs(3)).await.is_err() {
        s.at.command("AT", Duration::from_secs(3))
            .await
            .map_err(|error| ProbeError::NoAnswer { port: port.to_string(), error })?;
    }
    let _ = s.cmd("ATE0").await;
    let manufacturer = s.value("AT+CGMI", "+CGMI").await.unwrap_or_default();
    let model = s.value("AT+CGMM", "+CGMM").await.unwrap_or_default();
    s.profile = profile::choose(profiles, &manufacturer, &model).clone();
    let mut p = Probe {
        revision: s.value("AT+CGMR", "+CGMR").await,
        sim: s.value("AT+CPIN?", "+CPIN").await,
        registration: s.registration().await,
        ..Probe::default()
    };
    let _ = s.health().await;
    let mut info = modem.info.lock().map(|i| i.clone()).unwrap_or_default();
    info.port = port.to_string();
    info.manufacturer = Some(manufacturer);
    info.model = Some(model);
    info.profile = Some(s.profile.name.clone());
    info.imei = s.value("AT+CGSN", "+CGSN").await;
    info.imsi = s.value("AT+CIMI", "+CIMI").await;
    info.iccid = s.value("AT+CCID", "+CCID").await;
    info.number = s.cmd("AT+CNUM").await.ok().and_then(|r| r.value("+CNUM").and_then(cnum_number));
    info.smsc = s.value("AT+CSCA?", "+CSCA").await.and_then(|v| smsc_number(&v));
    p.info = info;
    Ok(p)
}

fn spawn_idle(port: &str) -> Modem {
    Modem::new(port, mpsc::channel(1).0)
}
