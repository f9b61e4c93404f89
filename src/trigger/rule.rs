//! A rule as written (`RuleSpec`, the same shape in the config file's
//! `[[rules]]` and in `/v1/rules`) and as compiled (`Rule`: durations read,
//! templates parsed, every problem named by its field).

use super::duration;
use super::template::Template;
use crate::message::{Millis, Priority};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Default time a due step may still go out.
pub const DEFAULT_VALID_FOR: Millis = 86_400_000;
/// Steps one rule may have.
pub const MAX_STEPS: usize = 10;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// `[a-z0-9._-]`, 1 to 64 characters; unique.
    pub name: String,
    /// The event type that starts the rule.
    pub on: String,
    /// Conditions on the event's `data`; all must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<Condition>,
    /// Event types that cancel the rule's pending steps for the same key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cancel_on: Vec<String>,
    /// The class of its steps unless a step says otherwise.
    #[serde(default = "promotional")]
    pub class: Priority,
    /// The route its messages take; by the number's prefix when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// The sender id its messages carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// How long a due step may still go out (default 24h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_for: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<Limit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallback>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<Goal>,
    #[serde(default = "yes")]
    pub enabled: bool,
    pub steps: Vec<StepSpec>,
}

fn promotional() -> Priority {
    Priority::Promotional
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// Delay from the event's `occurred_at` (default `0s`).
    #[serde(default = "zero")]
    pub after: String,
    /// The template of the text.
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<Priority>,
}

fn zero() -> String {
    "0s".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// A dotted path into `data` (`cart.total`).
    pub field: String,
    pub op: Op,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub value: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    In,
    Exists,
}

/// How often the rule may start: once per key ever, or once per key or
/// recipient within a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    pub per: LimitPer,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LimitPer {
    Key,
    Recipient,
}

/// Send only if none of `reaction` arrives for the key within `within`:
/// every step waits at least that long, and a reaction cancels it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Fallback {
    pub within: String,
    pub reaction: Vec<String>,
}

/// A conversion: an event of type `event` for the same key (or recipient)
/// within `within` after a message of the rule went out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Goal {
    pub event: String,
    pub within: String,
}

/// A problem with a rule, named by its field (`steps[1].after`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleProblem {
    pub field: String,
    pub message: String,
}

/// A rule ready to match events.
#[derive(Debug, Clone)]
pub struct Rule {
    pub spec: RuleSpec,
    pub steps: Vec<Step>,
    pub valid_for: Millis,
    pub limit: Option<(LimitPer, Option<Millis>)>,
    /// Event types that cancel pending steps: `cancel_on` and the fallback's reactions.
    pub cancels: Vec<String>,
    pub goal: Option<(String, Millis)>,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub after: Millis,
    pub template: Template,
    pub class: Priority,
}

pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// An event type: 1 to 64 printable ASCII characters without spaces.
pub fn valid_event_type(t: &str) -> bool {
    (1..=64).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_graphic())
}

impl Rule {
    /// Check and compile `spec`; every problem is reported, each naming its field.
    pub fn compile(spec: RuleSpec) -> Result<Rule, Vec<RuleProblem>> {
        let mut problems = Vec::new();
        let mut bad = |field: &str, message: String| problems.push(RuleProblem { field: field.into(), message });
        if !valid_name(&spec.name) {
            bad("name", format!("{:?}: use 1 to 64 of a-z, 0-9, '.', '_', '-'", spec.name));
        }
        if !valid_event_type(&spec.on) {
            bad("on", format!("{:?} is not an event type (1 to 64 printable characters, no spaces)", spec.on));
        }
        for (i, t) in spec.cancel_on.iter().enumerate() {
            if !valid_event_type(t) {
                bad(&format!("cancel_on[{i}]"), format!("{t:?} is not an event type"));
            }
        }
        for (i, c) in spec.when.iter().enumerate() {
            if c.field.is_empty() || c.field.split('.').any(str::is_empty) {
                bad(
                    &format!("when[{i}].field"),
                    format!("{:?} is not a path into data (such as \"cart.total\")", c.field),
                );
            }
            match (c.op, &c.value) {
                (Op::Exists, _) => {}
                (_, None) => bad(&format!("when[{i}].value"), "is needed for this op".into()),
                (Op::In, Some(v)) if !v.is_array() => {
                    bad(&format!("when[{i}].value"), "must be a list for op \"in\"".into())
                }
                (Op::Gt | Op::Gte | Op::Lt | Op::Lte, Some(v)) if !v.is_number() && !v.is_string() => {
                    bad(&format!("when[{i}].value"), "must be a number or a string to compare".into())
                }
                _ => {}
            }
        }
        let read = |problems: &mut Vec<RuleProblem>, field: &str, text: &str| match duration::parse(text) {
            Ok(ms) => Some(ms),
            Err(e) => {
                problems.push(RuleProblem { field: field.into(), message: e.to_string() });
                None
            }
        };
        let valid_for = match &spec.valid_for {
            Some(t) => read(&mut problems, "valid_for", t).unwrap_or(DEFAULT_VALID_FOR),
            None => DEFAULT_VALID_FOR,
        };
        if valid_for == 0 {
            problems.push(RuleProblem { field: "valid_for".into(), message: "must be more than 0s".into() });
        }
        let limit = spec.limit.as_ref().map(|l| {
            let within = l.within.as_deref().and_then(|t| read(&mut problems, "limit.within", t));
            (l.per, within)
        });
        let mut cancels = spec.cancel_on.clone();
        let mut wait = 0;
        if let Some(f) = &spec.fallback {
            wait = read(&mut problems, "fallback.within", &f.within).unwrap_or(0);
            if f.reaction.is_empty() {
                problems.push(RuleProblem {
                    field: "fallback.reaction".into(),
                    message: "needs at least one event type".into(),
                });
            }
            for (i, t) in f.reaction.iter().enumerate() {
                if !valid_event_type(t) {
                    problems.push(RuleProblem {
                        field: format!("fallback.reaction[{i}]"),
                        message: format!("{t:?} is not an event type"),
                    });
                }
            }
            cancels.extend(f.reaction.iter().cloned());
        }
        cancels.sort();
        cancels.dedup();
        let goal = spec.goal.as_ref().and_then(|g| {
            if !valid_event_type(&g.event) {
                problems.push(RuleProblem {
                    field: "goal.event".into(),
                    message: format!("{:?} is not an event type", g.event),
                });
            }
            read(&mut problems, "goal.within", &g.within).map(|w| (g.event.clone(), w))
        });
        if spec.steps.is_empty() {
            problems.push(RuleProblem { field: "steps".into(), message: "needs at least one step".into() });
        }
        if spec.steps.len() > MAX_STEPS {
            problems.push(RuleProblem { field: "steps".into(), message: format!("at most {MAX_STEPS} steps") });
        }
        let mut steps = Vec::new();
        for (i, s) in spec.steps.iter().enumerate() {
            let after = read(&mut problems, &format!("steps[{i}].after"), &s.after).unwrap_or(0);
            let template = match Template::compile(&s.text) {
                Ok(t) => Some(t),
                Err(e) => {
                    problems.push(RuleProblem { field: format!("steps[{i}].text"), message: e.to_string() });
                    None
                }
            };
            if s.text.trim().is_empty() {
                problems.push(RuleProblem { field: format!("steps[{i}].text"), message: "must not be empty".into() });
            }
            if let Some(template) = template {
                steps.push(Step { after: after.max(wait), template, class: s.class.unwrap_or(spec.class) });
            }
        }
        if let Some(w) = steps.windows(2).position(|w| w[1].after < w[0].after) {
            problems.push(RuleProblem {
                field: format!("steps[{}].after", w + 1),
                message: "must not be earlier than the step before it".into(),
            });
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Rule { spec, steps, valid_for, limit, cancels, goal })
    }

