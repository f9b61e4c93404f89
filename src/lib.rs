//! smsgw: an on-premise SMS gateway. One daemon queues messages durably,
//! sends them through GSM modems, SMPP carriers or a simulated route at the
//! pace each allows, and reports what happened through a local HTTP API.
//!
//! Dependencies point one way: `api` and `dispatch` use `store` and
//! `channel`; channels use `sms`; nothing below reaches back up.

pub mod api;
pub mod bench;
pub mod channel;
pub mod client;
pub mod config;
pub mod daemon;
pub mod dispatch;
pub mod message;
pub mod metrics;
pub mod notify;
pub mod replies;
pub mod simulate;
pub mod smpp;
pub mod smpp_server;
pub mod sms;
pub mod store;
pub mod supervise;
pub mod throughput;
pub mod trigger;
pub mod webhook;
pub mod zone;
