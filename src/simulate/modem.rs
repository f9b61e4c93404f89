//! A virtual GSM modem on a pseudo-terminal: a peer on the far side of a real wire.
//!
//! [`VirtualModem::start`] opens a pty pair, serves AT commands (3GPP TS 27.005 / 27.007, PDU mode
//! and a text mode) on the master side and points a symlink (like `/dev/smsgw/<serial>-if02`) at
//! the slave, so the gateway opens it exactly as it opens `/dev/ttyUSB2`: with tokio-serial,
//! exclusively, in raw mode. The modem answers the way real ones do, "\r\n"-framed, with echo,
//! `> ` prompts, URCs between and (with [`Quirks::huawei_urcs`]) inside answers, and can reproduce
//! the behaviours of `tests/data/modem/modem-quirks.jsonl` through [`Quirks`].
//!
//! The far side is driven from the test (or the `smsgw simulate modem` command): messages arrive
//! from the network ([`VirtualModem::deliver`]), status reports come back
//! ([`VirtualModem::status_report`], [`VirtualModem::set_auto_reports`]), sends fail on demand,
//! the modem hangs, or is unplugged and plugged in again under the same name. What the gateway did
//! is recorded: every command line ([`VirtualModem::commands`]), every SMS-SUBMIT decoded
//! ([`VirtualModem::sent`]) and what is left in SIM storage ([`VirtualModem::stored`]).
//!
//! Like a real device, the modem loses what it prints while no one has the port open (output is
//! dropped, not queued for the next opener), keeps SIM storage, the PIN retry counter and the SMSC
//! across power cycles, and forgets everything else (echo, CMEE, CNMI, CPMS, PIN entry).

mod commands;
pub mod control;
mod engine;
pub mod pdu;
mod pty;
mod state;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

pub use crate::sms::pdu::{Concat, DataEncoding};
use state::Engine;

/// How the virtual modem presents itself and behaves. Every field has a default (a SIMCom SIM800L
/// on an MTS SIM with no PIN), so a TOML or JSON table needs only what differs.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModemConfig {
    /// AT+CGMI answer.
    pub manufacturer: String,
    /// AT+CGMM answer.
    pub model: String,
    /// AT+CGMR answer.
    pub revision: String,
    /// AT+CGSN answer.
    pub imei: String,
    /// AT+CIMI answer.
    pub imsi: String,
    /// AT+CCID / AT+QCCID / AT^ICCID? answer.
    pub iccid: String,
    /// AT+CNUM answer; `None`: AT+CNUM answers a bare OK, as most SIMs do.
    pub own_number: Option<String>,
    /// SIM PIN required after every power-up until AT+CPIN="<pin>"; a wrong PIN gives
    /// +CME ERROR: 16, three wrong in a row lock the SIM (+CPIN: SIM PUK) until
    /// AT+CPIN="<puk>","<new pin>".
    pub pin: Option<String>,
    /// The PUK that unlocks a SIM locked by three wrong PINs.
    pub puk: String,
    /// SMSC address: AT+CSCA? answer and the SMSC part of the PDUs handed out.
    pub smsc: String,
    /// AT+COPS? operator name.
    pub operator: String,
    /// AT+CSQ rssi (0-31, 99 unknown).
    pub csq: u8,
    /// +CREG? shows stat 2 (searching) this long after power-up (or PIN entry, or AT+CFUN=1),
    /// then 1 (home; 5 with [`Quirks::roaming`]).
    pub registration_delay_ms: u64,
    /// Echo state after power-up and ATZ (real modems start with echo on).
    pub echo: bool,
    /// Capacity of "SM" (SIM) storage.
    pub sim_capacity: u32,
    /// Capacity of "ME" (and "SR") storage.
    pub me_capacity: u32,
    /// Time between the Ctrl-Z ending an AT+CMGS and its +CMGS answer (real modems take 1-5 s);
    /// URCs that fall due meanwhile are held and printed after the answer (the link is reserved
    /// until the final result, TS 27.005 §3.4.1), commands typed meanwhile are taken afterwards.
    pub send_delay_ms: u64,
    /// Time between the parts of a long incoming message (each part is a delivery of its own on
    /// a real network; 0 hands them over at once).
    pub part_interval_ms: u64,
    /// Vendor behaviours, all off by default.
    pub quirks: Quirks,
}

