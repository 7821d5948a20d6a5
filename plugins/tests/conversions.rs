//! Every field type into a script and back, decimal arithmetic and the money helpers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::json;
use tessera_metadata::{ScriptHook, Value};
use tessera_plugins::{BudgetLimits, Chain};

#[test]
fn every_field_type_reaches_the_script_as_documented() {
    let h = host();
    let source = r#"
        let out = #{};
        for key in record.keys() { out[key] = [type_of(record[key]), record[key]]; }
        out
    "#;
    let result = eval(&h, source);
    assert_eq!(
        result,
        json!({
            "id": ["string", "d1"],
            "owner_id": ["string", "u1"],
            "name": ["string", "Big deal"],
            "notes": ["()", null],
            "amount": ["decimal", "1234.50"],
            "quantity": ["i64", 2],
            "discount": ["decimal", "0.3500"],
            "rate": ["decimal", "12.50"],
            "won": ["bool", true],
            "close_date": ["string", "2026-11-25"],
            "closed_at": ["string", "2026-11-25T10:30:00.000Z"],
            "email": ["string", "a@b.co"],
            "phone": ["string", "+33 1 23 45"],
            "site": ["string", "https://x.io"],
            "stage": ["string", "won"],
            "colors": ["array", ["red", "blue"]],
            "account": ["string", "acc1"],
            "code": ["string", "D-0001"],
            "meta": ["map", {"source": "web", "score": 7, "ratio": "0.5"}],
            "total": ["decimal", "2469.00"],
        })
    );
    assert_eq!(eval(&h, "type_of(record.meta.ratio)"), json!("decimal"));
}

#[test]
fn every_writable_field_type_comes_back_from_an_assignment() {
    let h = host();
    let source = r#"
        record.name = "N"; record.notes = "long"; record.amount = 0.10 + 0.20; record.quantity = 7;
        record.discount = 0.1234; record.rate = 5; record.won = false; record.close_date = "2027-01-02";
        record.closed_at = "2027-01-02T03:04:05+02:00"; record.email = "x@y.org"; record.phone = "123";
        record.site = "http://a.b"; record.stage = "lost"; record.colors = ["green", "red", "green"];
        record.account = "acc2"; record.meta = #{a: [1, 2.5, ()], b: true};
    "#;
    let out = run_hook(&h, ScriptHook::BeforeSave, source, &row(), None, &Chain::start(BudgetLimits::default()));
    assert_eq!(out.failure, None);
    assert!(out.change_issues.is_empty(), "{:?}", out.change_issues);
    let c = &out.changes;
    assert_eq!(c["name"], Value::Text("N".into()));
    assert_eq!(c["notes"], Value::Text("long".into()));
    assert_eq!(c["amount"], Value::Int(30));
    assert_eq!(c["quantity"], Value::Int(7));
    assert_eq!(c["discount"], Value::Int(1_234));
    assert_eq!(c["rate"], Value::Int(500));
    assert_eq!(c["won"], Value::Bool(false));
    assert_eq!(c["close_date"], Value::Date(chrono::NaiveDate::from_ymd_opt(2027, 1, 2).unwrap()));
    assert_eq!(
        c["closed_at"],
        Value::DateTime(chrono::DateTime::parse_from_rfc3339("2027-01-02T01:04:05Z").unwrap().to_utc())
    );
    assert_eq!(c["email"], Value::Text("x@y.org".into()));
    assert_eq!(c["phone"], Value::Text("123".into()));
    assert_eq!(c["site"], Value::Text("http://a.b".into()));
    assert_eq!(c["stage"], Value::Text("lost".into()));
    assert_eq!(c["colors"], Value::Json(json!(["green", "red"])));
    // A lookup is assigned by its api name and stored in its column.
    assert_eq!(c["account_id"], Value::Text("acc2".into()));
    assert_eq!(c["meta"], Value::Json(json!({"a": [1, "2.5", null], "b": true})));
    assert_eq!(c.len(), 16, "{c:?}");
}

