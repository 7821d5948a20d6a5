//! What `save()` costs per record with three VALIDATE rules and one formula on a 10-field
//! record. Not a timed assertion: run it to read the figure, in release mode:
//! `cargo test --release -p tessera-plugins --test save_cost -- --ignored --nocapture`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Instant;

use common::*;
use tessera_metadata::{FieldType, ScriptHook, Value};
use tessera_plugins::{BudgetLimits, Chain, SaveInput};

#[test]
#[ignore = "prints a measurement"]
fn save_cost_per_record() {
    let h = host();
    let mut object = deal();
    let keep = ["name", "amount", "quantity", "discount", "stage", "close_date", "won", "email", "account"];
    object.fields.retain(|f| keep.contains(&f.name.as_str()));
    object.fields.push(formula("total", FieldType::Currency, "record.amount * record.quantity"));
    assert_eq!(object.fields.len(), 10);
    object.scripts = vec![
        script("max_amount", ScriptHook::Validate, 0, r#"if record.amount > 1000000 { error("amount", "too big") }"#),
        script(
            "lost_discount",
            ScriptHook::Validate,
            1,
            r#"if record.stage == "lost" && record.discount > 0.5 { reject("no discount on lost deals") }"#,
        ),
        script("positive", ScriptHook::Validate, 2, r#"if record.quantity < 0 { error("quantity", "negative") }"#),
    ];
    let scripts = h.compile_object(&object).unwrap();
    let mut record = row();
    record.retain(|k, _| keep.contains(&k.as_str()) || k == "account_id" || k == "id");
    let n = 10_000;
    let chain = Chain::start(BudgetLimits { operations: u64::MAX / 2, ..BudgetLimits::default() });
    let started = Instant::now();
    let mut changed = 0;
    for i in 0..n {
        record.insert("quantity".into(), Value::Int(i % 7));
        let out =
            h.save(&scripts, SaveInput { object: &object, record: &record, old: None, user: &user(), chain: &chain });
        assert!(out.issues.is_empty(), "{:?}", out.issues);
        changed += out.changes.len();
    }
    let took = started.elapsed();
    assert_eq!(changed, n as usize);
    println!(
        "save(): {:.2} µs per record ({n} records, 3 VALIDATE rules + 1 formula, 10 fields; {} operations in all)",
        took.as_secs_f64() * 1e6 / n as f64,
        chain.budget.operations()
    );
}