impl Default for ModemConfig {
    fn default() -> Self {
        ModemConfig {
            manufacturer: "SIMCOM_Ltd".into(),
            model: "SIMCOM_SIM800L".into(),
            revision: "1418B05SIM800L24".into(),
            imei: "867856030456784".into(),
            imsi: "250011234567890".into(),
            iccid: "89701011234567890123".into(),
            own_number: None,
            pin: None,
            puk: "12345678".into(),
            smsc: "+79168999100".into(),
            operator: "MTS RUS".into(),
            csq: 20,
            registration_delay_ms: 0,
            echo: true,
            sim_capacity: 30,
            me_capacity: 50,
            send_delay_ms: 0,
            part_interval_ms: 0,
            quirks: Quirks::default(),
        }
    }
}

impl ModemConfig {
    /// A preset for a real model, for `smsgw simulate modem --profile NAME` and tests:
    /// `sim800`, `sim7670g`, `sim7600`, `ec25`, `huawei-e1752`, `huawei-e3372`, `wavecom`,
    /// `mc55i`, `telit`, `zte`, `nokia`. `None` for an unknown name.
    pub fn profile(name: &str) -> Option<ModemConfig> {
        let base = ModemConfig::default();
        let mut q = Quirks::default();
        let (manufacturer, model, revision) = match name {
            "sim800" => {
                q.sms_ready_delay_ms = 3000;
                q.cms_errors_ignore_cmee = true;
                q.unknown_cme_100 = true;
                q.clac = "unsupported".into();
                ("SIMCOM_Ltd", "SIMCOM_SIM800L", "Revision:1418B05SIM800L24")
            }
            "sim7670g" => {
                q.prompt_without_space = true;
                q.boot_urcs = "sim7600".into();
                ("SIMCOM INCORPORATED", "SIMCOM_SIM7670G-MNGV", "2374B04SIM767XM5A_M")
            }
            "sim7600" => {
                q.boot_urcs = "sim7600".into();
                q.boot_silent_ms = 2000;
                q.sms_ready_delay_ms = 4000;
                q.usb_reset_ms = 3000;
                ("SIMCOM INCORPORATED", "SIMCOM_SIM7600E-H", "LE20B04SIM7600M22")
            }
            "ec25" => {
                q.status_reports_stored = true;
                q.zero_based_index = true;
                q.boot_urcs = "quectel".into();
                q.usb_reset_ms = 5000;
                ("Quectel", "EC25", "EC25EFAR06A06M4G")
            }
            "huawei-e1752" => {
                q.huawei_urcs = true;
                q.command_not_support = true;
                q.clac = "extra-cr".into();
                q.empty_line_before_ok = true;
                q.creg_unquoted = true;
                q.storage = "ME".into();
                q.zero_based_index = true;
                q.cmms_unsupported = true;
                q.boot_urcs = "none".into();
                ("huawei", "E1752", "11.126.13.00.00")
            }
            "huawei-e3372" => {
                q.huawei_urcs = true;
                q.storage = "ME".into();
                q.zero_based_index = true;
                q.cpms_test = Some("+CPMS: (\"SM\",\"ME\"),(\"SM\",\"ME\"),(\"SM\",\"ME\")".into());
                q.boot_urcs = "none".into();
                ("huawei", "E3372", "22.328.62.00.00")
            }
            "wavecom" => {
                q.cpin_without_ok = true;
                q.pad_identity = true;
                q.empty_line_before_ok = true;
                q.busy_after_cfun = 2;
                q.cpms_test = Some("+CPMS: ((\"SM\",\"BM\",\"SR\"),(\"SM\"))".into());
                q.boot_urcs = "none".into();
                ("WAVECOM MODEM", "MULTIBAND  900E  1800", "641b09gg.Q2406B 1266500 070505 17:06")
            }
            "mc55i" => {
                q.cmgd_one_argument = true;
                q.cpms_test = Some("+CPMS: (\"MT\",\"SM\",\"ME\"),(\"MT\",\"SM\",\"ME\"),(\"MT\",\"SM\")".into());
                q.boot_urcs = "none".into();
                ("Cinterion", "MC55i", "REVISION 01.301")
            }
            "telit" => {
                q.creg_always_location = true;
                q.creg_with_act = true;
                q.boot_urcs = "none".into();
                ("Telit", "LE910C1-EU", "25.21.660")
            }
            "zte" => {
                q.sim_busy_commands = 2;
                q.csmp_clears_smsc = true;
                q.boot_urcs = "none".into();
                ("ZTE CORPORATION", "MF180", "BD_MF180V1.0.0B03")
            }
            "nokia" => {
                q.no_sms_storage = true;
                q.cpms_test = Some("+CPMS: (),(),()".into());
                q.boot_urcs = "none".into();
                ("Nokia", "Nokia N79", "V 30.0.011")
            }
            _ => return None,
        };
        Some(ModemConfig {
            manufacturer: manufacturer.into(),
            model: model.into(),
            revision: revision.into(),
            quirks: q,
            ..base
        })
    }
}

