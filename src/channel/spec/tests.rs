//! The configuration file read through the route kinds: defaults, every
//! problem named by its key, secrets that never print.

use super::*;
use crate::config::{Config, ConfigError, DEFAULT_SCOPES, DEMO_TOML, Scope, check_without_files};
use std::collections::BTreeSet;
use std::path::Path;

fn check(text: &str) -> Result<Loaded, ConfigError> {
    Config::from_str(text, "t.toml", Path::new("."))
}

const MIN: &str = r#"
[[api_keys]]
name = "a"
key = "0123456789abcdef"
[[routes]]
name = "r"
kind = "sim"
"#;

#[test]
fn demo_config_is_valid() {
    let l = check(DEMO_TOML).expect("demo config must validate");
    assert!(l.listen.ip().is_loopback());
}

#[test]
fn minimal_config_takes_defaults() {
    let l = check(MIN).unwrap();
    assert_eq!(l.config.server.max_segments, 10);
    let keys: Vec<(&str, &str)> = l.keys.iter().map(|k| (k.name.as_str(), k.secret.expose())).collect();
    assert_eq!(keys, vec![("a", "0123456789abcdef")]);
}

#[test]
fn unknown_key_is_named() {
    let e = check(&format!("{MIN}\nbogus = 1\n")).unwrap_err().to_string();
    assert!(e.contains("bogus"), "{e}");
}

#[test]
fn wrong_type_is_named() {
    let e = check(&format!("[server]\nmax_batch = \"many\"\n{MIN}")).unwrap_err().to_string();
    assert!(e.contains("max_batch"), "{e}");
}

#[test]
fn collects_every_problem() {
    let text = r#"
[server]
listen = "localhost"
[numbers]
default_region = "XX"
[[api_keys]]
name = "a"
key = "short"
[[routes]]
name = "r"
kind = "sim"
prefixes = ["7"]
[[routes]]
name = "r"
kind = "sim"
[routes.sim]
fail_fraction = 2.0
"#;
    let e = check(text).unwrap_err();
    let all = e.to_string();
    for needle in [
        "server.listen",
        "numbers.default_region",
        "api_keys[0].key",
        "routes[0].prefixes[0]",
        "routes[1].name: duplicate",
        "routes[1].sim.fail_fraction",
    ] {
        assert!(all.contains(needle), "missing {needle} in:\n{all}");
    }
}

#[test]
fn missing_key_file_is_named() {
    let text = MIN.replace("key = \"0123456789abcdef\"", "key_file = \"/nonexistent/key\"");
    let e = check(&text).unwrap_err().to_string();
    assert!(e.contains("api_keys[0].key_file") && e.contains("/nonexistent/key"), "{e}");
}

#[test]
fn smpp_route_keys() {
    let text = MIN.replace(
            "kind = \"sim\"",
            "kind = \"smpp\"\n[routes.smpp]\nhost = \"h\"\nsystem_id = \"u\"\npassword = \"toolongpass\"\nreceipt_ids = \"hex_in_resp\"\nwindow = 0",
        );
    let e = check(&text).unwrap_err().to_string();
    assert!(e.contains("routes[0].smpp.password") && e.contains("routes[0].smpp.window"), "{e}");
    let ok = MIN.replace("kind = \"sim\"", "kind = \"smpp\"\n[routes.smpp]\nhost = \"h\"\nsystem_id = \"u\"");
    let l = check(&ok).unwrap();
    assert_eq!(l.config.routes[0].spec.smpp().unwrap().window, 10);
    let wrong_table = format!("{MIN}[routes.smpp]\nhost = \"h\"\nsystem_id = \"u\"\n");
    assert!(check(&wrong_table).unwrap_err().to_string().contains("routes[0].smpp: only for kind"));
}

#[test]
fn a_modem_pin_is_digits_and_a_retry_pause_is_above_zero() {
    let modem = |keys: &str| {
        MIN.replace("kind = \"sim\"", &format!("kind = \"modem\"\n[routes.modem]\nports = [\"/dev/x\"]\n{keys}"))
    };
    // A quote would end the AT+CPIN argument early.
    let e = check(&modem("pin = \"12\\\"4\"\nretry_secs = 0")).unwrap_err().to_string();
    assert!(e.contains("routes[0].modem.pin") && e.contains("retry_secs"), "{e}");
    let l = check(&modem("pin = \"0042\"")).unwrap();
    assert_eq!(l.config.routes[0].spec.modem().unwrap().retry_secs, 60);
}

