//! SMS-STATUS-REPORT decoding (TS 23.040 §9.2.2.3) on any input.
#![no_main]

mod pdu;

libfuzzer_sys::fuzz_target!(|data: &[u8]| pdu::run(data, 0x02));
