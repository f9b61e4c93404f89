//! Trigger rules: what a service's event (`POST /v1/events`) makes happen.
//! A rule names the event type it starts on (with optional conditions on the
//! event's `data`), the steps it sends (each a template, a delay, a class and
//! an optional route), the event types that cancel its pending steps for the
//! same key, an optional fallback window, a per-rule limit and the goal event
//! its conversions count. This module is the rules as values: parsed and
//! checked (naming the field), matched against an event and rendered; the
//! store keeps their runs and the messages they make.

pub mod condition;
pub mod duration;
pub mod format;
pub mod spec;
pub mod template;

pub use condition::{Condition, Op};
pub use spec::{FallbackSpec, GoalSpec, LimitSpec, Per, RuleSpec, SpecError, StepSpec};

use crate::message::{Millis, Priority};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// A rule's per-rule limit, compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub per: Per,
    /// Within this long; `None`: ever.
    pub within_ms: Option<Millis>,
}

/// A rule's goal, compiled: conversions are `event`s within `within_ms`
/// after a sent message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Goal {
    pub event: String,
    pub within_ms: Millis,
}

/// One step, compiled.
#[derive(Debug, Clone)]
pub struct CompiledStep {
    /// Delay after the event's `occurred_at` (a fallback's first step
    /// waits at least the reaction window).
    pub after_ms: Millis,
    pub template: template::Template,
    pub class: Priority,
    pub route: Option<String>,
}

/// A rule that compiled: what evaluation and the store work from.
#[derive(Debug, Clone)]
pub struct Rule {
    /// As written (what the API shows).
    pub spec: RuleSpec,
    pub steps: Vec<CompiledStep>,
    pub valid_for_ms: Millis,
    pub limit: Option<Limit>,
    /// Event types that cancel its pending steps for the key: `cancel_on`
    /// and the fallback's reactions.
    pub cancel_on: Vec<String>,
    /// The fallback's reaction types (empty without a fallback).
    pub reactions: Vec<String>,
    pub goal: Option<Goal>,
}

impl Rule {
    pub fn name(&self) -> &str {
        &self.spec.name
    }
}

/// The enabled rules, indexed by event type: which start on it, which it
/// cancels, whose goal it is. Built whole and swapped whole on a change.
#[derive(Debug, Default)]
pub struct RuleSet {
    rules: Vec<Arc<Rule>>,
    starts: HashMap<String, Vec<usize>>,
    cancels: HashMap<String, Vec<usize>>,
    goals: HashMap<String, Vec<usize>>,
}

/// An event as evaluation sees it.
#[derive(Debug, Clone, Copy)]
pub struct EventInput<'a> {
    pub kind: &'a str,
    pub data: &'a Value,
    pub locale: &'a str,
    pub tz: chrono_tz::Tz,
}

/// A step rendered for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// 0-based.
    pub step: u32,
    pub text: String,
    pub after_ms: Millis,
    pub class: Priority,
    pub route: Option<String>,
}

/// One rule an event starts: its steps rendered, or the rule's error
/// (`step 2: variable `code` is missing from the event's data`).
#[derive(Debug, Clone)]
pub struct Start {
    pub rule: Arc<Rule>,
    pub steps: Result<Vec<Rendered>, String>,
}

/// What one event means to the rules.
#[derive(Debug, Clone, Default)]
pub struct Evaluation {
    pub starts: Vec<Start>,
    /// Rules whose pending steps for the event's key it cancels.
    pub cancels: Vec<String>,
    /// Rules whose goal it is: (rule, window).
    pub goals: Vec<(String, Millis)>,
}

impl RuleSet {
    /// The set of `rules` that are enabled.
    pub fn new(rules: impl IntoIterator<Item = Rule>) -> RuleSet {
        let mut set = RuleSet::default();
        for r in rules.into_iter().filter(|r| r.spec.enabled) {
            let i = set.rules.len();
            set.starts.entry(r.spec.on.clone()).or_default().push(i);
            for t in &r.cancel_on {
                set.cancels.entry(t.clone()).or_default().push(i);
            }
            if let Some(g) = &r.goal {
                set.goals.entry(g.event.clone()).or_default().push(i);
            }
            set.rules.push(Arc::new(r));
        }
        set
    }

    pub fn rules(&self) -> &[Arc<Rule>] {
        &self.rules
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Which rules `ev` starts (each with its steps rendered, or its error),
    /// cancels and converts. Pure: the store applies it.
    pub fn evaluate(&self, ev: EventInput<'_>) -> Evaluation {
        let pick = |m: &HashMap<String, Vec<usize>>| -> Vec<Arc<Rule>> {
            m.get(ev.kind).map(|v| v.iter().map(|&i| self.rules[i].clone()).collect()).unwrap_or_default()
        };
        let starts = pick(&self.starts)
            .into_iter()
            .filter(|r| r.spec.when.iter().all(|c| c.holds(ev.data)))
            .map(|rule| {
                let steps = rule
                    .steps
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        let text =
                            s.template.render(ev.data, ev.locale, ev.tz).map_err(|e| format!("step {}: {e}", i + 1))?;
                        Ok(Rendered {
                            step: i as u32,
                            text,
                            after_ms: s.after_ms,
                            class: s.class,
                            route: s.route.clone(),
                        })
                    })
                    .collect();
                Start { rule, steps }
            })
            .collect();
        Evaluation {
            starts,
            cancels: pick(&self.cancels).iter().map(|r| r.spec.name.clone()).collect(),
            goals: pick(&self.goals)
                .iter()
                .filter_map(|r| r.goal.as_ref().map(|g| (r.spec.name.clone(), g.within_ms)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests;