#[test]
fn scopes_default_to_full_access_only_in_a_file_without_any() {
    let l = check(MIN).unwrap();
    assert_eq!(l.keys[0].scopes, BTreeSet::from([Scope::Admin]));
    assert!(l.notes.iter().any(|n| n.contains("scopes")), "{:?}", l.notes);
    let two = format!("{MIN}[[api_keys]]\nname = \"prom\"\nkey = \"fedcba9876543210\"\nscopes = [\"metrics\"]\n");
    let l = check(&two).unwrap();
    assert_eq!(l.keys[0].scopes, BTreeSet::from(DEFAULT_SCOPES));
    assert_eq!(l.keys[1].scopes, BTreeSet::from([Scope::Metrics]));
    assert!(l.notes.is_empty(), "{:?}", l.notes);
}

#[test]
fn bad_scopes_and_limits_are_named() {
    let text = MIN.replace(
        "key = \"0123456789abcdef\"",
        "key = \"0123456789abcdef\"\nscopes = [\"send\", \"write\"]\nburst = 0\ndaily_quota = 0\nrate_per_sec = -1",
    );
    let e = check(&text).unwrap_err().to_string();
    for needle in [
        "api_keys[0].scopes[1]",
        "\"write\"",
        "api_keys[0].burst",
        "api_keys[0].daily_quota",
        "api_keys[0].rate_per_sec",
    ] {
        assert!(e.contains(needle), "{needle} not in:\n{e}");
    }
    let empty = MIN.replace("key = \"0123456789abcdef\"", "key = \"0123456789abcdef\"\nscopes = []");
    assert!(check(&empty).unwrap_err().to_string().contains("api_keys[0].scopes"));
}

#[test]
fn secrets_never_print() {
    let text = MIN.replace(
        "kind = \"sim\"",
        "kind = \"smpp\"\n[routes.smpp]\nhost = \"h\"\nsystem_id = \"u\"\npassword = \"pw7x2qzk\"",
    );
    let l = check(&text).unwrap();
    let shown = format!("{l:?} {}", serde_json::to_string(&l.config.routes[0].spec.smpp().unwrap().password).unwrap());
    assert!(!shown.contains("pw7x2qzk") && !shown.contains("0123456789abcdef"), "{shown}");
    assert_eq!(l.config.routes[0].spec.smpp().unwrap().password.as_ref().unwrap().expose(), "pw7x2qzk");
}

#[test]
fn prefixes_choose_routes() {
    let l = check(&MIN.replace("kind = \"sim\"", "kind = \"sim\"\nprefixes = [\"+7\"]")).unwrap();
    assert!(l.config.routes[0].serves("+79161234567"));
    assert!(!l.config.routes[0].serves("+4915112345678"));
}

#[test]
fn a_table_for_another_kind_is_named() {
    let text = MIN.replace(
        "kind = \"sim\"",
        "kind = \"smpp\"\n[routes.smpp]\nhost = \"h\"\nsystem_id = \"u\"\n[routes.modem]\nports = [\"/dev/x\"]",
    );
    let e = check(&text).unwrap_err().to_string();
    assert!(e.contains("routes[0].modem: only for kind = \"modem\"; this route is smpp"), "{e}");
    let e = check(&MIN.replace("kind = \"sim\"", "kind = \"modem\"")).unwrap_err().to_string();
    assert!(e.contains("routes[0].modem: kind = \"modem\" needs a [routes.modem] table"), "{e}");
}

#[test]
fn a_bad_key_in_a_route_is_named() {
    let e = check(&format!("{MIN}bogus = 1\n")).unwrap_err().to_string();
    assert!(e.contains("routes[0]: unknown field `bogus`"), "{e}");
    let smpp =
        |keys: &str| MIN.replace("kind = \"sim\"", &format!("kind = \"smpp\"\n[routes.smpp]\nhost = \"h\"\n{keys}"));
    let e = check(&smpp("system_id = \"u\"\nwindow = \"x\"")).unwrap_err().to_string();
    assert!(e.contains("routes[0].smpp.window: invalid type"), "{e}");
    let e = check(&smpp("")).unwrap_err().to_string();
    assert!(e.contains("routes[0].smpp: missing field `system_id`"), "{e}");
    let e = check(&MIN.replace("kind = \"sim\"", "kind = \"fax\"")).unwrap_err().to_string();
    assert!(e.contains("routes[0]: unknown variant `fax`"), "{e}");
    let e = check(&format!("{MIN}[routes.sim]\nbogus = 1\n")).unwrap_err().to_string();
    assert!(e.contains("routes[0].sim.bogus: unknown field `bogus`"), "{e}");
}

