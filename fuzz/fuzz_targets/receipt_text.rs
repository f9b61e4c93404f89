//! Delivery receipt text (SMPP 3.4 appendix B) and the receipt id forms.
#![no_main]

use smsgw::channel::smpp::receipt::{IdForm, canonical_receipt_id, canonical_resp_id, parse, stat_status};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some(r) = parse(&text) {
        assert!(!r.id.is_empty());
        let _ = stat_status(&r.stat);
        for form in [IdForm::Same, IdForm::HexInResp, IdForm::DecimalInResp] {
            let _ = canonical_receipt_id(&r.id, form);
        }
    }
    let _ = canonical_resp_id(&text);
});
