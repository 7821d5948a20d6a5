//! `find`, `create` and `update` through a fake host, and the per-transaction budgets.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::json;
use tessera_metadata::{ScriptHook, Value};
use tessera_plugins::{BudgetLimits, Chain, Host, HostError, HostRecord, Limits, RunInput, ScriptError, ScriptHost};

fn budget_limit(e: &Option<ScriptError>) -> &'static str {
    match e {
        Some(ScriptError::Budget { limit, .. }) => limit,
        other => panic!("not a budget error: {other:?}"),
    }
}

#[test]
fn scripts_find_create_and_update_records() {
    let h = host();
    let fake = FakeHost::new(3);
    let chain = Chain::start(BudgetLimits::default());
    let source = r#"
        let deals = find("deal", #{amount: #{gt: 12.50}, stage: "won", n: 3, none: (), tags: ["a"]}, 10);
        let created = create("deal", #{name: "Follow-up", amount: deals[1].amount + 0.01, colors: ["green"]});
        let updated = update("deal", deals[0].id, #{quantity: 9});
        #{ found: deals.len(), first: deals[0].id, second_amount: deals[1].amount, created: created.id,
           created_amount: created.amount, colors: created.colors, quantity: updated.quantity }
    "#;
    let out = run_hook(&h, ScriptHook::AfterSave, source, &row(), Some(&fake), &chain);
    assert_eq!(out.failure, None);
    assert_eq!(
        out.result,
        json!({"found": 3, "first": "d0", "second_amount": "10.00", "created": "new3", "created_amount": "10.01",
               "colors": ["green"], "quantity": 9})
    );
    let calls = fake.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0], r#"find deal {"amount":{"gt":"12.50"},"n":3,"none":null,"stage":"won","tags":["a"]} 10"#);
    assert!(calls[1].starts_with("create deal {"), "{}", calls[1]);
    assert!(calls[1].contains(r#""amount":"10.01""#), "{}", calls[1]);
    assert_eq!(calls[2], r#"update deal d0 {"quantity":9}"#);
    let stored = fake.records.lock().unwrap();
    assert_eq!(stored[0].1.get("quantity"), Some(&Value::Int(9)));
    assert_eq!(stored[3].1.get("amount"), Some(&Value::Int(1_001)));
}

#[test]
fn host_errors_become_script_errors_with_their_text() {
    let h = host();
    let mut fake = FakeHost::new(1);
    fake.fail = Some(HostError { code: "FORBIDDEN".into(), message: "you may not read `deal`".into() });
    let chain = Chain::start(BudgetLimits::default());
    let out = run_hook(&h, ScriptHook::Action, r#"find("deal", #{}, 5)"#, &row(), Some(&fake), &chain);
    let message = out.failure.map(|e| e.to_string()).unwrap_or_default();
    assert_eq!(message, "line 1, column 1: find() failed: FORBIDDEN: you may not read `deal`");
    // A script may catch a failed call and carry on.
    let out = run_hook(
        &h,
        ScriptHook::Action,
        r#"let r = (); try { create("deal", #{}) } catch (e) { r = `caught: ${e}` } r"#,
        &row(),
        Some(&fake),
        &chain,
    );
    assert_eq!(out.result, json!("caught: create() failed: FORBIDDEN: you may not read `deal`"));
    // An error of the host's own checks (a bad value) too.
    let ok = FakeHost::new(1);
    let out = run_hook(&h, ScriptHook::Action, r#"update("deal", "d0", #{amount: 1.001})"#, &row(), Some(&ok), &chain);
    let message = out.failure.map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("BAD_USER_INPUT: amount: `1.001` has more than 2 digits"), "{message}");
}

#[test]
fn host_functions_need_a_hook_with_the_host_api() {
    let h = host();
    let chain = Chain::start(BudgetLimits::default());
    for hook in [ScriptHook::Validate, ScriptHook::BeforeSave, ScriptHook::AfterSave] {
        let out = run_hook(&h, hook, r#"create("deal", #{name: "x"})"#, &row(), None, &chain);
        let message = out.failure.map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains(&format!("create() is not available in {} scripts", hook.as_str())), "{message}");
    }
    // Handing a host to a rule (a dry run, say) does not give it one.
    let fake = FakeHost::new(1);
    for hook in [ScriptHook::Validate, ScriptHook::BeforeSave] {
        let out = run_hook(&h, hook, r#"find("deal", #{}, 1)"#, &row(), Some(&fake), &chain);
        assert!(out.failure.is_some_and(|e| e.to_string().contains("not available")));
    }
    assert!(fake.calls.lock().unwrap().is_empty());
    // AFTER_SAVE sees the saved record read-only: changes go through update().
    let out = run_hook(&h, ScriptHook::AfterSave, "record.amount = 1;", &row(), Some(&fake), &chain);
    let message = out.failure.map(|e| e.to_string()).unwrap_or_default();
    assert!(message.to_lowercase().contains("constant"), "{message}");
}

#[test]
fn queries_and_writes_are_counted_before_each_call() {
    let h = host();
    let fake = FakeHost::new(2);
    let chain = Chain::start(BudgetLimits { queries: 3, writes: 2, ..BudgetLimits::default() });
    let out =
        run_hook(&h, ScriptHook::Action, r#"for i in 0..5 { find("deal", #{}, 1); }"#, &row(), Some(&fake), &chain);
    assert_eq!(budget_limit(&out.failure), "queries");
    assert_eq!(out.failure.unwrap().to_string(), "more than 3 queries in one transaction (budget `queries`)");
    assert_eq!(fake.calls.lock().unwrap().len(), 3);
    // Budget errors cannot be caught.
    let out = run_hook(
        &h,
        ScriptHook::Action,
        r#"for i in 0..5 { try { create("deal", #{}); } catch { } } "done""#,
        &row(),
        Some(&fake),
        &chain,
    );
    assert_eq!(budget_limit(&out.failure), "writes");
    assert!(out.failure.unwrap().to_string().contains("more than 2 writes"));
    assert_eq!(fake.calls.lock().unwrap().len(), 5);
}

#[test]
fn rows_read_are_counted_and_limits_clamped() {
    // A thousand deals of 20 values each need room for them.
    let h = ScriptHost::new(Limits { max_map_len: 100_000, ..Limits::default() });
    let fake = FakeHost::new(2_000);
    let chain = Chain::start(BudgetLimits { rows_read: 1_500, ..BudgetLimits::default() });
    let out = run_hook(
        &h,
        ScriptHook::Action,
        r#"[find("deal", #{}, 0).len(), find("deal", #{}, 5000).len(), find("deal", #{}, 1000).len()]"#,
        &row(),
        Some(&fake),
        &chain,
    );
    assert_eq!(out.failure, None);
    // 1 (at least one), 1000 (at most 1000), then the 499 rows the budget has left.
    assert_eq!(out.result, json!([1, 1000, 499]));
    let calls = fake.calls.lock().unwrap().clone();
    assert!(calls[0].ends_with(" 1") && calls[1].ends_with(" 1000") && calls[2].ends_with(" 499"), "{calls:?}");
    let out = run_hook(&h, ScriptHook::Action, r#"find("deal", #{}, 1)"#, &row(), Some(&fake), &chain);
    assert_eq!(budget_limit(&out.failure), "rows_read");
    assert!(out.failure.unwrap().to_string().contains("more than 1500 rows read"));
}

#[test]
fn a_find_whose_records_exceed_the_map_limit_says_so() {
    let h = host();
    let fake = FakeHost::new(1_000);
    let chain = Chain::start(BudgetLimits::default());
    let out = run_hook(&h, ScriptHook::Action, r#"find("deal", #{}, 1000).len()"#, &row(), Some(&fake), &chain);
    assert_eq!(
        out.failure.unwrap().to_string(),
        "find(\"deal\") returned 1000 records holding 20000 values, more than the 10000 a script may hold: ask for \
         fewer (limit `max_map_len`)"
    );
    let out = run_hook(&h, ScriptHook::Action, r#"find("deal", #{}, 400).len()"#, &row(), Some(&fake), &chain);
    assert_eq!(out.result, json!(400));
}

#[test]
fn operations_are_budgeted_across_runs_sharing_a_chain() {
    let h = host();
    let chain = Chain::start(BudgetLimits { operations: 20_000, ..BudgetLimits::default() });
    let work = "let i = 0; while i < 1000 { i += 1; } i";
    let first = run_hook(&h, ScriptHook::Action, work, &row(), None, &chain);
    assert_eq!(first.failure, None);
    assert!(first.operations > 1_000 && first.operations < 10_000, "{}", first.operations);
    assert_eq!(chain.budget.operations(), first.operations);
    let second = run_hook(&h, ScriptHook::Action, work, &row(), None, &chain);
    assert_eq!(second.failure, None);
    let third = run_hook(&h, ScriptHook::Action, "loop {}", &row(), None, &chain);
    assert_eq!(budget_limit(&third.failure), "operations");
    assert_eq!(chain.budget.operations(), 20_001);
    let fourth = run_hook(&h, ScriptHook::Action, "1", &row(), None, &chain);
    assert_eq!(budget_limit(&fourth.failure), "operations");
    // Another transaction starts afresh.
    let fresh = run_hook(&h, ScriptHook::Action, work, &row(), None, &Chain::start(BudgetLimits::default()));
    assert_eq!(fresh.failure, None);
}

#[test]
fn wall_time_is_budgeted_per_transaction() {
    let h =
        ScriptHost::new(Limits { max_operations: u64::MAX / 2, timeout: Duration::from_secs(10), ..Limits::default() });
    let chain = Chain::start(BudgetLimits {
        wall: Duration::from_millis(150),
        operations: u64::MAX / 2,
        ..BudgetLimits::default()
    });
    let started = std::time::Instant::now();
    let out = run_hook(&h, ScriptHook::Action, "loop {}", &row(), None, &chain);
    assert_eq!(budget_limit(&out.failure), "wall");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

#[test]
fn triggers_nest_up_to_the_configured_depth() {
    let chain = Chain::start(BudgetLimits { trigger_depth: 2, ..BudgetLimits::default() });
    let one = chain.nested().unwrap();
    assert_eq!(one.depth, 1);
    let two = one.nested().unwrap();
    assert_eq!(two.depth, 2);
    assert!(Arc::ptr_eq(&two.budget, &chain.budget));
    let err = two.nested().unwrap_err();
    assert_eq!(
        err,
        ScriptError::Budget { limit: "trigger_depth", message: "triggers nested more than 2 levels deep".into() }
    );
}

/// A host whose writes run the `AFTER_SAVE` script of the record they write, one level deeper,
/// as the platform does.
struct Trigger {
    scripts: Arc<ScriptHost>,
    inner: FakeHost,
    source: String,
    chain: Mutex<Vec<Chain>>,
    failures: Mutex<Vec<String>>,
}

impl Host for Trigger {
    fn find(&self, object: &str, filter: &serde_json::Value, limit: usize) -> Result<Vec<HostRecord>, HostError> {
        self.inner.find(object, filter, limit)
    }

    fn create(
        &self,
        object: &str,
        values: serde_json::Map<String, serde_json::Value>,
    ) -> Result<HostRecord, HostError> {
        let created = self.inner.create(object, values)?;
        let parent = self.chain.lock().unwrap().last().cloned().unwrap();
        let chain = parent.nested().map_err(|e| HostError { code: "LIMIT".into(), message: e.to_string() })?;
        self.chain.lock().unwrap().push(chain.clone());
        let compiled = self.scripts.compile(&self.source).unwrap();
        let out = self.scripts.run(
            &compiled,
            RunInput {
                object: &self.inner.object,
                script_name: "cascade",
                hook: ScriptHook::AfterSave,
                record: &created.row,
                old: None,
                user: &user(),
                input: None,
                host: Some(self),
                chain: &chain,
            },
        );
        self.chain.lock().unwrap().pop();
        if let Some(e) = out.failure {
            self.failures.lock().unwrap().push(e.to_string());
            return Err(HostError { code: "SCRIPT".into(), message: e.to_string() });
        }
        Ok(created)
    }

    fn update(
        &self,
        object: &str,
        id: &str,
        values: serde_json::Map<String, serde_json::Value>,
    ) -> Result<HostRecord, HostError> {
        self.inner.update(object, id, values)
    }
}

#[test]
fn nested_triggers_share_the_budget_and_stop_at_the_trigger_depth() {
    let scripts = Arc::new(host());
    let source = r#"let n = find("deal", #{}, 2).len(); create("deal", #{name: "child"}); n"#;
    let limits = BudgetLimits { trigger_depth: 3, ..BudgetLimits::default() };
    let chain = Chain::start(limits);
    let trigger = Trigger {
        scripts: scripts.clone(),
        inner: FakeHost::new(1),
        source: source.into(),
        chain: Mutex::new(vec![chain.clone()]),
        failures: Mutex::new(vec![]),
    };
    let out = run_hook(&scripts, ScriptHook::AfterSave, source, &row(), Some(&trigger), &chain);
    // Depths 0..=3 each create a record; the create at depth 3 is refused.
    let failure = out.failure.map(|e| e.to_string()).unwrap_or_default();
    assert!(failure.contains("triggers nested more than 3 levels deep"), "{failure}");
    assert_eq!(trigger.inner.records.lock().unwrap().len(), 1 + 4);
    // Every level's query and write went to the one budget.
    assert_eq!(chain.budget.limits.queries, 100);
    let calls = trigger.inner.calls.lock().unwrap().clone();
    assert_eq!(calls.iter().filter(|c| c.starts_with("find")).count(), 4);
    let again = run_hook(
        &scripts,
        ScriptHook::AfterSave,
        r#"for i in 0..200 { find("deal", #{}, 1) }"#,
        &row(),
        Some(&trigger),
        &chain,
    );
    // 4 queries spent by the cascade, so the 97th of this run is the 101st.
    assert_eq!(budget_limit(&again.failure), "queries");
    assert_eq!(trigger.inner.calls.lock().unwrap().iter().filter(|c| c.starts_with("find")).count(), 100);
}
