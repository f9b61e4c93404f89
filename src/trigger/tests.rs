//! Rule specs, checks and evaluation, without a store.

use super::*;
use serde_json::json;

fn spec(v: Value) -> RuleSpec {
    serde_json::from_value(v).unwrap()
}

fn cart() -> RuleSpec {
    spec(json!({
        "name": "cart-reminder", "on": "cart.abandoned", "cancel_on": ["order.paid"],
        "when": [{"field": "total", "op": "gte", "value": 1000}],
        "steps": [{"after": "1h", "text": "{{ name }}, корзина ждёт"},
                  {"after": "24h", "text": "code {{ code }}", "class": "transactional"}]
    }))
}

fn input<'a>(kind: &'a str, data: &'a Value) -> EventInput<'a> {
    EventInput { kind, data, locale: "ru", tz: chrono_tz::UTC }
}

#[test]
fn toml_and_json_are_one_shape() {
    let t: RuleSpec = toml::from_str(
        r#"
name = "cart-reminder"
on = "cart.abandoned"
when = [{ field = "total", op = "gte", value = 1000 }]
cancel_on = ["order.paid"]
[[steps]]
after = "1h"
text = "{{ name }}, корзина ждёт"
[[steps]]
after = "24h"
text = "code {{ code }}"
class = "transactional"
"#,
    )
    .unwrap();
    assert_eq!(t, cart());
    assert!(serde_json::from_value::<RuleSpec>(json!({"name": "x", "on": "a", "steps": [], "colour": 1})).is_err());
}

#[test]
fn compile_names_every_wrong_field() {
    let s = spec(json!({
        "name": "Bad Name", "on": "a", "cancel_on": ["a"], "valid_for": "soon",
        "when": [{"field": "x", "op": "gt"}],
        "limit": {"per": "recipient", "within": "2w"},
        "steps": [{"after": "1h", "text": "x"}, {"after": "30m", "text": " "}]
    }));
    let errs = s.compile().unwrap_err();
    let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        ["name", "cancel_on[0]", "when[0].value", "valid_for", "limit.within", "steps[1].after", "steps[1].text"]
    );
}

#[test]
fn evaluation_starts_cancels_and_converts() {
    let mut goal = cart();
    goal.name = "welcome".into();
    goal.on = "signup".into();
    goal.when.clear();
    goal.cancel_on.clear();
    goal.goal = Some(GoalSpec { event: "order.paid".into(), within: "7d".into() });
    let set = RuleSet::new([cart().compile().unwrap(), goal.compile().unwrap()]);

    let d = json!({"total": 1500, "name": "Анна", "code": "X1"});
    let e = set.evaluate(input("cart.abandoned", &d));
    assert_eq!(e.starts.len(), 1);
    let steps = e.starts[0].steps.as_ref().unwrap();
    assert_eq!(steps[0].text, "Анна, корзина ждёт");
    assert_eq!(steps[0].after_ms, 3_600_000);
    assert_eq!(steps[0].class, Priority::Promotional);
    assert_eq!(steps[1].class, Priority::Transactional);

    // Conditions: too small a cart starts nothing.
    let small = json!({"total": 10, "name": "A", "code": "X"});
    assert!(set.evaluate(input("cart.abandoned", &small)).starts.is_empty());

    // A missing variable is the rule's error, naming the step and variable.
    let partial = json!({"total": 1500, "name": "A"});
    let e = set.evaluate(input("cart.abandoned", &partial));
    let err = e.starts[0].steps.as_ref().unwrap_err();
    assert!(err.starts_with("step 2:") && err.contains("`code`"), "{err}");

    let paid = set.evaluate(input("order.paid", &d));
    assert!(paid.starts.is_empty());
    assert_eq!(paid.cancels, ["cart-reminder"]);
    assert_eq!(paid.goals, [("welcome".to_string(), 7 * 86_400_000)]);
}

#[test]
fn fallback_waits_for_its_window_and_cancels_on_reactions() {
    let mut s = cart();
    s.steps[0].after = "0s".into();
    s.fallback = Some(FallbackSpec { within: "30m".into(), reaction: vec!["push.opened".into()] });
    let r = s.compile().unwrap();
    assert_eq!(r.steps[0].after_ms, 1_800_000);
    assert_eq!(r.cancel_on, ["order.paid", "push.opened"]);
    assert_eq!(r.reactions, ["push.opened"]);
}

#[test]
fn disabled_rules_are_left_out() {
    let mut s = cart();
    s.enabled = false;
    let set = RuleSet::new([s.compile().unwrap()]);
    assert!(set.is_empty());
}
