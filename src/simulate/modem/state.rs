//! The virtual modem's state, as a real device splits it: what the SIM and
//! the network side keep across a power cycle ([`Engine`]: storage, PIN
//! retries, SMSC, messages on their way, what was sent) and what every
//! power-up starts afresh ([`PowerOnState`]: echo, CMEE, CNMI, CPMS, PIN
//! entry, registration, the line being typed); the types the command set and
//! the engine's byte handling share, and the questions both ask of the state
//! (SIM lock, registration, SMS readiness, memories).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::pdu::ModemPdu;
use super::{ModemConfig, SentSms};

/// How an error is reported (rendered per AT+CMEE and quirks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ErrorReply {
    Plain,
    Cme(u16),
    Cms(u16),
    /// Huawei's "COMMAND NOT SUPPORT".
    NotSupport,
    /// "+CMS ERROR:" with no code.
    CmsEmpty,
}

/// What a command did.
pub(super) enum Outcome {
    /// Information lines; OK follows (once, after the last command of a chained line).
    Done(Vec<String>),
    /// Information lines and no final result at all (Wavecom's AT+CPIN?).
    NoFinal(Vec<String>),
    /// Prompt for data; ends the line.
    Prompt(Input),
    Fail(ErrorReply),
}

/// Work to do once the final result of a line is out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum After {
    /// AT+CFUN=1,1: power-cycle (or re-enumerate with the USB reset quirk).
    Reset,
    /// Print the +CPIN: READY URC (correct PIN or PUK entered).
    SimReady,
    /// AT+CNMI mode 1-3 with bfr=0: hand over indications buffered in mode 0.
    FlushBuffered,
}

/// What the modem is reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Input {
    Command(Vec<u8>),
    /// After AT+CMGS=<len> in PDU mode.
    Pdu {
        len: usize,
        data: Vec<u8>,
    },
    /// After AT+CMGS="<da>" in text mode.
    Text {
        to: String,
        data: Vec<u8>,
    },
}

/// A message on its way from the network.
#[derive(Debug, Clone)]
pub(super) enum Incoming {
    Deliver(ModemPdu),
    Report(ModemPdu),
}

/// A stored message.
#[derive(Debug, Clone)]
pub(super) struct Slot {
    /// 0 REC UNREAD, 1 REC READ, 2 STO UNSENT, 3 STO SENT.
    pub stat: u8,
    pub pdu: ModemPdu,
}

/// One message memory ("SM", "ME", "SR").
#[derive(Debug, Clone)]
pub(super) struct Store {
    pub capacity: u32,
    pub base: u32,
    pub slots: BTreeMap<u32, Slot>,
}

impl Store {
    fn new(capacity: u32, base: u32) -> Store {
        Store { capacity, base, slots: BTreeMap::new() }
    }

    pub fn valid(&self, index: u32) -> bool {
        index >= self.base && index - self.base < self.capacity
    }

    pub fn used(&self) -> usize {
        self.slots.len()
    }

    pub(super) fn insert(&mut self, slot: Slot) -> Option<u32> {
        let free = (self.base..self.base.saturating_add(self.capacity)).find(|i| !self.slots.contains_key(i))?;
        self.slots.insert(free, slot);
        Some(free)
    }
}

/// SIM lock state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sim {
    Ready,
    Pin,
    Puk,
}

/// Everything a power cycle resets.
pub(super) struct PowerOnState {
    pub power_on: Instant,
    pub echo: bool,
    pub cmee: u8,
    /// AT+CRC (extended ring format) and AT+CVHU (voice hang-up control): kept and shown only.
    pub crc: u8,
    pub cvhu: u8,
    pub text_mode: bool,
    /// mode, mt, bm, ds, bfr.
    pub cnmi: [u8; 5],
    pub creg_n: u8,
    pub cereg_n: u8,
    pub cgreg_n: u8,
    pub cscs: String,
    /// mem1 (read, list, delete), mem2 (write, send), mem3 (receive).
    pub mem: [String; 3],
    /// AT+CSMP: fo, vp, pid, dcs.
    pub csmp: [u8; 4],
    pub csms: u8,
    pub cmms: u8,
    pub ack_pending: bool,
    pub curc: bool,
    pub clip: u8,
    /// AT+CGATT: attached to the packet domain (while registered) unless detached by hand.
    pub cgatt: bool,
    /// AT+COPS=3,<format>: how AT+COPS? names the operator (0 long, 1 short, 2 numeric).
    pub cops_format: u8,
    /// When the SIM became usable (power-up, or the correct PIN).
    pub sim_ready_at: Option<Instant>,
    /// AT+CFUN level and since when the radio is on.
    pub cfun: u8,
    pub radio_on_at: Option<Instant>,
    pub last_stat: u8,
    pub boot_printed: bool,
    pub sms_ready_printed: bool,
    pub busy_left: u32,
    pub sim_busy_left: u32,
    /// URCs held while the host types a PDU or text.
    pub held: Vec<u8>,
    /// Indications held in CNMI mode 0.
    pub buffered: Vec<Vec<u8>>,
    pub input: Input,
    pub overflow: bool,
    /// A delayed answer (send delay) and the input that arrived meanwhile.
    pub pending: Option<(Instant, Vec<u8>)>,
    pub deferred: Vec<u8>,
    pub next_huawei: Instant,
}

