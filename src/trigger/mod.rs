//! Trigger rules: what a service's event (`POST /v1/events`) makes happen.
//! A rule names the event type it starts on (with optional conditions on the
//! event's `data`), the steps it sends (each a template, a delay, a class and
//! an optional route), the event types that cancel its pending steps for the
//! same key, an optional fallback window, a per-rule limit and the goal event
//! its conversions count. This module is the rules as values: parsed and
//! checked (naming the field), matched against an event and rendered; the
//! store keeps their runs and the messages they make (a pending step is a
//! queued message whose time has not come).

pub mod duration;
pub mod rule;
pub mod template;

pub use rule::{Limit, LimitPer, Rule, RuleProblem, RuleSpec, Step, StepSpec};

use crate::message::Millis;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// The enabled rules, indexed by the event types they react to.
#[derive(Debug, Default)]
pub struct RuleSet {
    rules: Vec<Arc<Rule>>,
    starts: HashMap<String, Vec<usize>>,
    cancels: HashMap<String, Vec<usize>>,
    goals: HashMap<String, Vec<usize>>,
}

/// What one event does: the rules it starts (each with its steps' texts, or
/// the error that stops the rule), the rules whose pending steps for the
/// event's key it cancels, and the rules whose goal it is.
#[derive(Debug)]
pub struct Evaluation {
    pub starts: Vec<Start>,
    pub cancels: Vec<String>,
    pub goals: Vec<(String, Millis)>,
}

#[derive(Debug)]
pub struct Start {
    pub rule: Arc<Rule>,
    /// One text per step, or why the rule cannot send (a missing variable).
    pub texts: Result<Vec<String>, String>,
}

impl RuleSet {
    /// The enabled ones of `rules`.
    pub fn new(rules: Vec<Rule>) -> RuleSet {
        let mut set = RuleSet::default();
        for rule in rules.into_iter().filter(|r| r.spec.enabled) {
            let i = set.rules.len();
            set.starts.entry(rule.spec.on.clone()).or_default().push(i);
            for t in &rule.cancels {
                set.cancels.entry(t.clone()).or_default().push(i);
            }
            if let Some((t, _)) = &rule.goal {
                set.goals.entry(t.clone()).or_default().push(i);
            }
            set.rules.push(Arc::new(rule));
        }
        set
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// What an event of type `kind` with `data` does, texts rendered in
    /// `locale` with dates in `tz`.
    pub fn evaluate(&self, kind: &str, data: &Value, locale: &str, tz: chrono_tz::Tz) -> Evaluation {
        let pick = |m: &HashMap<String, Vec<usize>>| -> Vec<&Arc<Rule>> {
            m.get(kind).map(|v| v.iter().map(|&i| &self.rules[i]).collect()).unwrap_or_default()
        };
        let starts = pick(&self.starts)
            .into_iter()
            .filter(|r| r.matches(data))
            .map(|r| Start { rule: r.clone(), texts: render(r, data, locale, tz) })
            .collect();
        let cancels = pick(&self.cancels).into_iter().map(|r| r.spec.name.clone()).collect();
        let goals = pick(&self.goals)
            .into_iter()
            .filter_map(|r| r.goal.as_ref().map(|(_, w)| (r.spec.name.clone(), *w)))
            .collect();
        Evaluation { starts, cancels, goals }
    }
}

fn render(rule: &Rule, data: &Value, locale: &str, tz: chrono_tz::Tz) -> Result<Vec<String>, String> {
    rule.steps
        .iter()
        .enumerate()
        .map(|(i, s)| match s.template.render(data, locale, tz) {
            Ok(t) if t.trim().is_empty() => Err(format!("step {}: the text is empty", i + 1)),
            Ok(t) => Ok(t),
            Err(e) => Err(format!("step {}: {e}", i + 1)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(v: Value) -> Rule {
        Rule::compile(serde_json::from_value(v).unwrap()).unwrap()
    }

    #[test]
    fn an_event_starts_cancels_and_converts() {
        let set = RuleSet::new(vec![
            rule(json!({"name": "cart", "on": "cart.abandoned", "cancel_on": ["order.paid"],
                        "goal": {"event": "order.paid", "within": "7d"},
                        "steps": [{"after": "1h", "text": "{{ name }}, your cart"}]})),
            rule(json!({"name": "off", "on": "cart.abandoned", "enabled": false, "steps": [{"text": "x"}]})),
        ]);
        assert_eq!(set.len(), 1);
        let e = set.evaluate("cart.abandoned", &json!({"name": "Anna"}), "ru", chrono_tz::UTC);
        assert_eq!(e.starts.len(), 1);
        assert_eq!(e.starts[0].texts, Ok(vec!["Anna, your cart".to_string()]));
        let e = set.evaluate("cart.abandoned", &json!({}), "ru", chrono_tz::UTC);
        assert!(e.starts[0].texts.as_ref().unwrap_err().contains("`name`"));
        let e = set.evaluate("order.paid", &json!({}), "ru", chrono_tz::UTC);
        assert!(e.starts.is_empty());
        assert_eq!(e.cancels, ["cart"]);
        assert_eq!(e.goals, [("cart".to_string(), 7 * 86_400_000)]);
    }
}
