//! The SMPP server's accounts as readers see them (`GET /v1/smpp/accounts`,
//! `/metrics`): plain values, and the `Accounts` trait the server
//! implements and the daemon hands the API. The API and the server share a
//! layer and may not import each other; both import this.

use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// One account: its settings (never its password), its live binds, its
/// rate and its counters since start. The store's counts of what is owed
/// (`receipts_owed`, `inbound_owed`, `dead`) are filled in by the reader.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct AccountView {
    pub system_id: String,
    /// Bind types allowed; empty: all three.
    pub bind_types: Vec<String>,
    pub max_binds: usize,
    /// Submits per second over all its binds; none: unlimited.
    pub throughput: Option<f64>,
    pub window: usize,
    /// Routes its messages may take; empty: any.
    pub routes: Vec<String>,
    /// Sender ids it may use; empty: any.
    pub senders: Vec<String>,
    /// `decimal` or `hex`.
    pub message_id: String,
    pub default_class: String,
    pub max_class: String,
    /// Whether opt-outs, consent, quiet hours and caps apply to its messages.
    pub policy: bool,
    pub inbound_numbers: Vec<String>,
    pub inbound_keywords: Vec<String>,
    /// Binds open now.
    pub binds: Vec<BindView>,
    /// Accepted submits per second over the last minute.
    pub submits_per_second: f64,
    /// Submits accepted (committed) since start.
    pub accepted: u64,
    /// Submits refused since start, by `command_status` name (`ESME_RTHROTTLED`, ...).
    pub refused: BTreeMap<String, u64>,
    /// Binds refused since start, by `command_status` name.
    pub binds_refused: BTreeMap<String, u64>,
    /// Receipts acknowledged by the account since start.
    pub receipts_delivered: u64,
    /// Inbound messages acknowledged by the account since start.
    pub inbound_delivered: u64,
    /// Receipts waiting in the store for the account now.
    pub receipts_owed: u64,
    /// Inbound messages waiting in the store for the account now.
    pub inbound_owed: u64,
    /// Receipts and inbound messages given up on (never acknowledged in time).
    pub dead: u64,
}

/// One open bind.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BindView {
    /// `transmitter`, `receiver` or `transceiver`.
    pub kind: String,
    /// The peer's address and port.
    pub peer: String,
    /// When it bound (RFC 3339).
    pub since: String,
}

/// What the SMPP server shows its readers.
pub trait Accounts: Send + Sync {
    /// Every account, by system_id.
    fn accounts(&self) -> Vec<AccountView>;
}
