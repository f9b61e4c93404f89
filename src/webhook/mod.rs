//! Webhooks: the outbox pushed to LAN services, once per event per
//! subscription, signed the Standard Webhooks way, nothing lost across a
//! crash. The store keeps the state (events, subscriptions, deliveries,
//! attempts; see `store::webhooks`); this module is the worker that moves
//! it: `sign` (the signature), `send` (one HTTP attempt and what its answer
//! means), `payload` (the body), `deliverer` (the supervised loop: fan-out,
//! claim, send, record).

mod deliverer;
pub mod payload;
pub mod send;
pub mod sign;

pub use deliverer::{Deliverer, SettingsError};
