//! The SMPP protocol layer: what every SMPP peer of the crate shares on the
//! wire, whichever side of a bind it is on (the carrier channel as an ESME,
//! the SMSC simulator, the SMPP server for LAN applications). It imports
//! only the shared vocabulary (`message`): sessions, binds and their
//! policies live with the peers that run them.
//!
//! - `framer`: the byte stream split into PDUs by `command_length`, each
//!   with its header kept whether or not its body decodes.
//! - `reply`: answers that carry the header only (error responses,
//!   `generic_nack`).
//! - `receipt`: delivery receipt texts (appendix B) built and read, and the
//!   `message_state` values with their `stat:` words.
//! - `time`: SMPP absolute and relative times, written and read.
//! - `accounts`: the SMPP server's accounts as plain values for readers
//!   (the API and `/metrics`), so they need not import the server.

pub mod accounts;
pub mod framer;
pub mod receipt;
pub mod reply;
pub mod time;

pub use framer::{FramingError, HEADER_LEN, MAX_PDU, RawPdu, SmppFrame, SmppFramer, write_burst};