    /// Whether the event's `data` meets every condition.
    pub fn matches(&self, data: &Value) -> bool {
        self.spec.when.iter().all(|c| c.holds(data))
    }
}

impl Condition {
    fn holds(&self, data: &Value) -> bool {
        let found = self.field.split('.').try_fold(data, |v, k| v.get(k));
        let Some(found) = found.filter(|v| !v.is_null()) else { return false };
        let Some(want) = &self.value else { return self.op == Op::Exists };
        match self.op {
            Op::Exists => true,
            Op::Eq => same(found, want),
            Op::Ne => !same(found, want),
            Op::In => want.as_array().is_some_and(|l| l.iter().any(|w| same(found, w))),
            Op::Gt => compare(found, want).is_some_and(|o| o.is_gt()),
            Op::Gte => compare(found, want).is_some_and(|o| o.is_ge()),
            Op::Lt => compare(found, want).is_some_and(|o| o.is_lt()),
            Op::Lte => compare(found, want).is_some_and(|o| o.is_le()),
        }
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Equal, reading numbers written as strings as numbers ("1000" = 1000).
fn same(a: &Value, b: &Value) -> bool {
    match (number(a), number(b)) {
        (Some(x), Some(y)) if a.is_number() || b.is_number() => x == y,
        _ => a == b,
    }
}

fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (number(a), number(b)) {
        (Some(x), Some(y)) => x.partial_cmp(&y),
        _ => Some(a.as_str()?.cmp(b.as_str()?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: Value) -> RuleSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn compiles_and_names_every_bad_field() {
        let errs = Rule::compile(spec(json!({
            "name": "Bad Name", "on": "cart abandoned", "valid_for": "soon",
            "when": [{"field": "total", "op": "gt"}],
            "steps": [{"after": "2h", "text": "a"}, {"after": "1h", "text": ""}]
        })))
        .unwrap_err();
        let fields: Vec<_> = errs.iter().map(|p| p.field.as_str()).collect();
        for f in ["name", "on", "valid_for", "when[0].value", "steps[1].text", "steps[1].after"] {
            assert!(fields.contains(&f), "{f} missing from {fields:?}");
        }
    }

    #[test]
    fn fallback_waits_and_cancels_on_reactions() {
        let r = Rule::compile(spec(json!({
            "name": "nudge", "on": "order.shipped", "cancel_on": ["order.cancelled"],
            "fallback": {"within": "30m", "reaction": ["push.opened"]},
            "steps": [{"after": "0s", "text": "x"}, {"after": "2h", "text": "y"}]
        })))
        .unwrap();
        assert_eq!(r.steps[0].after, 1_800_000);
        assert_eq!(r.steps[1].after, 7_200_000);
        assert_eq!(r.cancels, ["order.cancelled", "push.opened"]);
    }

    #[test]
    fn conditions() {
        let r = Rule::compile(spec(json!({
            "name": "big", "on": "cart.abandoned",
            "when": [{"field": "cart.total", "op": "gte", "value": 1000},
                     {"field": "channel", "op": "in", "value": ["web", "app"]},
                     {"field": "email", "op": "exists"}],
            "steps": [{"text": "x"}]
        })))
        .unwrap();
        assert!(r.matches(&json!({"cart": {"total": "1500"}, "channel": "web", "email": "a@b"})));
        assert!(!r.matches(&json!({"cart": {"total": 999}, "channel": "web", "email": "a@b"})));
        assert!(!r.matches(&json!({"cart": {"total": 1000}, "channel": "sms", "email": "a@b"})));
        assert!(!r.matches(&json!({"cart": {"total": 1000}, "channel": "web"})));
    }
}
