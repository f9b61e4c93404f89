//! Text and numbers: everything about what an SMS can carry — alphabet choice, segmentation, and
//! recipient numbers. Every route uses this module; no other module encodes text.

pub mod number;
pub mod text;

pub use number::{NumberError, normalise};
pub use text::{Encoding, Split, choose_encoding, count_parts, split};
