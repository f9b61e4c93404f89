//! The user data header parser: never a part outside 1..=total, never a header longer than the
//! user data.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok((concat, len)) = smsgw::sms::pdu::user_data_header(data) {
        assert!((1..=data.len()).contains(&len), "header of {len} octets in {} octets", data.len());
        if let Some(c) = concat {
            assert!(c.seq >= 1 && c.seq <= c.total, "{c:?}");
        }
    }
});