/// Behaviours of particular real modems (ids refer to `modem-quirks.jsonl`). All off by default:
/// the default modem follows TS 27.005/27.007 as SIMCom and Quectel modules do.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Quirks {
    /// `simcom-bare-prompt`: the AT+CMGS prompt is "\r\n>\r\n" (SIM7670G) instead of "\r\n> ".
    pub prompt_without_space: bool,
    /// `huawei-periodic-urcs`, `huawei-curc-off`: ^RSSI:n / ^MODE:5,4 / ^SRVST:0 every 0.3-1.5 s
    /// and at random points inside answers (also between a +CMGR header and its PDU), until
    /// AT^CURC=0. Without this quirk AT^CURC is an unknown command.
    pub huawei_urcs: bool,
    /// `sm-delivery-report-sr-memory` (Quectel EC25): with AT+CNMI ds=2 status reports are stored
    /// in "SR" (offered by AT+CPMS) and announced as +CDSI: "SR",n. Without it they are stored in
    /// the receive memory (mem3) like SIM800 does.
    pub status_reports_stored: bool,
    /// `simcom-boot-urcs`: SMS commands are refused (+CMS ERROR: 302, or ERROR with
    /// [`Quirks::sms_ready_plain_error`]) and nothing is received until this long after power-up
    /// (or PIN entry), when "Call Ready" / "SMS Ready" (or the vendor's lines) are printed.
    pub sms_ready_delay_ms: u64,
    /// `wavecom-cpin-no-ok`: AT+CPIN? answers "+CPIN: READY" with no final OK.
    pub cpin_without_ok: bool,
    /// Noise bytes (00 FF FE F0 1B 7F ...) whenever the port is opened, before anything else.
    pub garbage_on_open: bool,
    /// `simcom-boot-urcs`, `simcom-sim7600-boot`: the lines printed at power-up and when SMS is
    /// ready: "" or "sim800" (RDY, +CPIN: ..., Call Ready, SMS Ready), "sim7600" (RDY, +CPIN: ...,
    /// SMS DONE, PB DONE), "quectel" (RDY, +CPIN: ..., +QUSIM: 1, +QIND: SMS DONE,
    /// +QIND: PB DONE), "none".
    pub boot_urcs: String,
    /// `simcom-sim7600-boot`: after power-up the modem ignores everything for this long, then
    /// prints RDY.
    pub boot_silent_ms: u64,
    /// `simcom-boot-urcs`: before SMS is ready, SMS commands get a plain ERROR (whatever CMEE).
    pub sms_ready_plain_error: bool,
    /// `huawei-command-not-support`: unknown commands get "COMMAND NOT SUPPORT".
    pub command_not_support: bool,
    /// `simcom-clac-cme100`: unknown commands get +CME ERROR: 100 when CMEE is 1 or 2.
    pub unknown_cme_100: bool,
    /// `huawei-clac-format`, `simcom-clac-cme100`: AT+CLAC as "" (one command a line, TS 27.007),
    /// "single-line" (one +CLAC: line, comma separated; K3715), "extra-cr" (one a line with an
    /// extra CR; E1752) or "unsupported" (+CME ERROR: 100; SIM800C).
    pub clac: String,
    /// `huawei-cscs-query`, `wavecom-leading-space`: an empty line between an answer's
    /// information lines and OK.
    pub empty_line_before_ok: bool,
    /// `wavecom-leading-space`: identity answers (ATI, +CGMI, +CGMM, +CGMR) padded with spaces.
    pub pad_identity: bool,
    /// `huawei-creg-unquoted`: +CREG location as unquoted hex (with spaces in the URC).
    pub creg_unquoted: bool,
    /// `sierra-creg-act`: +CREG location followed by the access technology (5-field form).
    pub creg_with_act: bool,
    /// `telit-creg-extra`: AT+CREG? shows location (and AcT) even with n=0.
    pub creg_always_location: bool,
    /// `creg-corner`: this exact line answers AT+CREG? (an empty string: a bare OK).
    pub creg_answer: Option<String>,
    /// `sierra-creg-act`, `quectel-m26-cme-format`: registered as roaming (stat 5).
    pub roaming: bool,
    /// `huawei-cmti-me-0`: the default storage for received messages: "" or "SM", or "ME".
    pub storage: String,
    /// `huawei-cmti-me-0` (and Quectel): storage indices start at 0 instead of 1.
    pub zero_based_index: bool,
    /// `nokia-no-sms-storage`, `huawei-hilink`: a send-only device: received messages never reach
    /// AT (AT+CMGL/CMGR answer a bare OK), AT+CNMI=... is ERROR, AT+CPMS=... is +CMS ERROR: 302.
    pub no_sms_storage: bool,
    /// `huawei-e3372-cpms`, `siemens-cpms-mt`, `wavecom-cpms-nested`, `cpms-test-variants`: this
    /// exact line answers AT+CPMS=? ("MT" is accepted as another name for "SM" whatever it says).
    pub cpms_test: Option<String>,
    /// `quectel-cdsi-wrong-mem`: stored status reports announced as +CDSI: "SM",0 whatever their
    /// real memory and index.
    pub cdsi_wrong_memory: bool,
    /// `huawei-cms-500-cmms`: AT+CMMS gets +CMS ERROR: 500.
    pub cmms_unsupported: bool,
    /// `siemens-cmgd-one-arg`: AT+CMGD=<index>,<flag> gets +CMS ERROR: 500.
    pub cmgd_one_argument: bool,
    /// `simcom-sim7000-cms-empty`: a refused send is answered "+CMS ERROR:" with no code.
    pub cms_error_without_code: bool,
    /// +CMS ERROR: <n> even with CMEE=0 (SIM800 and many others; TS 27.005 leaves it open).
    pub cms_errors_ignore_cmee: bool,
    /// `quectel-m26-cme-format`: with CMEE=2 errors read "CME Error: <text>" / "CMS Error: <text>".
    pub error_format_m26: bool,
    /// `wavecom-busy-after-cfun`: the first N commands after AT+CFUN=1 get +CME ERROR: 515.
    pub busy_after_cfun: u32,
    /// `zte-sim-busy`: the first N SIM commands after power-up get +CME ERROR: 14 (SIM busy).
    pub sim_busy_commands: u32,
    /// `zte-sim-busy`: AT+CSMP=... clears the stored SMSC address.
    pub csmp_clears_smsc: bool,
    /// `cmgr-header-variants`: the PDU-mode +CMGR header: "" (<stat>,,<len>), "no-alpha"
    /// (<stat>,<len>), "len-only" (<len>), "empty-stat" (,,<len>), "with-index"
    /// (<index>,<stat>,,<len>).
    pub cmgr_header: String,
    /// `cmgr-header-variants`: +CMGR <length> 7 more than the TPDU really has.
    pub cmgr_wrong_length: bool,
    /// `cnmi-test-variants`: this exact line answers AT+CNMI=?; AT+CNMI values outside its ranges
    /// get +CMS ERROR: 303.
    pub cnmi_test: Option<String>,
    /// AT+CFUN=1,1 re-enumerates the USB device (SIM7600, EC25): after OK the pty and the symlink
    /// go away and come back (a new pty) this many ms later. 0: the port stays (SIM800 on UART).
    pub usb_reset_ms: u64,
    /// `quectel-cnma-340`: the modem starts with AT+CSMS=1, so every inline +CMT/+CDS needs one
    /// AT+CNMA (a second gets +CMS ERROR: 340); one left unacknowledged when the next arrives
    /// turns inline routing off (TS 27.005: <mt> and <ds> go to 0).
    pub csms_phase2plus: bool,
    /// Seed of the pseudo-random source behind Huawei URC timing (0: a fixed default), so a
    /// failing run can be repeated.
    pub seed: u64,
}

