//! Peers on the far side of a real wire, for tests and for a sysadmin's dry
//! run: an SMSC simulator speaking SMPP over TCP (and, with the modem
//! route, a virtual modem on a pseudo-terminal). They share no session code
//! with the routes they talk to.

pub mod framer;
pub mod smsc;
