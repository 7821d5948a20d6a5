//! casbin's storage `Adapter` over Tessera's own `sys_policy_rules`, through the store (the
//! published adapters target older sea-orm versions). Every write is one transaction of the
//! store that also bumps the access version.

use async_trait::async_trait;
use casbin::error::AdapterError;
use casbin::{Adapter, Filter, Model};

use crate::store::{PolicyChange, PolicyChangeEffect, PolicyRule, PolicyRuleFilter, Store, StoreError};

/// Loads and saves casbin rules in the database. It can start from rules already read (inside
/// the transaction that wrote them), so an enforcer can be built before that transaction
/// commits; later loads read the database again.
pub(super) struct PolicyRulesAdapter {
    store: Store,
    preloaded: Option<Vec<PolicyRule>>,
    filtered: bool,
}

impl PolicyRulesAdapter {
    pub(super) fn new(store: Store) -> PolicyRulesAdapter {
        PolicyRulesAdapter { store, preloaded: None, filtered: false }
    }

    /// An adapter whose first load yields `rules` instead of reading the database.
    pub(super) fn with_rules(store: Store, rules: Vec<PolicyRule>) -> PolicyRulesAdapter {
        PolicyRulesAdapter { store, preloaded: Some(rules), filtered: false }
    }

    async fn rules(&mut self) -> casbin::Result<Vec<PolicyRule>> {
        match self.preloaded.take() {
            Some(rules) => Ok(rules),
            None => self.store.policy_rules().await.map_err(adapter_error),
        }
    }

    /// Applies a change; with `exact`, only if it removes or adds every rule it names (casbin's
    /// batch calls are all-or-nothing). Returns whether it changed anything.
    async fn apply(&self, change: PolicyChange, exact: Option<u64>) -> casbin::Result<bool> {
        let outcome = self
            .store
            .change_policy_rules(&change, |effect: &PolicyChangeEffect| {
                let changed = effect.removed + effect.added;
                let complete = exact.is_none_or(|n| changed == n);
                async move { if complete { Ok(changed > 0) } else { Err(()) } }
            })
            .await
            .map_err(adapter_error)?;
        Ok(outcome.is_ok_and(|(changed, _)| changed))
    }
}

fn adapter_error(e: StoreError) -> casbin::Error {
    AdapterError(Box::new(e)).into()
}

/// The section of a rule type: `p` for `p`, `p2`…, `g` for `g`, `g2`….
fn section(ptype: &str) -> &str {
    ptype.get(..1).unwrap_or_default()
}

fn model_rules(m: &dyn Model) -> Vec<PolicyRule> {
    let mut rules = Vec::new();
    for sec in ["p", "g"] {
        let Some(assertions) = m.get_model().get(sec) else { continue };
        for (ptype, assertion) in assertions {
            rules.extend(assertion.get_policy().iter().map(|values| PolicyRule::new(ptype.as_str(), values.iter())));
        }
    }
    rules
}

/// casbin's filter convention: a rule matches when each non-empty value of the filter equals
/// the rule's value at the same position, counting from `offset`.
fn matches_filter(values: &[String], offset: usize, filter: &[impl AsRef<str>]) -> bool {
    filter.iter().enumerate().all(|(i, want)| {
        let want = want.as_ref();
        want.is_empty() || values.get(offset + i).is_some_and(|v| v == want)
    })
}

#[async_trait]
impl Adapter for PolicyRulesAdapter {
    async fn load_policy(&mut self, m: &mut dyn Model) -> casbin::Result<()> {
        self.filtered = false;
        for rule in self.rules().await? {
            m.add_policy(section(&rule.ptype), &rule.ptype, rule.values);
        }
        Ok(())
    }

    async fn load_filtered_policy<'a>(&mut self, m: &mut dyn Model, f: Filter<'a>) -> casbin::Result<()> {
        let mut filtered = false;
        for rule in self.rules().await? {
            let sec = section(&rule.ptype);
            let keep = match sec {
                "p" => matches_filter(&rule.values, 0, &f.p),
                "g" => matches_filter(&rule.values, 0, &f.g),
                _ => true,
            };
            if keep {
                m.add_policy(sec, &rule.ptype, rule.values);
            } else {
                filtered = true;
            }
        }
        self.filtered = filtered;
        Ok(())
    }

    async fn save_policy(&mut self, m: &mut dyn Model) -> casbin::Result<()> {
        let change = PolicyChange { remove: vec![PolicyRuleFilter::all()], add: model_rules(m) };
        self.apply(change, None).await.map(|_| ())
    }

    async fn clear_policy(&mut self) -> casbin::Result<()> {
        self.apply(PolicyChange { remove: vec![PolicyRuleFilter::all()], add: Vec::new() }, None).await.map(|_| ())
    }

    fn is_filtered(&self) -> bool {
        self.filtered
    }

    async fn add_policy(&mut self, _sec: &str, ptype: &str, rule: Vec<String>) -> casbin::Result<bool> {
        self.apply(PolicyChange { remove: Vec::new(), add: vec![PolicyRule::new(ptype, rule)] }, None).await
    }

    async fn add_policies(&mut self, _sec: &str, ptype: &str, rules: Vec<Vec<String>>) -> casbin::Result<bool> {
        let add: Vec<PolicyRule> = rules.into_iter().map(|r| PolicyRule::new(ptype, r)).collect();
        let count = add.len() as u64;
        self.apply(PolicyChange { remove: Vec::new(), add }, Some(count)).await
    }

    async fn remove_policy(&mut self, _sec: &str, ptype: &str, rule: Vec<String>) -> casbin::Result<bool> {
        let remove = vec![PolicyRuleFilter::exact(&PolicyRule::new(ptype, rule))];
        self.apply(PolicyChange { remove, add: Vec::new() }, None).await
    }

    async fn remove_policies(&mut self, _sec: &str, ptype: &str, rules: Vec<Vec<String>>) -> casbin::Result<bool> {
        let remove: Vec<PolicyRuleFilter> =
            rules.into_iter().map(|r| PolicyRuleFilter::exact(&PolicyRule::new(ptype, r))).collect();
        let count = remove.len() as u64;
        self.apply(PolicyChange { remove, add: Vec::new() }, Some(count)).await
    }

    async fn remove_filtered_policy(
        &mut self,
        _sec: &str,
        ptype: &str,
        field_index: usize,
        field_values: Vec<String>,
    ) -> casbin::Result<bool> {
        let mut filter = PolicyRuleFilter::ptype(ptype);
        for (i, value) in field_values.into_iter().enumerate() {
            if !value.is_empty() {
                filter = filter.value(field_index + i, value);
            }
        }
        self.apply(PolicyChange { remove: vec![filter], add: Vec::new() }, None).await
    }
}