/// One SMS-SUBMIT the gateway handed over with AT+CMGS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentSms {
    /// TP-MR the modem assigned and answered with +CMGS (the PDU's own TP-MR is ignored).
    pub message_ref: u8,
    /// TP-DA: "+digits" for an international number, else as sent.
    pub to: String,
    pub text: String,
    pub encoding: DataEncoding,
    pub concat: Option<Concat>,
    /// TP-SRR set (in text mode: AT+CSMP first octet has bit 5 set).
    pub status_report: bool,
    /// A relative TP-VP in minutes (text mode: AT+CSMP's <vp> when its first octet says relative).
    pub validity_minutes: Option<u32>,
    /// The PDU hex as received (SMSC part included); empty for a text-mode send.
    pub pdu: String,
    pub at: DateTime<Utc>,
}

/// A virtual modem serving on a pty. Dropping it without [`VirtualModem::shutdown`] stops it too
/// (the symlink is removed at once, the pty when the runtime next runs its task).
pub struct VirtualModem {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Mutex<Engine>,
    notify: Notify,
    link: PathBuf,
    device: Mutex<Option<Device>>,
    slave: Mutex<Option<PathBuf>>,
}

struct Device {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// Lock a mutex whose holder may have panicked: the data is plain state, still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Inner {
    fn engine(&self) -> MutexGuard<'_, Engine> {
        lock(&self.engine)
    }

    /// Run `f` on the engine and wake the serving task to write whatever it printed.
    fn with<R>(&self, f: impl FnOnce(&mut Engine, Instant) -> R) -> R {
        let r = f(&mut self.engine(), Instant::now());
        self.notify.notify_one();
        r
    }

    fn plug(self: &Arc<Self>) -> std::io::Result<()> {
        let mut device = lock(&self.device);
        if device.is_some() {
            return Ok(());
        }
        let pty = pty::Pty::open()?;
        pty::link(pty.slave_path(), &self.link)?;
        *lock(&self.slave) = Some(pty.slave_path().to_path_buf());
        self.engine().power_up(Instant::now());
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(pty::serve(self.clone(), pty, stopped));
        *device = Some(Device { stop, task });
        Ok(())
    }
}

