//! Text and numbers: everything about what an SMS can carry: alphabet choice, segmentation,
//! recipient numbers, and the TS 23.040 PDUs the modem route speaks. Every route uses this module;
//! no other module encodes text. A message's text is planned once ([`Plan`]) and the plan travels
//! with it to the route.

pub mod number;
pub mod pdu;
pub mod text;

pub use number::{NumberError, normalise};
pub use text::{Alphabets, Encoding, Plan, choose_encoding, count_parts, plan, split};
