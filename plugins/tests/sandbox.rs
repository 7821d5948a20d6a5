//! Hostile scripts stop at their limit, quickly, with the limit named.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tessera_metadata::{ScriptHook, Value};
use tessera_plugins::{BudgetLimits, Chain, Limits, ScriptError, ScriptHost};

fn failure(h: &ScriptHost, source: &str) -> ScriptError {
    let started = Instant::now();
    let out = run_hook(h, ScriptHook::Action, source, &row(), None, &Chain::start(BudgetLimits::default()));
    assert!(started.elapsed() < Duration::from_secs(5), "{source} ran {:?}", started.elapsed());
    out.failure.unwrap_or_else(|| panic!("`{source}` did not fail: {}", out.result))
}

fn limit_of(e: &ScriptError) -> &'static str {
    match e {
        ScriptError::Limit { limit, .. } => limit,
        other => panic!("not a limit: {other:?}"),
    }
}

#[test]
fn an_endless_loop_stops_at_max_operations() {
    let h = host();
    let e = failure(&h, "loop {}");
    assert_eq!(limit_of(&e), "max_operations");
    assert_eq!(e.to_string(), "the script ran more than 1000000 operations (limit `max_operations`)");
    // A busy loop cannot catch it either.
    let e = failure(&h, "loop { try { loop { } } catch { } }");
    assert_eq!(limit_of(&e), "max_operations");
}

#[test]
fn an_endless_loop_stops_at_the_timeout_when_operations_are_plenty() {
    let h = ScriptHost::new(Limits {
        max_operations: u64::MAX / 2,
        timeout: Duration::from_millis(200),
        ..Limits::default()
    });
    let chain = Chain::start(BudgetLimits { operations: u64::MAX / 2, ..BudgetLimits::default() });
    let started = Instant::now();
    let out = run_hook(&h, ScriptHook::Action, "let x = 0; loop { x += 1; }", &row(), None, &chain);
    let took = started.elapsed();
    let e = out.failure.unwrap();
    assert_eq!(limit_of(&e), "timeout");
    assert_eq!(e.to_string(), "the script ran longer than 200 ms (limit `timeout`)");
    assert!(took >= Duration::from_millis(200) && took < Duration::from_secs(2), "took {took:?}");
    assert!(out.operations > 0);
}

#[test]
fn deep_recursion_stops_at_max_call_depth() {
    let h = host();
    let e = failure(&h, "fn f(x) { f(x + 1) } f(0)");
    assert_eq!(limit_of(&e), "max_call_depth");
    assert!(e.to_string().contains("more than 32 deep"), "{e}");
}

