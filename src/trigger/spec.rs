//! A rule as it is written: the same structure in the config file's
//! `[[rules]]` and in the `/v1/rules` JSON, checked as a whole so every
//! wrong field is named (`steps[0].after: ...`), and compiled into a
//! [`Rule`](super::Rule) with its durations read and its templates parsed.

use super::condition::Condition;
use super::duration;
use super::template::Template;
use super::{CompiledStep, Rule};
use crate::message::{Millis, Priority};
use serde::{Deserialize, Serialize};

/// How long a due step may still go out when none is given.
pub const DEFAULT_VALID_FOR_MS: Millis = 24 * 3600 * 1000;
/// Most steps in one rule.
pub const MAX_STEPS: usize = 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// `[a-z0-9._-]{1,64}`, unique.
    pub name: String,
    /// The event type that starts it.
    pub on: String,
    /// Conditions on the event's `data`; all must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<Condition>,
    /// Event types that cancel its pending steps for the same key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cancel_on: Vec<String>,
    /// The default class of its steps.
    #[serde(default = "default_class")]
    pub class: Priority,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// How long a due step may still go out (default 24h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_for: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<LimitSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<FallbackSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<GoalSpec>,
    #[serde(default = "yes")]
    pub enabled: bool,
    pub steps: Vec<StepSpec>,
}

fn default_class() -> Priority {
    Priority::Promotional
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// Delay after the event's `occurred_at`.
    pub after: String,
    /// The template.
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<Priority>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Per {
    Key,
    Recipient,
}

/// `{ per = "key" }` (once per key) or `{ per = "recipient", within = "48h" }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    pub per: Per,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<String>,
}

/// Send only if no `reaction` event for the key arrives within `within`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackSpec {
    pub within: String,
    pub reaction: Vec<String>,
}

/// Conversions: a `event` for the same key within `within` after a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoalSpec {
    pub event: String,
    pub within: String,
}

/// One wrong field of a rule: its path inside the rule (`steps[0].after`)
/// and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    pub field: String,
    pub message: String,
}

/// A rule's name: `[a-z0-9._-]{1,64}`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// An event type: 1 to 128 visible ASCII characters without spaces.
pub fn valid_event_type(t: &str) -> bool {
    !t.is_empty() && t.len() <= 128 && t.bytes().all(|b| b.is_ascii_graphic())
}

impl RuleSpec {
    /// The rule ready to evaluate, or every field that is wrong.
    pub fn compile(&self) -> Result<Rule, Vec<SpecError>> {
        let mut errors = Vec::new();
        let mut bad = |field: String, message: String| errors.push(SpecError { field, message });
        if !valid_name(&self.name) {
            bad("name".into(), format!("{:?}: use 1 to 64 of a-z 0-9 . _ -", self.name));
        }
        let event_type = |field: String, t: &str, bad: &mut dyn FnMut(String, String)| {
            if !valid_event_type(t) {
                bad(field, format!("{t:?} is not an event type (1 to 128 visible characters, no spaces)"));
            }
        };
        event_type("on".into(), &self.on, &mut bad);
        for (i, t) in self.cancel_on.iter().enumerate() {
            event_type(format!("cancel_on[{i}]"), t, &mut bad);
            if *t == self.on {
                bad(format!("cancel_on[{i}]"), "a rule cannot be cancelled by the event that starts it".into());
            }
        }
        for (i, c) in self.when.iter().enumerate() {
            if let Some((f, m)) = c.check() {
                bad(format!("when[{i}].{f}"), m);
            }
        }
        let dur = |field: String, s: &str, bad: &mut dyn FnMut(String, String)| match duration::parse(s) {
            Ok(ms) => ms,
            Err(e) => {
                bad(field, e.to_string());
                0
            }
        };
        let valid_for = match &self.valid_for {
            Some(v) => {
                let ms = dur("valid_for".into(), v, &mut bad);
                if ms == 0 && duration::parse(v).is_ok() {
                    bad("valid_for".into(), "must be longer than zero".into());
                }
                ms
            }
            None => DEFAULT_VALID_FOR_MS,
        };
        let limit = self.limit.as_ref().map(|l| {
            let within = l.within.as_ref().map(|w| dur("limit.within".into(), w, &mut bad));
            super::Limit { per: l.per, within_ms: within }
        });
        let fallback = self.fallback.as_ref().map(|f| {
            let w = dur("fallback.within".into(), &f.within, &mut bad);
            if f.reaction.is_empty() {
                bad("fallback.reaction".into(), "needs at least one event type".into());
            }
            for (i, t) in f.reaction.iter().enumerate() {
                event_type(format!("fallback.reaction[{i}]"), t, &mut bad);
            }
            (w, f.reaction.clone())
        });
        let goal = self.goal.as_ref().map(|g| {
            event_type("goal.event".into(), &g.event, &mut bad);
            (g.event.clone(), dur("goal.within".into(), &g.within, &mut bad))
        });
        if let Some(from) = &self.from
            && let Err(why) = crate::message::check_sender(from)
        {
            bad("from".into(), format!("{from:?}: {why}"));
        }
        if self.steps.is_empty() {
            bad("steps".into(), "needs at least one step".into());
        } else if self.steps.len() > MAX_STEPS {
            bad("steps".into(), format!("{} steps; the limit is {MAX_STEPS}", self.steps.len()));
        }
        let mut steps = Vec::new();
        let mut last = 0;
        for (i, s) in self.steps.iter().enumerate() {
            let mut after = dur(format!("steps[{i}].after"), &s.after, &mut bad);
            if after < last {
                bad(format!("steps[{i}].after"), "must not be earlier than the step before it".into());
            }
            last = after;
            if i == 0
                && let Some((w, _)) = &fallback
            {
                // A fallback waits for the reaction window before its first step.
                after = after.max(*w);
            }
            if s.text.trim().is_empty() {
                bad(format!("steps[{i}].text"), "must not be empty".into());
            }
            match Template::compile(&s.text) {
                Ok(t) => steps.push(CompiledStep {
                    after_ms: after,
                    template: t,
                    class: s.class.unwrap_or(self.class),
                    route: s.route.clone().or_else(|| self.route.clone()),
                }),
                Err(e) => bad(format!("steps[{i}].text"), e.to_string()),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut cancel_on = self.cancel_on.clone();
        if let Some((_, reactions)) = &fallback {
            cancel_on.extend(reactions.iter().cloned());
        }
        cancel_on.sort();
        cancel_on.dedup();
        Ok(Rule {
            spec: self.clone(),
            steps,
            valid_for_ms: valid_for,
            limit,
            cancel_on,
            reactions: fallback.map(|(_, r)| r).unwrap_or_default(),
            goal: goal.map(|(event, within_ms)| super::Goal { event, within_ms }),
        })
    }
}
