//! Deep recursion in a script is a script error on every hook (VALIDATE, BEFORE_SAVE, formulas
//! on save and when recomputed, AFTER_SAVE, ACTION, testScript), never the end of a thread's
//! stack: the server answers the error and goes on serving. SQLite and PostgreSQL. The same
//! holds in a release build (`cargo test --release -p tessera-tests --test script_stack`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};
use tessera_tests::{TestServer, each_backend, error_codes};

/// Calls nested to `max_call_depth`, each in a body nested as deep as a function body may be.
const DEEP_CALLS: &str = "fn g(y) { y } \
    fn f(x) { if x <= 0 { 0 } else { g(g(g(g(g(g(g(g(g(g(f(x - 1))))))))))) } } \
    f(1000)";

/// A value nested a thousand arrays deep.
const DEEP_VALUE: &str = "let a = []; for i in 0..1000 { a = [a]; } a";

const SET_SCRIPT: &str = "mutation($h: ScriptHook!, $n: String!, $s: String!) { setScript(object: \"probe\", input: {name: $n, hook: $h, order: 0, source: $s}) { name } }";
const CREATE: &str = "mutation { createProbe(data: {name: \"p\"}) { id } }";

async fn with_script(t: &TestServer, hook: &str, source: &str) {
    t.meta_ok(SET_SCRIPT, json!({"h": hook, "n": "deep", "s": source})).await;
}

async fn without_script(t: &TestServer) {
    t.meta_ok("mutation { deleteScript(object: \"probe\", name: \"deep\") }", json!({})).await;
}

fn says(r: &Value, what: &str) -> bool {
    r.to_string().contains(what)
}

#[tokio::test]
async fn deep_recursion_is_a_script_error_on_every_hook() {
    each_backend!(|t| {
        t.object(
            "probe",
            "probes",
            vec![
                json!({"name": "name", "label": "Name", "type": "TEXT"}),
                json!({"name": "meta", "label": "Meta", "type": "JSON"}),
            ],
        )
        .await;
        let id = t.data_ok(CREATE, json!({})).await["createProbe"]["id"].clone();
        let deep_value_to_meta = format!("{DEEP_VALUE}; record.meta = a;");

        for (hook, source, why) in [
            ("VALIDATE", DEEP_CALLS, "max_call_depth"),
            ("BEFORE_SAVE", DEEP_CALLS, "max_call_depth"),
            ("BEFORE_SAVE", deep_value_to_meta.as_str(), "more than 64 deep"),
        ] {
            with_script(&t, hook, source).await;
            let r = t.data(CREATE, json!({})).await;
            assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "[{:?}] {hook}: {r}", t.backend);
            assert!(says(&r["errors"][0]["extensions"]["fieldErrors"], why), "[{:?}] {hook}: {r}", t.backend);
            without_script(&t).await;
        }

        // A formula over the existing record is refused when it is created.
        for (expression, why) in [(DEEP_CALLS, "max_call_depth"), (DEEP_VALUE, "more than 64 deep")] {
            let r = t
                .meta(
                    "mutation($e: String!) { createField(object: \"probe\", input: {name: \"deep\", label: \"Deep\", type: FORMULA, resultType: TEXT, expression: $e}) { name } }",
                    json!({"e": expression}),
                )
                .await;
            assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "[{:?}] {r}", t.backend);
            assert!(says(&r, why), "[{:?}] {r}", t.backend);
        }

        with_script(&t, "AFTER_SAVE", DEEP_CALLS).await;
        t.data_ok(CREATE, json!({})).await;
        let r = t.meta_ok("{ auditLog(category: \"script\", first: 1) { action after } }", json!({})).await;
        assert_eq!(r["auditLog"][0]["action"], "after_save_failed");
        assert!(says(&r["auditLog"][0]["after"], "max_call_depth"), "[{:?}] {r}", t.backend);
        without_script(&t).await;

        with_script(&t, "ACTION", DEEP_CALLS).await;
        let r = t
            .data(
                "mutation($id: ID!) { runAction(object: \"probe\", id: $id, action: \"deep\", input: {}) }",
                json!({"id": id}),
            )
            .await;
        assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "[{:?}] {r}", t.backend);
        assert!(says(&r, "max_call_depth"), "[{:?}] {r}", t.backend);
        without_script(&t).await;

        for hook in ["VALIDATE", "BEFORE_SAVE", "AFTER_SAVE", "ACTION"] {
            let r = t
                .meta_ok(
                    "mutation($h: ScriptHook!, $s: String!) { testScript(object: \"probe\", hook: $h, source: $s, record: {name: \"x\"}) { ok error } }",
                    json!({"h": hook, "s": DEEP_CALLS}),
                )
                .await;
            assert_eq!(r["testScript"]["ok"], false, "[{:?}] {hook}: {r}", t.backend);
            assert!(says(&r["testScript"]["error"], "max_call_depth"), "[{:?}] {hook}: {r}", t.backend);
        }

        // Nothing refused was written, and the server still serves.
        let r = t.data_ok("{ probes { totalCount } }", json!({})).await;
        assert_eq!(r["probes"]["totalCount"], 2, "[{:?}]", t.backend);
    });
}
