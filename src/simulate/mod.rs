//! Peers on the far side of a real wire, for tests and for a sysadmin's dry
//! run: an SMSC simulator speaking SMPP over TCP and a virtual GSM modem on
//! a pseudo-terminal. They share no session code with the routes they talk
//! to: only the `sms` text rules and the `smpp` framer.

pub mod modem;
pub mod smsc;