impl VirtualModem {
    /// Create a pty pair, serve on the master side, and expose the slave's device path through a
    /// stable symlink at `link` (like /dev/smsgw/<serial>-if02 would be), so an unplug/replug can
    /// swap the pty under the same name. The link's directory is created if missing; an existing
    /// symlink there is replaced, anything else is an error. Must run inside a tokio runtime.
    pub async fn start(cfg: ModemConfig, link: &Path) -> std::io::Result<VirtualModem> {
        let inner = Arc::new(Inner {
            engine: Mutex::new(Engine::new(cfg)),
            notify: Notify::new(),
            link: link.to_path_buf(),
            device: Mutex::new(None),
            slave: Mutex::new(None),
        });
        inner.plug()?;
        Ok(VirtualModem { inner })
    }

    /// The symlink the gateway opens.
    pub fn link(&self) -> &Path {
        &self.inner.link
    }

    /// The IMEI it answers AT+CGSN with.
    pub fn imei(&self) -> String {
        self.inner.engine().cfg.imei.clone()
    }

    /// The pty slave the link points at now (`None` while unplugged).
    pub fn device_path(&self) -> Option<PathBuf> {
        lock(&self.inner.slave).clone()
    }

    /// Every SMS-SUBMIT received via AT+CMGS, decoded, oldest first.
    pub fn sent(&self) -> Vec<SentSms> {
        self.inner.engine().sent.clone()
    }

    /// A message arrives from the network: stored at the next free index of the receive memory
    /// (AT+CPMS mem3, "SM" by default) and announced with +CMTI: "SM",<index> (AT+CNMI mt=1), or
    /// routed to the port as +CMT: ,<len> and a PDU (mt=2), or stored silently (mt=0). Long text
    /// becomes several SMS-DELIVER parts with a concatenation header. While the modem cannot
    /// receive (unplugged, SIM locked, not registered, SMS not ready, hung, storage full) the
    /// network keeps the message and hands it over later, in order.
    pub fn deliver(&self, from: &str, text: &str) {
        self.inner.with(|e, now| e.deliver(from, text, now));
    }

    /// The network hands over a TPDU exactly as given (an SMS-DELIVER or anything else, valid or
    /// not), behind the SMSC address, as it does a message: stored and announced, or routed.
    pub fn deliver_pdu(&self, tpdu: &[u8]) {
        self.inner.with(|e, now| e.deliver_pdu(tpdu, now));
    }