impl PowerOnState {
    pub(super) fn new(cfg: &ModemConfig, pin_required: bool, now: Instant) -> PowerOnState {
        let storage = default_storage(cfg);
        let mut s = PowerOnState {
            power_on: now,
            echo: cfg.echo,
            cmee: 0,
            crc: 0,
            cvhu: 0,
            text_mode: false,
            cnmi: [0; 5],
            creg_n: 0,
            cereg_n: 0,
            cgreg_n: 0,
            cscs: "IRA".into(),
            mem: [storage.clone(), storage.clone(), storage],
            csmp: [17, 167, 0, 0],
            csms: u8::from(cfg.quirks.csms_phase2plus),
            cmms: 0,
            ack_pending: false,
            curc: true,
            clip: 0,
            cgatt: true,
            cops_format: 0,
            sim_ready_at: if pin_required { None } else { Some(now) },
            cfun: 1,
            radio_on_at: Some(now),
            last_stat: 0,
            boot_printed: false,
            sms_ready_printed: false,
            busy_left: 0,
            sim_busy_left: cfg.quirks.sim_busy_commands,
            held: Vec::new(),
            buffered: Vec::new(),
            input: Input::Command(Vec::new()),
            overflow: false,
            pending: None,
            deferred: Vec::new(),
            next_huawei: now + Duration::from_millis(300),
        };
        s.reset_profile(cfg);
        s
    }

    /// ATZ / AT&F: the stored profile's settings.
    pub fn reset_profile(&mut self, cfg: &ModemConfig) {
        self.echo = cfg.echo;
        self.cmee = 0;
        self.text_mode = false;
        self.cnmi = [2, 1, 0, 0, 0];
        self.creg_n = 0;
        self.cereg_n = 0;
        self.cgreg_n = 0;
        self.cscs = "IRA".into();
        self.csmp = [17, 167, 0, 0];
    }
}

fn default_storage(cfg: &ModemConfig) -> String {
    match cfg.quirks.storage.to_ascii_uppercase().as_str() {
        "ME" => "ME".into(),
        _ => "SM".into(),
    }
}

/// The whole modem. The command set reads and changes the `pub` fields; the
/// `pub(super)` ones are the engine's own bookkeeping.
pub(super) struct Engine {
    pub cfg: ModemConfig,
    pub(super) rng: u64,
    pub stores: BTreeMap<String, Store>,
    pub pin: Option<String>,
    pub pin_attempts: u8,
    pub puk_locked: bool,
    pub smsc: String,
    pub sent: Vec<SentSms>,
    pub commands: Vec<String>,
    pub(super) next_mr: u8,
    pub(super) next_concat: u8,
    pub(super) fail_sends: usize,
    pub(super) fail_code: u16,
    pub auto_reports: Option<Duration>,
    /// Share of automatic reports that say "failed" (TP-ST 0x41) instead of "delivered".
    pub report_failure_fraction: f64,
    /// Automatic reports scheduled so far: which ones fail is spread evenly over this count.
    pub(super) reports_made: u64,
    pub(super) scheduled: Vec<(Instant, u8, String, u8)>,
    /// What the network will hand over, each not before its time, in order.
    pub(super) network: VecDeque<(Instant, Incoming)>,
    pub(super) hung: bool,
    pub(super) coverage: bool,
    pub csq: u8,
    pub(super) powered: bool,
    pub(super) attached: bool,
    pub s: PowerOnState,
    pub(super) out: Vec<u8>,
    pub(super) after: Vec<After>,
    pub(super) usb_reset: bool,
}

