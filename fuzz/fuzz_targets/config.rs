//! The config file: TOML parse and validation. Relative paths are looked up under a directory that
//! does not exist and a text naming an absolute path is not validated, so no real file is read.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Some(Err(e)) = smsgw::config::check_without_files::<smsgw::channel::RouteSpec>(text) {
        assert!(!e.problems.is_empty());
    }
});