    /// The network reports on a message sent earlier: by TP-MR and recipient, with TP-ST `status`
    /// (0 delivered, 0x20.. pending, 0x40.. failed). AT+CNMI ds=1: +CDS: <len> and the PDU;
    /// ds=2: stored ("SR" with [`Quirks::status_reports_stored`], else mem3) and announced with
    /// +CDSI; ds=0: dropped. TP-SCTS is the time of the matching send, if there was one.
    pub fn status_report(&self, message_ref: u8, recipient: &str, status: u8) {
        self.inner.with(|e, now| e.status_report(message_ref, recipient, status, now));
    }

    /// Automatically send a delivered status report this long after each AT+CMGS whose PDU
    /// requested one (None = off).
    pub fn set_auto_reports(&self, after: Option<Duration>) {
        self.inner.with(|e, _| e.auto_reports = after);
    }

    /// The share (0.0-1.0) of automatic status reports that say the message failed (TP-ST
    /// 0x41), spread evenly: 0.25 fails every fourth.
    pub fn set_report_failure_fraction(&self, fraction: f64) {
        self.inner.with(|e, _| e.report_failure_fraction = fraction);
    }

    /// Answer the next n AT+CMGS with +CMS ERROR: code (after the PDU, as the network refuses).
    pub fn fail_next_sends(&self, n: usize, code: u16) {
        self.inner.with(|e, _| e.fail_next_sends(n, code));
    }

    /// Print line noise now (binary junk and a line that means nothing), between answers or,
    /// while a command runs, after its answer.
    pub fn garbage(&self) {
        self.inner.with(|e, _| e.garbage());
    }

    /// Stop answering anything, echo included (a hung modem) / answer again. Bytes received while
    /// hung are lost.
    pub fn set_hung(&self, hung: bool) {
        self.inner.with(|e, _| e.set_hung(hung));
    }

    /// Radio coverage: without it the modem keeps searching (+CREG stat 2), sends fail with
    /// +CMS ERROR: 331 and nothing is received.
    pub fn set_coverage(&self, coverage: bool) {
        self.inner.with(|e, _| e.set_coverage(coverage));
    }

    /// Signal strength for AT+CSQ and ^RSSI (0-31, 99 unknown).
    pub fn set_signal(&self, csq: u8) {
        self.inner.with(|e, _| e.set_signal(csq));
    }

    /// USB unplug: close the pty (the gateway's reads get EOF or EIO, its writes EIO) and remove
    /// the symlink. Nothing is received while unplugged.
    pub async fn unplug(&self) {
        let device = lock(&self.inner.device).take();
        if let Some(device) = device {
            let _ = device.stop.send(());
            let _ = device.task.await;
        }
        *lock(&self.inner.slave) = None;
        self.inner.engine().power_off();
    }

    /// Plug in again: a new pty, the symlink again, fresh power-up state (SIM storage, the SMSC
    /// and the PIN retry counter kept, like a SIM). Does nothing while plugged in.
    pub async fn replug(&self) -> std::io::Result<()> {
        self.inner.plug()
    }

    /// Every command line received (from "AT" on, as typed), oldest first.
    pub fn commands(&self) -> Vec<String> {
        self.inner.engine().commands.clone()
    }

    /// Messages in the default storage ("SM", or [`Quirks::storage`]): (index, "REC UNREAD" or
    /// "REC READ", PDU hex with SMSC part), by index.
    pub fn stored(&self) -> Vec<(u32, String, String)> {
        let e = self.inner.engine();
        let mem = e.default_storage();
        e.stored_in(&mem)
    }

    /// As [`VirtualModem::stored`] for any memory ("SM", "ME", "SR").
    pub fn stored_in(&self, memory: &str) -> Vec<(u32, String, String)> {
        self.inner.engine().stored_in(memory)
    }

    /// Stop serving, close the pty and remove the symlink.
    pub async fn shutdown(self) {
        self.unplug().await;
    }
}

impl Drop for VirtualModem {
    fn drop(&mut self) {
        if let Some(device) = lock(&self.inner.device).take() {
            let _ = device.stop.send(());
            let slave = lock(&self.inner.slave).take();
            pty::unlink_if_ours(&self.inner.link, slave.as_deref());
        }
    }
}
