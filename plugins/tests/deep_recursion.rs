//! Deep recursion is a script error on every hook, whatever thread calls the host: each entry
//! point runs with the stack its limits can use, here called from threads whose own stack is
//! far too small for that. Run in a release build too:
//! `cargo test --release -p tessera-plugins --test deep_recursion`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use tessera_metadata::{FieldType, IssueCode, ScriptHook};
use tessera_plugins::{BudgetLimits, Chain, ScriptError};

/// Calls nested to `max_call_depth`, each in a body nested as deep as a function body may be.
const DEEP_CALLS: &str = "fn g(y) { y } \
    fn f(x) { if x <= 0 { 0 } else { g(g(g(g(g(g(g(g(g(g(f(x - 1))))))))))) } } \
    f(1000)";

/// A value nested a thousand arrays deep.
const DEEP_VALUE: &str = "let a = []; for i in 0..1000 { a = [a]; } a";

/// Much less stack than a run may use: a test's or a pool's thread that called the host.
const SMALL_STACK: usize = 256 << 10;

fn on_small_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| std::thread::Builder::new().stack_size(SMALL_STACK).spawn_scoped(s, f).unwrap().join())
        .unwrap()
}

fn chain() -> Chain {
    Chain::start(BudgetLimits::default())
}

fn is_call_limit(e: &ScriptError) -> bool {
    matches!(e, ScriptError::Limit { limit: "max_call_depth", .. })
}

#[test]
fn deep_calls_stop_at_max_call_depth_on_every_hook() {
    on_small_stack(|| {
        let h = host();
        for hook in ScriptHook::ALL {
            let fake = FakeHost::new(1);
            let api = hook.has_host_api().then_some(&fake as &dyn tessera_plugins::Host);
            let out = run_hook(&h, hook, DEEP_CALLS, &row(), api, &chain());
            assert!(out.failure.as_ref().is_some_and(is_call_limit), "{hook:?}: {:?}", out.failure);
        }
        for hook in [ScriptHook::BeforeSave, ScriptHook::Validate] {
            let mut object = deal();
            object.scripts = vec![script("deep", hook, 0, DEEP_CALLS)];
            let out = save(&h, &object, &row(), None, &chain());
            assert!(
                out.issues.iter().any(|i| i.code == IssueCode::Script && i.message.contains("max_call_depth")),
                "{hook:?}: {:?}",
                out.issues
            );
        }
        let mut object = deal();
        object.fields.push(formula("deep", FieldType::Integer, DEEP_CALLS));
        let out = save(&h, &object, &row(), None, &chain());
        assert!(
            out.issues.iter().any(|i| i.field == "deep" && i.message.contains("max_call_depth")),
            "{:?}",
            out.issues
        );
        let field = object.field("deep").unwrap().clone();
        let e = h.formula(&compile(&h, DEEP_CALLS), &object, &field, &row()).unwrap_err();
        assert!(is_call_limit(&e), "{e:?}");
    });
}

#[test]
fn values_nested_too_deep_to_store_are_refused_where_they_leave_the_script() {
    on_small_stack(|| {
        let h = host();
        let mut object = deal();
        object.scripts = vec![script("deep", ScriptHook::BeforeSave, 0, &format!("{DEEP_VALUE}; record.meta = a;"))];
        object.fields.push(formula("nested", FieldType::Text, DEEP_VALUE));
        let out = save(&h, &object, &row(), None, &chain());
        for field in ["meta", "nested"] {
            assert!(
                out.issues.iter().any(|i| i.field == field && i.message.contains("more than 64 deep")),
                "{field}: {:?}",
                out.issues
            );
        }
        // A host call's values, and an action's result.
        let fake = FakeHost::new(1);
        let source = format!("{DEEP_VALUE}; update(\"deal\", \"d0\", #{{meta: a}})");
        let out = run_hook(&h, ScriptHook::AfterSave, &source, &row(), Some(&fake), &chain());
        let failure = out.failure.unwrap().to_string();
        assert!(failure.contains("more than 64 deep"), "{failure}");
        let out = run_hook(&h, ScriptHook::Action, DEEP_VALUE, &row(), None, &chain());
        assert!(out.failure.is_none(), "{:?}", out.failure);
    });
}

#[test]
fn nesting_up_to_the_limit_still_converts() {
    let h = host();
    let value = eval(&h, "let a = []; for i in 0..63 { a = [a]; } a");
    let mut depth = 0;
    let mut v = &value;
    while let Some(inner) = v.as_array().and_then(|a| a.first()) {
        depth += 1;
        v = inner;
    }
    assert_eq!(depth, 63);
}
