//! Sandbox limits of one script run, and the budget shared by everything one API call sets off.

use std::sync::Arc;
use std::time::Duration;

/// Limits of one script run (the sandbox).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Rhai operations one run may perform.
    pub max_operations: u64,
    /// Depth of nested function calls.
    pub max_call_depth: usize,
    /// Depth of nested expressions (at top level; function bodies get half).
    pub max_expr_depth: usize,
    /// Largest string a script may build, in bytes.
    pub max_string_bytes: usize,
    /// Largest array (elements, nested ones counted).
    pub max_array_len: usize,
    /// Largest object map (entries, nested ones counted).
    pub max_map_len: usize,
    /// Wall-clock time one run may take.
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_operations: 1_000_000,
            max_call_depth: 32,
            max_expr_depth: 64,
            max_string_bytes: 1 << 20,
            max_array_len: 10_000,
            max_map_len: 10_000,
            timeout: Duration::from_millis(1_000),
        }
    }
}

/// Limits of one transaction: one API write or action and every script run, query and write it
/// sets off, however deeply triggers nest (in the spirit of Salesforce's governor limits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetLimits {
    /// `find` calls.
    pub queries: u32,
    /// Records returned by `find` calls, in total.
    pub rows_read: u32,
    /// `create` and `update` calls.
    pub writes: u32,
    /// Rhai operations over all script runs.
    pub operations: u64,
    /// Wall-clock time over all script runs (host calls included).
    pub wall: Duration,
    /// How deep triggers may nest: a write by an `AFTER_SAVE` script whose own `AFTER_SAVE`
    /// writes again is depth 2.
    pub trigger_depth: u32,
}

impl Default for BudgetLimits {
    fn default() -> Self {
        BudgetLimits {
            queries: 100,
            rows_read: 10_000,
            writes: 150,
            operations: 10_000_000,
            wall: Duration::from_secs(10),
            trigger_depth: 5,
        }
    }
}

/// What one transaction has spent so far; shared (thread-safe) by every script run it causes.
#[derive(Debug)]
pub struct Budget {
    pub limits: BudgetLimits,
    // counters: private, atomics
    pub(crate) queries: std::sync::atomic::AtomicU32,
    pub(crate) rows_read: std::sync::atomic::AtomicU32,
    pub(crate) writes: std::sync::atomic::AtomicU32,
    pub(crate) operations: std::sync::atomic::AtomicU64,
    pub(crate) wall_micros: std::sync::atomic::AtomicU64,
}

impl Budget {
    pub fn new(limits: BudgetLimits) -> Arc<Budget> {
        Arc::new(Budget {
            limits,
            queries: Default::default(),
            rows_read: Default::default(),
            writes: Default::default(),
            operations: Default::default(),
            wall_micros: Default::default(),
        })
    }

    /// Operations spent so far over all runs.
    pub fn operations(&self) -> u64 {
        self.operations.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Where a write sits in a chain of triggers: the budget of the transaction that started the
/// chain and how deep it is nested. The platform carries one with each write a script makes.
#[derive(Debug, Clone)]
pub struct Chain {
    pub budget: Arc<Budget>,
    /// 0 for a write made by an API caller, 1 for a write made by its `AFTER_SAVE` or `ACTION`
    /// script, and so on.
    pub depth: u32,
}

impl Chain {
    /// The start of a chain: an API call with a fresh budget.
    pub fn start(limits: BudgetLimits) -> Chain {
        Chain { budget: Budget::new(limits), depth: 0 }
    }

    /// The chain of a write made by a script of this one; refused past `trigger_depth`, with
    /// an error naming the limit.
    pub fn nested(&self) -> Result<Chain, crate::ScriptError> {
        let depth = self.depth + 1;
        if depth > self.budget.limits.trigger_depth {
            return Err(crate::sandbox::budget_error("trigger_depth", &self.budget.limits));
        }
        Ok(Chain { budget: self.budget.clone(), depth })
    }
}