#[test]
fn assignments_that_do_not_fit_say_why() {
    let h = host();
    let source = r#"record.quantity = 2.5; record.won = "yes"; record.close_date = "25/11/2026";
                    record.email = "nope"; record.colors = ["purple"]; record.name = ();"#;
    let out = run_hook(&h, ScriptHook::BeforeSave, source, &row(), None, &Chain::start(BudgetLimits::default()));
    let mut fields: Vec<&str> = out.change_issues.iter().map(|i| i.field.as_str()).collect();
    fields.sort();
    assert_eq!(fields, ["close_date", "colors", "email", "quantity", "won"], "{:?}", out.change_issues);
    let quantity = out.change_issues.iter().find(|i| i.field == "quantity").unwrap();
    assert_eq!(
        quantity.message,
        "BEFORE_SAVE script `test_script` set `quantity` to \"2.5\": expected a whole number, got 2.5"
    );
    // `()` clears a field.
    assert_eq!(out.changes.get("name"), Some(&Value::Null));
}

#[test]
fn decimals_stay_exact() {
    let h = host();
    let mut record = row();
    record.insert("amount".into(), Value::Int(10));
    record.insert("rate".into(), Value::Int(20));
    let out = run_hook(
        &h,
        ScriptHook::Action,
        "[record.amount + record.rate == 0.30, record.amount + record.rate, 0.1 + 0.2 == 0.3, 1.10 * 3]",
        &record,
        None,
        &Chain::start(BudgetLimits::default()),
    );
    assert_eq!(out.result, json!([true, "0.30", true, "3.30"]));
}

#[test]
fn integers_and_decimals_mix_in_arithmetic_and_comparisons() {
    let h = host();
    assert_eq!(
        eval(
            &h,
            "[record.amount * 2, record.amount > 1000, record.discount > 0.3, record.quantity * record.amount, record.amount / 4]"
        ),
        json!(["2469.00", true, true, "2469.00", "308.6250"])
    );
}

#[test]
fn money_helpers_round_half_away_from_zero() {
    let h = host();
    assert_eq!(
        eval(
            &h,
            "[round_money(2.345), round_money(-2.345), round_money(2.344), round_money(7), round_money(record.amount / 3)]"
        ),
        json!(["2.35", "-2.35", "2.34", "7", "411.50"])
    );
    assert_eq!(
        eval(&h, r#"[decimal("12.50"), decimal(3), decimal(1.5), decimal(" -0.01 ") + 1, type_of(decimal("1"))]"#),
        json!(["12.50", "3", "1.5", "0.99", "decimal"])
    );
    assert_eq!(
        eval(
            &h,
            "[percent_of(200, 15), percent_of(record.amount, 12.5), percent_of(10, 0.5), round_money(percent_of(0.99, 33))]"
        ),
        json!(["30", "154.31250", "0.050", "0.33"])
    );
    // rhai's own `round(d, dp)` rounds half to even; `round_half_up` is half away from zero.
    assert_eq!(eval(&h, "[round(2.345, 2), round_half_up(2.345, 2)]"), json!(["2.34", "2.35"]));
    let out =
        run_hook(&h, ScriptHook::Action, r#"decimal("12,50")"#, &row(), None, &Chain::start(BudgetLimits::default()));
    let failure = out.failure.map(|e| e.to_string()).unwrap_or_default();
    assert!(failure.contains("decimal(\"12,50\"): not a decimal number"), "{failure}");
    let out =
        run_hook(&h, ScriptHook::Action, r#"percent_of("a", 1)"#, &row(), None, &Chain::start(BudgetLimits::default()));
    assert!(out.failure.is_some());
}

#[test]
fn now_and_today_are_utc_iso_strings() {
    let h = host();
    let result = eval(&h, "[now(), today()]");
    let now = result[0].as_str().unwrap();
    let parsed = chrono::DateTime::parse_from_rfc3339(now).unwrap();
    assert_eq!(parsed.offset().local_minus_utc(), 0);
    assert!(now.ends_with('Z'), "{now}");
    let today = result[1].as_str().unwrap();
    assert!(chrono::NaiveDate::parse_from_str(today, "%Y-%m-%d").is_ok(), "{today}");
    assert_eq!(&now[..10], today);
    // Dates compare as strings in ISO order.
    assert_eq!(eval(&h, r#"record.close_date < "2026-12-01""#), json!(true));
}

#[test]
fn results_convert_to_json_and_unconvertible_values_become_text() {
    let h = host();
    assert_eq!(eval(&h, "#{a: [1, 2.50, ()], b: 'c', c: true}"), json!({"a": [1, "2.50", null], "b": "c", "c": true}));
    assert_eq!(eval(&h, "()"), json!(null));
    assert_eq!(eval(&h, "Fn(\"f\")"), json!("Fn(f)"));
}
