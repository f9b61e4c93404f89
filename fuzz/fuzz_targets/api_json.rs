//! A POST /v1/messages body through JSON parsing and validation, as the handler does it, without
//! a server: accepted, a 400, or a 422 that names each offending field.
#![no_main]

use smsgw::api::Limits;
use smsgw::api::messages::validate;
use smsgw::dispatch::RouteError;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_body_bytes: 1 << 20,
        max_batch: 1000,
        max_recipients: 1000,
        max_segments: 10,
        default_region: "RU".into(),
        default_validity_ms: 86_400_000,
    };
    let resolve = |to: &str, asked: Option<&str>| match asked {
        None | Some("sim") => Ok("sim".to_string()),
        Some(name) if name == "de" && to.starts_with("+49") => Ok("de".to_string()),
        Some(name) => Err(RouteError::NotServed { route: name.to_string(), to: to.to_string() }),
    };
    match validate(data, &limits, resolve) {
        Ok(v) => assert!(!v.messages.is_empty()),
        Err(p) if p.status == 400 => {}
        Err(p) => {
            assert_eq!(p.status, 422, "{p:?}");
            assert!(!p.errors.is_empty() && p.errors.iter().all(|e| !e.field.is_empty()), "{p:?}");
        }
    }
});
