//! The SMPP protocol layer: what every SMPP peer of the crate shares on the
//! wire, whichever side of a bind it is on (the carrier channel as an ESME,
//! the SMSC simulator, an SMPP server for LAN applications). It imports no
//! other module of the crate: sessions, binds and their policies live with
//! the peers that run them.
//!
//! - `framer`: the byte stream split into PDUs by `command_length`, each
//!   with its header kept whether or not its body decodes.
//! - `reply`: answers that carry the header only (error responses,
//!   `generic_nack`).
//! - `accounts`: the SMPP server's accounts as plain values for readers
//!   (the API and `/metrics`), so they need not import the server.

pub mod accounts;
pub mod framer;
pub mod reply;

pub use framer::{FramingError, HEADER_LEN, MAX_PDU, RawPdu, SmppFrame, SmppFramer};