#[test]
fn growing_data_stops_at_its_size_limit() {
    let h = host();
    let e = failure(&h, "let a = [1]; loop { a += a; }");
    assert_eq!(limit_of(&e), "max_array_len");
    let e = failure(&h, r#"let s = "x"; loop { s += s; }"#);
    assert_eq!(limit_of(&e), "max_string_bytes");
    assert!(e.to_string().contains("longer than 1048576 bytes"), "{e}");
    let e = failure(&h, "let m = #{a: 1}; loop { m = #{a: m, b: m}; }");
    assert_eq!(limit_of(&e), "max_map_len");
    let e = failure(&h, r#"let s = "x"; s.pad(10000000, "y"); s"#);
    assert_eq!(limit_of(&e), "max_string_bytes");
}

#[test]
fn deeply_nested_expressions_are_refused_at_compile_time() {
    let h = host();
    let source = format!("{}1{}", "(".repeat(200), ")".repeat(200));
    let err = h.compile(&source).unwrap_err();
    assert!(err.message.contains("max_expr_depth"), "{err}");
    assert_eq!(err.line, 1);
    assert!(h.compile(&format!("{}1{}", "(".repeat(20), ")".repeat(20))).is_ok());
}

#[test]
fn eval_modules_files_and_the_network_are_out_of_reach() {
    let h = host();
    assert_eq!(h.compile(r#"eval("1")"#).unwrap_err().message, "`eval` is not available in scripts");
    assert!(h.compile(r#"let e = "eval"; call(e, "1")"#).is_ok());
    let e = failure(&h, r#"call("eval", "1")"#);
    assert!(matches!(e, ScriptError::Runtime { .. }), "{e:?}");
    let err = h.compile(r#"import "x" as y;"#).unwrap_err();
    assert_eq!(err.message, "`import` is not available in scripts: they cannot load modules");
    assert!(h.compile(r#"import "/etc/passwd" as p; p::x"#).is_err());
    for source in
        [r#"open_file("/etc/passwd")"#, r#"read_file("/etc/passwd")"#, r#"http_get("http://x")"#, r#"system("ls")"#]
    {
        let e = failure(&h, source);
        assert!(e.to_string().contains("Function not found"), "{source}: {e}");
    }
}

#[test]
fn errors_never_escape_as_panics() {
    let h = host();
    for source in [
        "throw 42",
        r#"throw #{code: "x"}"#,
        "1 / 0",
        "9223372036854775807 + 1",
        "79228162514264337593543950335.0 * 10",
        "let a = []; a[5]",
        "decimal(())",
        "round_money(())",
        r#"Fn("nope").call()"#,
        "record.amount.foo",
        "let x; x.y.z = 1;",
    ] {
        let e = failure(&h, source);
        assert!(matches!(e, ScriptError::Runtime { .. }), "{source}: {e:?}");
    }
    let e = failure(&h, "throw \"custom message\"");
    assert_eq!(e, ScriptError::Runtime { message: "custom message".into(), position: Some((1, 1)) });
}

#[test]
fn a_hostile_rule_in_a_save_is_a_record_issue_naming_the_script_and_limit() {
    let h = host();
    let mut object = deal();
    object.scripts = vec![
        script("spin", ScriptHook::Validate, 0, "loop {}"),
        script("after_spin", ScriptHook::Validate, 1, r#"error("name", "still checked")"#),
    ];
    let out = save(&h, &object, &row(), None, &Chain::start(BudgetLimits::default()));
    assert_eq!(out.issues.len(), 2, "{:?}", out.issues);
    assert_eq!(out.issues[0].field, "");
    assert!(out.issues[0].message.contains("VALIDATE script `spin` failed"), "{}", out.issues[0].message);
    assert!(out.issues[0].message.contains("`max_operations`"), "{}", out.issues[0].message);
    assert_eq!(out.issues[1].field, "name");
    assert!(out.operations > 1_000_000);
}

#[test]
fn a_runaway_script_does_not_hold_up_other_threads() {
    let h = Arc::new(ScriptHost::new(Limits {
        max_operations: u64::MAX / 2,
        timeout: Duration::from_millis(1_500),
        ..Limits::default()
    }));
    let hostile = {
        let h = h.clone();
        std::thread::spawn(move || {
            let chain = Chain::start(BudgetLimits { operations: u64::MAX / 2, ..BudgetLimits::default() });
            run_hook(&h, ScriptHook::Action, "loop {}", &row(), None, &chain)
        })
    };
    // While the loop spins, a normal script on this thread runs to completion, many times.
    std::thread::sleep(Duration::from_millis(50));
    for _ in 0..20 {
        let out = eval(&h, "record.amount * record.quantity");
        assert_eq!(out, serde_json::json!("2469.00"));
    }
    // They finished while the hostile one was still spinning.
    assert!(!hostile.is_finished(), "the hostile script should still be running");
    let out = hostile.join().unwrap();
    assert_eq!(out.failure.map(|e| limit_of(&e)), Some("timeout"));
}

#[test]
fn the_record_input_is_never_modified_by_a_failed_before_save() {
    let h = host();
    let mut object = deal();
    object.scripts = vec![script("half", ScriptHook::BeforeSave, 0, r#"record.name = "changed"; throw "stop";"#)];
    let out = save(&h, &object, &row(), None, &Chain::start(BudgetLimits::default()));
    assert!(!out.changes.contains_key("name"), "{:?}", out.changes);
    assert_eq!(out.issues.len(), 1);
    assert!(out.issues[0].message.contains("BEFORE_SAVE script `half` failed: line 1, column"), "{:?}", out.issues);
    assert_eq!(row().get("name"), Some(&Value::Text("Big deal".into())));
}
