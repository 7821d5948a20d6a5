//! What each hook may do, through `save` (the write path) and `run`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::json;
use tessera_metadata::{FieldType, IssueCode, ScriptHook, Value};
use tessera_plugins::{BudgetLimits, Chain, RunInput, ScriptError};

fn chain() -> Chain {
    Chain::start(BudgetLimits::default())
}

fn issues(out: &tessera_plugins::SaveOutcome) -> Vec<(String, String)> {
    assert!(out.issues.iter().all(|i| i.code == IssueCode::Script), "{:?}", out.issues);
    out.issues.iter().map(|i| (i.field.clone(), i.message.clone())).collect()
}

#[test]
fn validate_rules_report_field_errors_and_rejections() {
    let h = host();
    let mut object = deal();
    object.scripts = vec![
        script("max_amount", ScriptHook::Validate, 0, r#"if record.amount > 1000 { error("amount", "at most 1000") }"#),
        script("no_lost", ScriptHook::Validate, 1, r#"if record.stage == "lost" { reject("lost deals are closed") }"#),
        script("fine", ScriptHook::Validate, 2, r#"if record.quantity > 100 { error("quantity", "too many") }"#),
    ];
    let mut record = row();
    let out = save(&h, &object, &record, None, &chain());
    assert_eq!(issues(&out), vec![("amount".to_string(), "at most 1000".to_string())]);
    record.insert("amount".into(), Value::Int(100_000));
    record.insert("stage".into(), Value::Text("lost".into()));
    let out = save(&h, &object, &record, None, &chain());
    assert_eq!(issues(&out), vec![(String::new(), "lost deals are closed".to_string())]);
    assert!(out.operations > 0);
}

#[test]
fn validate_rules_cannot_change_the_record() {
    let h = host();
    let mut object = deal();
    object.scripts = vec![script("sneaky", ScriptHook::Validate, 0, "record.amount = 1;")];
    let out = save(&h, &object, &row(), None, &chain());
    assert!(out.changes.is_empty(), "{:?}", out.changes);
    let found = issues(&out);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0, "");
    assert!(found[0].1.contains("VALIDATE script `sneaky` failed"), "{}", found[0].1);
    assert!(found[0].1.to_lowercase().contains("constant"), "{}", found[0].1);
}

#[test]
fn before_save_assignments_become_changes_and_later_scripts_see_them() {
    let h = host();
    let mut object = deal();
    object.scripts = vec![
        script(
            "second",
            ScriptHook::BeforeSave,
            2,
            r#"record.quantity = if record.name == "Renamed" { 5 } else { 0 };"#,
        ),
        script("first", ScriptHook::BeforeSave, 1, r#"record.name = "Renamed"; record.amount = record.amount * 2;"#),
        script(
            "check_total",
            ScriptHook::Validate,
            0,
            r#"if record.total != 12345.00 { error("total", `total is ${record.total}`) }"#,
        ),
    ];
    let out = save(&h, &object, &row(), None, &chain());
    assert!(out.issues.is_empty(), "{:?}", out.issues);
    assert_eq!(out.changes.get("name"), Some(&Value::Text("Renamed".into())));
    assert_eq!(out.changes.get("amount"), Some(&Value::Int(246_900)));
    assert_eq!(out.changes.get("quantity"), Some(&Value::Int(5)));
    // The formula ran over the assigned values: 2469.00 * 5.
    assert_eq!(out.changes.get("total"), Some(&Value::Int(1_234_500)));
    assert_eq!(out.changes.len(), 4, "{:?}", out.changes);
}

#[test]
fn assigning_a_value_back_is_not_a_change() {
    let h = host();
    let mut object = deal();
    object.scripts = vec![
        script("a", ScriptHook::BeforeSave, 0, r#"record.name = "Other"; record.amount = 1234.5;"#),
        script("b", ScriptHook::BeforeSave, 1, r#"record.name = "Big deal";"#),
    ];
    let out = save(&h, &object, &row(), None, &chain());
    assert!(out.issues.is_empty(), "{:?}", out.issues);
    assert!(out.changes.is_empty(), "{:?}", out.changes);
}

#[test]
fn before_save_may_only_assign_writable_fields_with_fitting_values() {
    let h = host();
    let mut object = deal();
    object.scripts = vec![script(
        "bad",
        ScriptHook::BeforeSave,
        0,
        r#"record.total = 1; record.code = "X-1"; record.id = "other"; record.nope = 1; record.account_id = "a2";
           record.amount = 1.005; record.stage = "bogus"; record.quantity = 7;"#,
    )];
    let out = save(&h, &object, &row(), None, &chain());
    let found = issues(&out);
    let on = |f: &str| found.iter().find(|(field, _)| field == f).map(|(_, m)| m.clone()).unwrap_or_default();
    assert!(on("total").contains("formula"), "{found:?}");
    assert!(on("code").contains("AUTO_NUMBER"), "{found:?}");
    assert!(on("id").contains("system field"), "{found:?}");
    assert!(on("nope").contains("no such field"), "{found:?}");
    assert!(on("account_id").contains("`record.account = \"<id>\"`"), "{found:?}");
    assert!(on("amount").starts_with("BEFORE_SAVE script `bad` set `amount` to \"1.005\""), "{found:?}");
    assert!(on("amount").contains("more than 2 digits"), "{found:?}");
    assert!(on("stage").contains("not an option"), "{found:?}");
    assert_eq!(found.len(), 7, "{found:?}");
    // The one fitting assignment goes through.
    assert_eq!(out.changes.get("quantity"), Some(&Value::Int(7)));
    assert_eq!(out.changes.get("total"), Some(&Value::Int(123_450 * 7)));
}

#[test]
fn formulas_run_in_definition_order_round_and_report_failures() {
    let h = host();
    let mut object = deal();
    object.fields.push(formula("third", FieldType::Currency, "record.total / 3"));
    object.fields.push(formula("label", FieldType::Text, r#"record.name + ": " + record.third"#));
    object.fields.push(formula("whole", FieldType::Integer, "record.amount"));
    object.fields.push(formula("broken", FieldType::Integer, "record.name * 2"));
    object.fields.push(formula("wrong_type", FieldType::Date, "42"));
    let out = save(&h, &object, &row(), None, &chain());
    // 2469.00 / 3 = 823.00; 1234.50 rounds half away from zero to 1235.
    assert_eq!(out.changes.get("third"), Some(&Value::Int(82_300)));
    assert_eq!(out.changes.get("label"), Some(&Value::Text("Big deal: 823.00".into())));
    assert_eq!(out.changes.get("whole"), Some(&Value::Int(1235)));
    // `total` already holds 2469.00: not a change.
    assert!(!out.changes.contains_key("total"), "{:?}", out.changes);
    let found = issues(&out);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].0, "broken");
    assert!(found[0].1.starts_with("formula `broken` failed"), "{found:?}");
    assert_eq!(found[1].0, "wrong_type");
    assert!(found[1].1.contains("expected a date"), "{found:?}");
}

#[test]
fn formula_recomputes_one_value() {
    let h = host();
    let object = deal();
    let field = object.field("total").unwrap();
    let compiled = compile(&h, field.formula.as_deref().unwrap());
    let mut record = row();
    record.insert("quantity".into(), Value::Int(3));
    assert_eq!(h.formula(&compiled, &object, field, &record), Ok(Value::Int(370_350)));
    record.insert("amount".into(), Value::Null);
    let err = h.formula(&compiled, &object, field, &record).unwrap_err();
    assert!(matches!(err, ScriptError::Runtime { .. }), "{err:?}");
}

#[test]
fn formulas_and_rules_cannot_call_before_save_or_host_functions() {
    let h = host();
    let mut object = deal();
    object.fields.push(formula("f", FieldType::Integer, r#"error("x", "y"); 1"#));
    object.scripts = vec![script("v", ScriptHook::Validate, 0, r#"find("deal", #{}, 1)"#)];
    let found = issues(&save(&h, &object, &row(), None, &chain()));
    assert!(found[0].1.contains("VALIDATE scripts, not formulas"), "{found:?}");
    assert!(found[1].1.contains("find() is not available in VALIDATE scripts"), "{found:?}");
}

#[test]
fn run_reports_before_save_changes_and_validate_issues() {
    let h = host();
    let out = run_hook(&h, ScriptHook::BeforeSave, r#"record.amount = 10; record.code = "x";"#, &row(), None, &chain());
    assert_eq!(out.failure, None);
    assert_eq!(out.changes.get("amount"), Some(&Value::Int(1_000)));
    assert_eq!(out.change_issues.len(), 1);
    assert_eq!(out.change_issues[0].field, "code");
    let out = run_hook(&h, ScriptHook::Validate, r#"error("amount", "no"); reject("never")"#, &row(), None, &chain());
    assert_eq!(out.issues.len(), 2);
    assert_eq!(out.issues[0].field.as_deref(), Some("amount"));
    assert_eq!(out.issues[0].script, "test_script");
    assert_eq!(out.issues[1].field, None);
    let out = run_hook(&h, ScriptHook::AfterSave, r#"reject("x")"#, &row(), None, &chain());
    let failure = out.failure.map(|e| e.to_string()).unwrap_or_default();
    assert!(failure.contains("reject(message) is for VALIDATE scripts; this is a AFTER_SAVE script"), "{failure}");
}

#[test]
fn actions_get_input_old_and_user_and_return_json() {
    let h = host();
    let object = deal();
    let compiled = compile(
        &h,
        r#"#{ discount: input.discount * record.amount, note: input.note, was: old?.amount, who: user.email,
             roles: user.roles, id: record.id, owner: record.owner_id }"#,
    );
    let chain = chain();
    let input = json!({"discount": 0.1, "note": "hi"});
    let mut old = row();
    old.insert("amount".into(), Value::Int(99));
    let out = h.run(
        &compiled,
        RunInput {
            object: &object,
            script_name: "apply_discount",
            hook: ScriptHook::Action,
            record: &row(),
            old: Some(&old),
            user: &user(),
            input: Some(&input),
            host: None,
            chain: &chain,
        },
    );
    assert_eq!(out.failure, None);
    assert_eq!(
        out.result,
        json!({"discount": "123.450", "note": "hi", "was": "0.99", "who": "ann@example.com",
               "roles": ["sales"], "id": "d1", "owner": "u1"})
    );
    let out = run_hook(&h, ScriptHook::Action, "old", &row(), None, &chain);
    assert_eq!(out.result, json!(null));
}

#[test]
fn print_debug_and_log_go_to_the_logs() {
    let h = host();
    let out = run_hook(
        &h,
        ScriptHook::Action,
        r#"print("a"); debug("b"); log(#{x: 1}); log(2.50); log(3)"#,
        &row(),
        None,
        &chain(),
    );
    assert_eq!(out.failure, None);
    assert_eq!(out.logs.len(), 5, "{:?}", out.logs);
    assert_eq!(out.logs[4], "3");
    assert_eq!(out.logs[0], "a");
    assert!(out.logs[1].contains('b'));
    assert!(out.logs[2].contains("x") && out.logs[2].contains('1'), "{:?}", out.logs);
    assert_eq!(out.logs[3], "2.50");
    let out =
        run_hook(&h, ScriptHook::Action, r#"for i in 0..500 { log("x".pad(5000, "y")) }"#, &row(), None, &chain());
    assert_eq!(out.failure, None);
    assert_eq!(out.logs.len(), 101);
    assert!(out.logs[0].len() <= 1024);
    assert!(out.logs[100].contains("400 more log lines dropped"), "{}", out.logs[100]);
    let mut object = deal();
    object.scripts = vec![script("noisy", ScriptHook::Validate, 0, r#"log("checking")"#)];
    assert_eq!(save(&h, &object, &row(), None, &chain()).logs, vec!["[noisy] checking".to_string()]);
}

#[test]
fn compile_errors_carry_line_and_column() {
    let h = host();
    let err = h.compile("let x = 1;\nlet y = x +;\n").unwrap_err();
    assert_eq!(err.line, 2);
    assert!(err.column >= 11, "{err}");
    // Strict variables: a misspelt name is a compile error, not a silent `()`.
    let err = h.compile("if recrd.amount > 1 { 1 }").unwrap_err();
    assert_eq!((err.line, err.column), (1, 4), "{err}");
    assert!(err.message.contains("recrd"), "{err}");
}

#[test]
fn a_misspelt_field_fails_instead_of_reading_null() {
    let h = host();
    let out = run_hook(&h, ScriptHook::Action, "record.amout > 1", &row(), None, &chain());
    let failure = out.failure.map(|e| e.to_string()).unwrap_or_default();
    assert!(failure.contains("amout"), "{failure}");
    // Absent values of known fields are `()`, and maps can still be probed.
    assert_eq!(
        eval(&h, r#"[record.notes == (), "source" in record.meta, record.meta.get("nope")]"#),
        json!([true, true, null])
    );
}

#[test]
fn compile_object_orders_scripts_and_names_the_one_that_fails() {
    let h = host();
    let mut object = deal();
    let mut inactive = script("off", ScriptHook::Validate, 0, "this does not compile (");
    inactive.active = false;
    object.scripts = vec![
        script("b", ScriptHook::Validate, 1, "1"),
        script("a", ScriptHook::Validate, 1, "1"),
        script("z", ScriptHook::Validate, 0, "1"),
        inactive,
        script("go", ScriptHook::Action, 0, "1"),
        script("after", ScriptHook::AfterSave, 0, "1"),
    ];
    let compiled = h.compile_object(&object).unwrap();
    let names: Vec<&str> = compiled.validate.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["z", "a", "b"]);
    assert!(compiled.actions.contains_key("go"));
    assert_eq!(compiled.after_save.len(), 1);
    assert_eq!(compiled.formulas.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["total"]);
    assert!(compiled.touches_saves());
    object.scripts.push(script("broken", ScriptHook::BeforeSave, 0, "let = 1;"));
    let (name, err) = h.compile_object(&object).unwrap_err();
    assert_eq!(name, "broken");
    assert_eq!(err.line, 1);
    object.scripts.pop();
    object.fields.push(formula("bad_formula", FieldType::Integer, "record.amount +"));
    assert_eq!(h.compile_object(&object).unwrap_err().0, "bad_formula");
}

#[test]
fn an_exhausted_budget_is_reported_instead_of_running() {
    let h = host();
    let mut object = deal();
    object.scripts = vec![script("loop", ScriptHook::Validate, 0, "let i = 0; while i < 100000 { i += 1; }")];
    let chain = Chain::start(BudgetLimits { operations: 50_000, ..BudgetLimits::default() });
    let first = issues(&save(&h, &object, &row(), None, &chain));
    assert_eq!(first.len(), 1);
    assert!(first[0].1.contains("budget `operations`"), "{first:?}");
    let second = issues(&save(&h, &object, &row(), None, &chain));
    assert!(second[0].1.contains("did not run") && second[0].1.contains("operations"), "{second:?}");
}

#[test]
fn before_save_must_assign_fields_not_replace_the_record() {
    let h = host();
    let mut object = deal();
    object.scripts = vec![
        script("replace", ScriptHook::BeforeSave, 0, "record = #{name: \"x\"};"),
        script("remove", ScriptHook::BeforeSave, 0, "record.remove(\"amount\");"),
        script("shadow", ScriptHook::BeforeSave, 1, "let record = #{}; record.name = \"y\";"),
    ];
    let out = save(&h, &object, &row(), None, &chain());
    let found = issues(&out);
    // Replacing the map is refused; a script's own `record` variable is just a variable.
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found.iter().all(|(field, m)| field.is_empty() && m.contains("replaced `record` or removed its keys")));
    assert!(out.changes.is_empty(), "{:?}", out.changes);
}

/// `deal` with its phone sensitive (masked only: masked for some readers all the same).
fn deal_with_sensitive_phone() -> tessera_metadata::ObjectDefinition {
    let mut object = deal();
    object.field_mut("phone").unwrap().sensitive = Some(tessera_metadata::Sensitivity {
        encrypted: false,
        searchable: false,
        mask: tessera_metadata::Mask::Phone,
    });
    object
}

#[test]
fn formulas_see_sensitive_fields_withheld_whatever_key_they_compute() {
    let h = host();
    let source = r#"let k = "ph" + "one"; if record[k] == () { "withheld" } else { record[k] }"#;
    let compiled = compile(&h, source);
    let probe = formula("probe", FieldType::Text, source);
    // Positive control: with the phone not sensitive, the computed key reaches it.
    assert_eq!(h.formula(&compiled, &deal(), &probe, &row()), Ok(Value::Text("+33 1 23 45".into())));
    let mut object = deal_with_sensitive_phone();
    object.fields.push(probe.clone());
    assert_eq!(h.formula(&compiled, &object, &probe, &row()), Ok(Value::Text("withheld".into())));
    // A save withholds it from formulas too (such a formula is suspended before it could
    // run; it is run here as if it had slipped through), while VALIDATE rules still see it.
    let rule = r#"if record.phone != "+33 1 23 45" { reject("no phone") }"#;
    let scripts = tessera_plugins::ObjectScripts {
        formulas: vec![("probe".into(), compiled)],
        validate: vec![("v".into(), compile(&h, rule))],
        ..Default::default()
    };
    let (user, chain) = (user(), chain());
    let out = h.save(
        &scripts,
        tessera_plugins::SaveInput { object: &object, record: &row(), old: None, user: &user, chain: &chain },
    );
    assert_eq!(out.changes.get("probe"), Some(&Value::Text("withheld".into())));
    assert!(out.issues.is_empty(), "VALIDATE saw the phone: {:?}", out.issues);
}

#[test]
fn formulas_that_read_sensitive_fields_are_suspended_and_stored_empty() {
    let h = host();
    let mut object = deal_with_sensitive_phone();
    object.fields.push(formula("dial", FieldType::Text, r#""tel:" + record.phone"#));
    object.fields.push(formula("after_dial", FieldType::Text, r#"if record.dial == () { "none" } else { "some" }"#));
    let found = h.sensitive_formulas(&object);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0].formula.as_str(), found[0].reads.as_slice(), found[0].whole_record),
        ("dial", &["phone".to_string()][..], false)
    );
    let mut record = row();
    record.insert("dial".into(), Value::Text("tel:+33 1 23 45".into()));
    let out = save(&h, &object, &record, None, &chain());
    assert!(out.issues.is_empty(), "{:?}", out.issues);
    assert_eq!(out.changes.get("dial"), Some(&Value::Null), "the laundered copy is emptied");
    assert_eq!(out.changes.get("after_dial"), Some(&Value::Text("none".into())));
}