mod props {
    use super::*;
    use proptest::prelude::*;

    /// Lines of TOML-ish text: the sections, keys and values a config has, in any order, and
    /// some that are no TOML at all.
    fn toml_ish() -> impl Strategy<Value = String> {
        let header = prop::sample::select(vec![
            "[server]",
            "[store]",
            "[numbers]",
            "[dispatch]",
            "[log]",
            "[[api_keys]]",
            "[[routes]]",
            "[routes.sim]",
            "[routes.smpp]",
            "[routes.modem]",
            "[[routes.modem.prefer]]",
            "[x]",
            "[[",
        ])
        .prop_map(String::from);
        let key = prop::sample::select(vec![
            "listen",
            "max_body_bytes",
            "max_batch",
            "max_segments",
            "path",
            "default_region",
            "max_attempts",
            "retry_base_ms",
            "retry_max_ms",
            "level",
            "name",
            "key",
            "key_file",
            "kind",
            "prefixes",
            "rate",
            "burst",
            "concurrency",
            "host",
            "system_id",
            "password",
            "password_file",
            "binds",
            "window",
            "tls",
            "tls_ca_file",
            "ports",
            "pin",
            "profiles_dir",
            "record",
            "fail_fraction",
            "bogus",
        ]);
        let value = prop::sample::select(vec![
            "\"sim\"",
            "\"smpp\"",
            "\"modem\"",
            "\"127.0.0.1:8080\"",
            "\"RU\"",
            "\"0123456789abcdef\"",
            "\"a\"",
            "\"\"",
            "\"/dev/ttyUSB*\"",
            "\"[\"",
            "\"info,x=trace\"",
            "\"k\"",
            "\"1234\"",
            "0",
            "1",
            "-1",
            "300",
            "1e309",
            "nan",
            "inf",
            "0.5",
            "true",
            "[\"+7\", \"x\"]",
            "[]",
            "{}",
            "18446744073709551616",
            "\"../k\"",
        ]);
        let assignment = (key, value).prop_map(|(k, v)| format!("{k} = {v}"));
        let line = prop_oneof![2 => header, 6 => assignment, 1 => "\\PC{0,20}".prop_map(String::from)];
        prop::collection::vec(line, 0..30).prop_map(|lines| lines.join("\n"))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

        /// Any text: a config, or problems that each name the file, and never a panic.
        #[test]
        fn checking_any_text_never_panics(text in prop_oneof![toml_ish(), "\\PC{0,200}"]) {
            if let Some(Err(e)) = check_without_files::<RouteSpec>(&text) {
                prop_assert!(!e.problems.is_empty());
                prop_assert!(e.problems.iter().all(|p| p.starts_with("check.toml: ")), "{:?}", e.problems);
            }
        }

        /// A valid config behind any lines: the generated sections and keys get checked
        /// against a config that otherwise passes.
        #[test]
        fn one_added_line_is_checked(extra in toml_ish()) {
            let text = format!("{extra}\n{MIN}");
            let _ = check_without_files::<RouteSpec>(&text);
        }
    }

    #[test]
    fn absolute_paths_are_not_followed() {
        let text = format!("[store]\npath = \"/var/lib/x.db\"\n{MIN}");
        assert!(check_without_files::<RouteSpec>(&text).is_none());
        assert!(matches!(check_without_files::<RouteSpec>(MIN), Some(Ok(_))));
        let text = MIN.replace("key = \"0123456789abcdef\"", "key_file = \"k\"");
        let e = check_without_files::<RouteSpec>(&text).and_then(Result::err).map(|e| e.problems.join("; "));
        assert!(e.as_deref().is_some_and(|e| e.contains("api_keys[0].key_file")), "{e:?}");
    }
}