impl Engine {
    pub fn new(cfg: ModemConfig) -> Engine {
        let base = u32::from(!cfg.quirks.zero_based_index);
        let mut stores = BTreeMap::new();
        stores.insert("SM".to_string(), Store::new(cfg.sim_capacity, base));
        stores.insert("ME".to_string(), Store::new(cfg.me_capacity, base));
        if cfg.quirks.status_reports_stored {
            stores.insert("SR".to_string(), Store::new(cfg.me_capacity, base));
        }
        let now = Instant::now();
        Engine {
            rng: if cfg.quirks.seed == 0 { 0x9E37_79B9_7F4A_7C15 } else { cfg.quirks.seed },
            stores,
            pin: cfg.pin.clone(),
            pin_attempts: 3,
            puk_locked: false,
            smsc: cfg.smsc.clone(),
            sent: Vec::new(),
            commands: Vec::new(),
            next_mr: 1,
            next_concat: 1,
            fail_sends: 0,
            fail_code: 500,
            auto_reports: None,
            report_failure_fraction: 0.0,
            reports_made: 0,
            scheduled: Vec::new(),
            network: VecDeque::new(),
            hung: false,
            coverage: true,
            csq: cfg.csq,
            powered: false,
            attached: false,
            s: PowerOnState::new(&cfg, cfg.pin.is_some(), now),
            out: Vec::new(),
            after: Vec::new(),
            usb_reset: false,
            cfg,
        }
    }

    pub fn default_storage(&self) -> String {
        default_storage(&self.cfg)
    }

    pub fn stored_in(&self, memory: &str) -> Vec<(u32, String, String)> {
        let Some(store) = self.store(memory) else { return Vec::new() };
        store.slots.iter().map(|(&i, slot)| (i, stat_text(slot.stat).to_string(), slot.pdu.hex.clone())).collect()
    }

    pub fn store(&self, memory: &str) -> Option<&Store> {
        self.stores.get(&canonical_memory(memory))
    }

    pub fn store_mut(&mut self, memory: &str) -> Option<&mut Store> {
        self.stores.get_mut(&canonical_memory(memory))
    }

    // ---- state queries ----

    pub fn sim(&self) -> Sim {
        if self.puk_locked {
            Sim::Puk
        } else if self.s.sim_ready_at.is_none() {
            Sim::Pin
        } else {
            Sim::Ready
        }
    }

    /// +CREG stat: 0 not searching, 1 home, 2 searching, 5 roaming.
    pub fn reg_stat(&self, now: Instant) -> u8 {
        let (Some(sim_at), Some(radio_at)) = (self.s.sim_ready_at, self.s.radio_on_at) else { return 0 };
        if !self.powered || self.s.cfun != 1 || self.sim() != Sim::Ready {
            return 0;
        }
        let since = sim_at.max(radio_at);
        if !self.coverage || now < since + Duration::from_millis(self.cfg.registration_delay_ms) {
            2
        } else if self.cfg.quirks.roaming {
            5
        } else {
            1
        }
    }

    pub fn registered(&self, now: Instant) -> bool {
        matches!(self.reg_stat(now), 1 | 5)
    }

    /// Past the boot silence (SIM7600 says nothing and hears nothing before RDY).
    pub(super) fn awake(&self, now: Instant) -> bool {
        now >= self.s.power_on + Duration::from_millis(self.cfg.quirks.boot_silent_ms)
    }

    pub fn sms_ready(&self, now: Instant) -> bool {
        let Some(sim_at) = self.s.sim_ready_at else { return false };
        self.awake(now) && now >= sim_at + Duration::from_millis(self.cfg.quirks.sms_ready_delay_ms)
    }

    pub fn defer(&mut self, after: After) {
        self.after.push(after);
    }
}

/// "MT" (ME and SM together, Siemens) is served by SM here.
pub(super) fn canonical_memory(memory: &str) -> String {
    match memory.to_ascii_uppercase().as_str() {
        "MT" => "SM".into(),
        other => other.to_string(),
    }
}

pub(super) fn stat_text(stat: u8) -> &'static str {
    match stat {
        0 => "REC UNREAD",
        1 => "REC READ",
        2 => "STO UNSENT",
        _ => "STO SENT",
    }
}
