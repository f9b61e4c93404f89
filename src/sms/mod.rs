//! Text and numbers: everything about what an SMS can carry: alphabet choice, segmentation,
//! recipient numbers, and the TS 23.040 PDUs the modem route speaks. Every route uses this module;
//! no other module encodes text.

pub mod number;
pub mod pdu;
pub mod text;

pub use number::{NumberError, normalise};
pub use text::{Encoding, Split, choose_encoding, count_parts, split};
