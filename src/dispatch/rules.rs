//! The compiled trigger rules the API evaluates events with: one
//! `Arc<RuleSet>` built from the store's enabled rules and swapped whole
//! after a rule changes (an API write, or the config's rules synced on
//! start and reload).

use super::Dispatcher;
use crate::store::StoreError;
use crate::trigger::{RuleSet, RuleSpec};
use std::sync::Arc;

impl Dispatcher {
    /// The rules in force now.
    pub fn rules(&self) -> Arc<RuleSet> {
        self.rules.read().map(|r| r.clone()).unwrap_or_default()
    }

    /// Read the rules from the store, compile the enabled ones and put
    /// them in force. A stored rule that no longer compiles is left out
    /// and logged. Returns how many are in force.
    pub async fn reload_rules(&self) -> Result<usize, StoreError> {
        let rows = self.store.rules().await?;
        let mut compiled = Vec::new();
        for r in rows.into_iter().filter(|r| r.enabled) {
            let spec: RuleSpec = match serde_json::from_str(&r.spec) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(rule = %r.name, error = %e, "stored rule unreadable; left out");
                    continue;
                }
            };
            match spec.compile() {
                Ok(mut rule) => {
                    rule.spec.enabled = true;
                    compiled.push(rule);
                }
                Err(errs) => {
                    let why = errs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ");
                    tracing::error!(rule = %r.name, error = %why, "stored rule does not compile; left out");
                }
            }
        }
        let set = Arc::new(RuleSet::new(compiled));
        let n = set.rules().len();
        if let Ok(mut r) = self.rules.write() {
            *r = set;
        }
        Ok(n)
    }
}
