//! Rhai scripts through the HTTP API on SQLite and PostgreSQL: validation rules and
//! BEFORE_SAVE scripts on every write path, FORMULA fields, AFTER_SAVE triggers and actions
//! with the host API under the caller's permissions, budgets and trigger recursion, hostile
//! scripts stopped inside their limits while the server keeps answering, and testScript.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::{Value, json};
use tessera_tests::{TestServer, backends, each_backend, error_codes, field_errors};

const SET_SCRIPT: &str =
    "mutation($o: String!, $i: ScriptInput!) { setScript(object: $o, input: $i) { name hook order active } }";

async fn set_script(t: &TestServer, object: &str, name: &str, hook: &str, order: i32, source: &str) -> Value {
    t.meta(SET_SCRIPT, json!({"o": object, "i": {"name": name, "hook": hook, "order": order, "source": source}})).await
}

async fn set_script_ok(t: &TestServer, object: &str, name: &str, hook: &str, order: i32, source: &str) {
    let r = set_script(t, object, name, hook, order, source).await;
    assert!(r.get("errors").is_none(), "[{:?}] setScript {name}: {r}", t.backend);
}

fn message(r: &Value) -> String {
    r["errors"][0]["message"].as_str().unwrap_or_default().to_string()
}

fn field_messages(r: &Value) -> String {
    r["errors"][0]["extensions"]["fieldErrors"].to_string()
}

/// Script failures recorded in the audit log after the fact (AFTER_SAVE).
async fn script_failures(t: &TestServer) -> Vec<Value> {
    let r =
        t.meta_ok("{ auditLog(category: \"script\", first: 100) { action object recordId after } }", json!({})).await;
    r["auditLog"].as_array().unwrap().clone()
}

async fn deal_object(t: &TestServer) {
    t.object(
        "deal",
        "deals",
        vec![
            json!({"name": "name", "label": "名称", "type": "TEXT", "required": true}),
            json!({"name": "amount", "label": "金额", "type": "CURRENCY"}),
            json!({"name": "discount", "label": "折扣", "type": "DECIMAL", "scale": 2}),
            json!({"name": "stage", "label": "阶段", "type": "PICKLIST",
                   "options": [{"value": "open", "label": "Open"}, {"value": "won", "label": "Won"}]}),
            json!({"name": "priority", "label": "优先级", "type": "TEXT"}),
        ],
    )
    .await;
    set_script_ok(
        t,
        "deal",
        "discount_guard",
        "VALIDATE",
        10,
        r#"if record.discount != () && record.discount > 0.3 && !user.roles.contains("sales_director") {
    error("discount", "折扣超过30%需销售总监审批")
}"#,
    )
    .await;
    set_script_ok(
        t,
        "deal",
        "no_shrink",
        "VALIDATE",
        20,
        r#"if old != () && old.stage == "won" && record.amount < old.amount { reject("a won deal's amount cannot go down") }"#,
    )
    .await;
    set_script_ok(
        t,
        "deal",
        "priority",
        "BEFORE_SAVE",
        0,
        r#"record.priority = if record.amount != () && record.amount >= 100000 { "P1" } else { "P3" };"#,
    )
    .await;
}

const CREATE_DEAL: &str = "mutation($d: DealInput!) { createDeal(data: $d) { id amount discount priority version } }";
const UPDATE_DEAL: &str =
    "mutation($id: ID!, $d: DealInput!) { updateDeal(id: $id, data: $d) { id amount priority version } }";

async fn deal_count(t: &TestServer) -> i64 {
    t.data_ok("{ deals(first: 1) { totalCount } }", json!({})).await["deals"]["totalCount"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_rules_and_before_save_run_on_every_write_path() {
    each_backend!(|t| {
        deal_object(&t).await;
        // A rule's error comes back as a SCRIPT field error on the field it names.
        let r = t.data(CREATE_DEAL, json!({"d": {"name": "A", "amount": "50000", "discount": "0.35"}})).await;
        assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "{r}");
        assert_eq!(field_errors(&r), [(0, "discount".to_string(), "SCRIPT".to_string())], "{r}");
        assert!(field_messages(&r).contains("折扣超过30%需销售总监审批"), "{r}");
        assert_eq!(deal_count(&t).await, 0);
        // Exact decimals: 0.30 is not over 0.3. BEFORE_SAVE assigns the priority.
        let ok = t.data_ok(CREATE_DEAL, json!({"d": {"name": "B", "amount": "50000", "discount": "0.30"}})).await;
        assert_eq!(ok["createDeal"]["priority"], "P3");
        let big = t.data_ok(CREATE_DEAL, json!({"d": {"name": "C", "amount": "150000.00", "stage": "WON"}})).await;
        assert_eq!(big["createDeal"]["priority"], "P1");
        let big_id = big["createDeal"]["id"].as_str().unwrap().to_string();
        // A batch is all or nothing, and the error names the record's index.
        let r = t
            .data(
                "mutation($d: [DealInput!]!) { createDeals(data: $d) { id } }",
                json!({"d": [{"name": "D", "amount": "10", "discount": "0.1"}, {"name": "E", "amount": "10", "discount": "0.5"}]}),
            )
            .await;
        assert_eq!(field_errors(&r), [(1, "discount".to_string(), "SCRIPT".to_string())], "{r}");
        assert_eq!(deal_count(&t).await, 2);
        // Updates run the rules over the record with the patch applied, with `old`.
        let r = t.data(UPDATE_DEAL, json!({"id": big_id, "d": {"amount": "90000"}})).await;
        assert_eq!(field_errors(&r), [(0, String::new(), "SCRIPT".to_string())], "{r}");
        assert!(field_messages(&r).contains("cannot go down"), "{r}");
        let up = t.data_ok(UPDATE_DEAL, json!({"id": big_id, "d": {"amount": "200000"}})).await;
        assert_eq!(up["updateDeal"]["version"], 2);
        assert_eq!(up["updateDeal"]["priority"], "P1");
        let small = ok["createDeal"]["id"].as_str().unwrap().to_string();
        let down = t.data_ok(UPDATE_DEAL, json!({"id": small, "d": {"amount": "100000"}})).await;
        assert_eq!(down["updateDeal"]["priority"], "P1", "BEFORE_SAVE runs on update");
        // Update by filter: every record is checked; one failure refuses the whole update.
        let r = t
            .data(
                "mutation { updateDeals(filter: {stage: {isNull: true}}, data: {discount: \"0.45\"}) { id } }",
                json!({}),
            )
            .await;
        assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "{r}");
        let d = t.data_ok("{ deals(filter: {discount: {gt: \"0.4\"}}) { totalCount } }", json!({})).await;
        assert_eq!(d["deals"]["totalCount"], 0);
        let r = t
            .data_ok(
                "mutation { updateDeals(filter: {name: {in: [\"B\", \"C\"]}}, data: {amount: \"250000\"}) { name priority } }",
                json!({}),
            )
            .await;
        let mut updated = r["updateDeals"].as_array().unwrap().clone();
        updated.sort_by_key(|d| d["name"].as_str().unwrap().to_string());
        assert_eq!(updated, [json!({"name": "B", "priority": "P1"}), json!({"name": "C", "priority": "P1"})]);
        // One failing record refuses them all, and the error names it.
        let r = t
            .data(
                "mutation { updateDeals(filter: {name: {in: [\"B\", \"C\"]}}, data: {amount: \"240000\"}) { name } }",
                json!({}),
            )
            .await;
        assert_eq!(field_errors(&r), [(0, String::new(), "SCRIPT".to_string())], "{r}");
        assert!(field_messages(&r).contains(&format!("record {big_id}")), "{r}");
        // The rule looks at the user's roles.
        t.role("sales_director").await;
        t.grant("sales_director", "deal", "read create update", "ALL").await;
        let (_, director) = t.user("director@example.com", &["sales_director"], None).await;
        let r =
            t.data_ok_as(&director, CREATE_DEAL, json!({"d": {"name": "F", "amount": "10", "discount": "0.5"}})).await;
        assert_eq!(r["createDeal"]["discount"], "0.50");
        // An inactive rule does not run.
        t.meta_ok(
            SET_SCRIPT,
            json!({"o": "deal", "i": {"name": "discount_guard", "hook": "VALIDATE", "active": false, "source": "error(\"discount\", \"off\")"}}),
        )
        .await;
        t.data_ok(CREATE_DEAL, json!({"d": {"name": "G", "amount": "10", "discount": "0.9"}})).await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_are_metadata_checked_at_save_and_kept() {
    for backend in backends() {
        let t = TestServer::start(backend).await;
        t.object("lead", "leads", vec![json!({"name": "name", "label": "Name", "type": "TEXT"})]).await;
        // Compile errors are refused with their line and column.
        let r = set_script(&t, "lead", "broken", "VALIDATE", 0, "let a = 1;\nlet b = 2;\nif a > { }").await;
        assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "{r}");
        assert!(message(&r).contains("line 3"), "{r}");
        assert!(message(&r).contains("column"), "{r}");
        let r = t
            .meta(
                "mutation { createField(object: \"lead\", input: {name: \"score\", label: \"Score\", type: FORMULA, resultType: INTEGER, expression: \"record.name.len( +\"}) { name } }",
                json!({}),
            )
            .await;
        assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "{r}");
        assert!(message(&r).contains("line 1"), "{r}");
        let r = set_script(&t, "lead", "Bad Name", "VALIDATE", 0, "true").await;
        assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "{r}");
        let r = set_script(&t, "nothing", "x", "VALIDATE", 0, "true").await;
        assert_eq!(error_codes(&r), ["NOT_FOUND"], "{r}");
        // Saved scripts are listed in run order, survive a restart, and can be deleted.
        set_script_ok(&t, "lead", "second", "VALIDATE", 20, "true").await;
        set_script_ok(&t, "lead", "first", "VALIDATE", 10, "true").await;
        let t = t.restart().await;
        let r = t.meta_ok("{ object(name: \"lead\") { scripts { name hook order active source } } }", json!({})).await;
        let names: Vec<&str> =
            r["object"]["scripts"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["first", "second"]);
        t.meta_ok("mutation { deleteScript(object: \"lead\", name: \"first\") }", json!({})).await;
        let r = t.meta("mutation { deleteScript(object: \"lead\", name: \"first\") }", json!({})).await;
        assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "{r}");
        // A script that the sandbox's limits no longer let compile (the server restarted with a
        // smaller expression depth) fails the object's writes instead of letting them skip it.
        let nested = format!("let x = {}1{};", "(".repeat(12), ")".repeat(12));
        set_script_ok(&t, "lead", "nested", "VALIDATE", 0, &nested).await;
        set_script_ok(&t, "lead", "nested_trigger", "AFTER_SAVE", 0, &nested).await;
        let t = t.restart_with(|c| c.script_limits.max_expr_depth = 6).await;
        let r = t.data("mutation { createLead(data: {name: \"x\"}) { id } }", json!({})).await;
        assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "{r}");
        assert!(message(&r).contains("no longer compiles"), "{r}");
        // Saved sources are not checked again, so the admin can still remove them; a trigger
        // that cannot compile stops the object's writes too, rather than being skipped.
        t.meta_ok("mutation { deleteScript(object: \"lead\", name: \"nested\") }", json!({})).await;
        let r = t.data("mutation { createLead(data: {name: \"x\"}) { id } }", json!({})).await;
        assert!(message(&r).contains("`nested_trigger` of `lead` no longer compiles"), "{r}");
        t.meta_ok("mutation { deleteScript(object: \"lead\", name: \"nested_trigger\") }", json!({})).await;
        t.data_ok("mutation { createLead(data: {name: \"x\"}) { id } }", json!({})).await;
        let r = t.meta_ok("{ auditLog(category: \"metadata\", first: 20) { action } }", json!({})).await;
        let actions: Vec<&str> =
            r["auditLog"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
        assert!(actions.contains(&"set_script") && actions.contains(&"delete_script"), "{actions:?}");
        t.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn formula_fields_are_stored_recomputed_and_queryable() {
    each_backend!(|t| {
        t.object(
            "line",
            "lines",
            vec![
                json!({"name": "label", "label": "Label", "type": "TEXT"}),
                json!({"name": "price", "label": "Price", "type": "CURRENCY"}),
                json!({"name": "qty", "label": "Qty", "type": "INTEGER"}),
            ],
        )
        .await;
        for (label, price, qty) in [("a", "0.10", 3), ("b", "19.99", 2), ("c", "250.00", 1)] {
            t.data_ok(
                "mutation($d: LineInput!) { createLine(data: $d) { id } }",
                json!({"d": {"label": label, "price": price, "qty": qty}}),
            )
            .await;
        }
        // A formula added to an object with records computes theirs.
        let r = t
            .meta_ok(
                "mutation { createField(object: \"line\", input: {name: \"total\", label: \"合计\", type: FORMULA, resultType: CURRENCY, expression: \"record.price * record.qty\"}) { type resultType expression } }",
                json!({}),
            )
            .await;
        assert_eq!(r["createField"]["type"], "FORMULA");
        assert_eq!(r["createField"]["resultType"], "CURRENCY");
        let totals = |r: &Value| -> Vec<(String, String)> {
            r["lines"]["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| (n["label"].as_str().unwrap().to_string(), n["total"].as_str().unwrap().to_string()))
                .collect()
        };
        let q = "{ lines(orderBy: [{total: DescNullsLast}]) { nodes { label total } } }";
        let r = t.data_ok(q, json!({})).await;
        assert_eq!(
            totals(&r),
            [("c".into(), "250.00".into()), ("b".into(), "39.98".into()), ("a".into(), "0.30".into())]
        );
        // New and updated records get their value; filters use it like any column.
        let r = t
            .data_ok("mutation { createLine(data: {label: \"d\", price: \"0.20\", qty: 1}) { id total } }", json!({}))
            .await;
        assert_eq!(r["createLine"]["total"], "0.20");
        let id = r["createLine"]["id"].as_str().unwrap().to_string();
        let r =
            t.data_ok("mutation($id: ID!) { updateLine(id: $id, data: {qty: 7}) { total } }", json!({"id": id})).await;
        assert_eq!(r["updateLine"]["total"], "1.40");
        let r = t.data_ok("{ lines(filter: {total: {gte: \"1.40\"}}) { totalCount } }", json!({})).await;
        assert_eq!(r["lines"]["totalCount"], 3);
        // It cannot be written.
        let r = t
            .data_ok("mutation { updateLines(filter: {label: {eq: \"d\"}}, data: {qty: 8}) { total } }", json!({}))
            .await;
        assert_eq!(r["updateLines"], json!([{"total": "1.60"}]), "update by filter recomputes");
        let r =
            t.data("mutation($id: ID!) { updateLine(id: $id, data: {total: \"5\"}) { id } }", json!({"id": id})).await;
        assert!(r.get("errors").is_some(), "a formula is not in the input type: {r}");
        // Changing the expression recomputes every record; exact decimals throughout.
        t.meta_ok(
            "mutation { updateField(object: \"line\", field: \"total\", input: {expression: \"round_money(record.price * record.qty * 1.06)\"}) { name } }",
            json!({}),
        )
        .await;
        let r = t.data_ok(q, json!({})).await;
        assert_eq!(totals(&r)[0], ("c".to_string(), "265.00".to_string()));
        assert_eq!(totals(&r)[1], ("b".to_string(), "42.38".to_string()), "42.3788 rounds to 42.38");
        assert_eq!(totals(&r)[3], ("a".to_string(), "0.32".to_string()), "0.318 rounds to 0.32");
        t.meta_ok(
            "mutation { createField(object: \"line\", input: {name: \"exact\", label: \"Exact\", type: FORMULA, resultType: BOOLEAN, expression: \"0.1 + 0.2 == 0.3\"}) { name } }",
            json!({}),
        )
        .await;
        let r = t.data_ok("{ lines(filter: {exact: {eq: true}}) { totalCount } }", json!({})).await;
        assert_eq!(r["lines"]["totalCount"], 4);
        // A formula that fails on a record refuses the write with a SCRIPT error on its field.
        t.meta_ok(
            "mutation { createField(object: \"line\", input: {name: \"unit_share\", label: \"Share\", type: FORMULA, resultType: DECIMAL, expression: \"record.price / record.qty\"}) { name } }",
            json!({}),
        )
        .await;
        let r = t.data("mutation($id: ID!) { updateLine(id: $id, data: {qty: 0}) { id } }", json!({"id": id})).await;
        assert_eq!(field_errors(&r), [(0, "unit_share".to_string(), "SCRIPT".to_string())], "{r}");
        // A field that formulas read cannot be deleted from under them.
        let r = t.meta("mutation { deleteField(object: \"line\", field: \"qty\") }", json!({})).await;
        assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "{r}");
        assert!(message(&r).contains("formula `total`") && message(&r).contains("formula `unit_share`"), "{r}");
        t.meta_ok("mutation { deleteField(object: \"line\", field: \"unit_share\") }", json!({})).await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_save_triggers_use_the_host_api_as_their_caller() {
    each_backend!(|t| {
        t.object(
            "ticket",
            "tickets",
            vec![
                json!({"name": "title", "label": "Title", "type": "TEXT"}),
                json!({"name": "tier", "label": "Tier", "type": "PICKLIST",
                       "options": [{"value": "normal", "label": "Normal"}, {"value": "vip", "label": "VIP"}]}),
                json!({"name": "priority", "label": "Priority", "type": "TEXT"}),
            ],
        )
        .await;
        t.object(
            "task",
            "tasks",
            vec![
                json!({"name": "subject", "label": "Subject", "type": "TEXT"}),
                json!({"name": "ticket", "label": "Ticket", "type": "LOOKUP", "target": "ticket"}),
            ],
        )
        .await;
        set_script_ok(
            &t,
            "ticket",
            "follow_up",
            "AFTER_SAVE",
            0,
            r#"if old == () {
    let task = create("task", #{ subject: "Call back: " + record.title, ticket: record.id });
    log("created " + task.id);
}
if record.tier == "vip" && record.priority != "P1" {
    let tasks = find("task", #{ ticket: record.id }, 10);
    update("ticket", record.id, #{ priority: "P1", title: record.title + " (" + tasks.len() + " tasks)" });
}"#,
        )
        .await;
        let r = t
            .data_ok("mutation { createTicket(data: {title: \"Printer\", tier: VIP}) { id priority } }", json!({}))
            .await;
        let id = r["createTicket"]["id"].as_str().unwrap().to_string();
        // The trigger ran after commit, before the response: its writes are visible.
        let r = t
            .data_ok(
                "query($id: ID!) { ticket(id: $id) { title priority tasks { nodes { subject } } } }",
                json!({"id": id}),
            )
            .await;
        assert_eq!(r["ticket"]["priority"], "P1");
        assert_eq!(r["ticket"]["title"], "Printer (1 tasks)");
        assert_eq!(r["ticket"]["tasks"]["nodes"], json!([{"subject": "Call back: Printer"}]));
        assert!(script_failures(&t).await.is_empty());
        // A user who may create tickets but not tasks: the ticket is saved, the trigger's
        // create is refused as theirs, and the failure is on record.
        t.role("agent").await;
        t.grant("agent", "ticket", "read create update", "ALL").await;
        let (_, agent) = t.user("agent@example.com", &["agent"], None).await;
        let r = t
            .data_ok_as(&agent, "mutation { createTicket(data: {title: \"Fax\", tier: NORMAL}) { id } }", json!({}))
            .await;
        let fax = r["createTicket"]["id"].as_str().unwrap().to_string();
        let tasks = t.data_ok("{ tasks { totalCount } }", json!({})).await;
        assert_eq!(tasks["tasks"]["totalCount"], 1);
        let failures = script_failures(&t).await;
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert_eq!(failures[0]["recordId"], fax.as_str());
        assert_eq!(failures[0]["action"], "after_save_failed");
        assert!(failures[0]["after"]["error"].as_str().unwrap().contains("FORBIDDEN"), "{failures:?}");
        // Triggers that keep triggering each other stop at the nesting limit.
        t.object("counter", "counters", vec![json!({"name": "n", "label": "N", "type": "INTEGER"})]).await;
        set_script_ok(&t, "counter", "bump", "AFTER_SAVE", 0, r#"update("counter", record.id, #{ n: record.n + 1 });"#)
            .await;
        let r = t.data_ok("mutation { createCounter(data: {n: 0}) { id } }", json!({})).await;
        let counter = r["createCounter"]["id"].as_str().unwrap().to_string();
        let r = t.data_ok("query($id: ID!) { counter(id: $id) { n } }", json!({"id": counter})).await;
        assert_eq!(r["counter"]["n"], 5, "five nested levels of triggers, then the limit");
        let failures = script_failures(&t).await;
        let recursion = failures.iter().find(|f| f["recordId"] == counter.as_str()).expect("the stop is on record");
        assert!(recursion["after"]["error"].as_str().unwrap().contains("trigger_depth"), "{recursion}");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_run_for_allowed_callers_within_budgets() {
    for backend in backends() {
        let t = TestServer::start_with(backend, |c| {
            c.script_budget.queries = 3;
            c.script_budget.writes = 3;
        })
        .await;
        t.object(
            "invoice",
            "invoices",
            vec![
                json!({"name": "amount", "label": "Amount", "type": "CURRENCY"}),
                json!({"name": "commission", "label": "Commission", "type": "CURRENCY"}),
            ],
        )
        .await;
        t.meta_ok(
            SET_SCRIPT,
            json!({"o": "invoice", "i": {"name": "recalculate_commission", "hook": "ACTION", "roles": ["finance"],
                   "source": "let c = round_money(record.amount * decimal(input.rate));\nupdate(\"invoice\", record.id, #{ commission: c });\n#{ commission: c, by: user.email }"}}),
        )
        .await;
        set_script_ok(&t, "invoice", "scan", "ACTION", 0, "for i in 0..10 { find(\"invoice\", #{}, 1); }").await;
        let r = t.data_ok("mutation { createInvoice(data: {amount: \"1234.50\"}) { id } }", json!({})).await;
        let id = r["createInvoice"]["id"].as_str().unwrap().to_string();
        let run = "mutation($id: ID!, $a: String!, $i: JSON) { runAction(object: \"invoice\", id: $id, action: $a, input: $i) }";
        let r = t.data_ok(run, json!({"id": id, "a": "recalculate_commission", "i": {"rate": "0.05"}})).await;
        assert_eq!(r["runAction"], json!({"commission": "61.73", "by": "admin@example.com"}));
        let r = t.data_ok("query($id: ID!) { invoice(id: $id) { commission } }", json!({"id": id})).await;
        assert_eq!(r["invoice"]["commission"], "61.73");
        // Only the action's roles may run it.
        t.role("clerk").await;
        t.grant("clerk", "invoice", "read update", "ALL").await;
        let (_, clerk) = t.user("clerk@example.com", &["clerk"], None).await;
        let r = t.data_as(&clerk, run, json!({"id": id, "a": "recalculate_commission", "i": {"rate": "1"}})).await;
        assert_eq!(error_codes(&r), ["FORBIDDEN"], "{r}");
        let r = t.data(run, json!({"id": id, "a": "no_such_action"})).await;
        assert_eq!(error_codes(&r), ["NOT_FOUND"], "{r}");
        // The per-transaction query budget (configured to 3) stops the fourth `find`.
        let r = t.data(run, json!({"id": id, "a": "scan"})).await;
        assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "{r}");
        assert!(message(&r).contains("queries"), "{r}");
        // One budget for the whole call, however deep its triggers nest: three writes (configured)
        // then the fourth is refused, well before the nesting limit.
        t.object("counter", "counters", vec![json!({"name": "n", "label": "N", "type": "INTEGER"})]).await;
        set_script_ok(&t, "counter", "bump", "AFTER_SAVE", 0, r#"update("counter", record.id, #{ n: record.n + 1 });"#)
            .await;
        let r = t.data_ok("mutation { createCounter(data: {n: 0}) { id } }", json!({})).await;
        let counter = r["createCounter"]["id"].as_str().unwrap().to_string();
        let r = t.data_ok("query($id: ID!) { counter(id: $id) { n } }", json!({"id": counter})).await;
        assert_eq!(r["counter"]["n"], 3);
        let failures = script_failures(&t).await;
        assert!(failures[0]["after"]["error"].as_str().unwrap().contains("writes"), "{failures:?}");
        t.stop().await;
    }
}

/// Posts a data API request on its own task (for requests that run while others are served).
fn spawn_data(t: &TestServer, query: &str, variables: Value) -> tokio::task::JoinHandle<Value> {
    let (client, url, token, body) = (
        t.client.clone(),
        format!("{}/graphql", t.base),
        t.token.clone(),
        json!({"query": query, "variables": variables}),
    );
    tokio::spawn(
        async move { client.post(url).bearer_auth(token).json(&body).send().await.unwrap().json().await.unwrap() },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_scripts_fail_inside_their_limits_while_the_server_serves_others() {
    for backend in backends() {
        // A generous operation limit, so that a runaway loop meets the 1 s timeout first.
        let t = TestServer::start_with(backend, |c| {
            c.script_limits.max_operations = 1_000_000_000_000;
            c.script_limits.timeout = Duration::from_millis(1_000);
            c.script_budget.operations = u64::MAX;
        })
        .await;
        t.object("note", "notes", vec![json!({"name": "body", "label": "Body", "type": "TEXT"})]).await;
        t.object("probe", "probes", vec![json!({"name": "title", "label": "Title", "type": "TEXT"})]).await;
        t.data_ok("mutation { createProbe(data: {title: \"alive\"}) { id } }", json!({})).await;
        let r = t.data_ok("mutation { createNote(data: {body: \"before\"}) { id } }", json!({})).await;
        let note = r["createNote"]["id"].as_str().unwrap().to_string();
        let cases = [
            ("loop", "loop { }", "timeout"),
            ("recursion", "fn f(x) { f(x + 1) } f(0)", "max_call_depth"),
            ("memory", "let a = [1]; loop { a += a; }", "max_array_len"),
            ("string", "let s = \"x\"; loop { s += s; }", "max_string_bytes"),
        ];
        for (name, source, limit) in cases {
            set_script_ok(&t, "note", "hostile", "VALIDATE", 0, source).await;
            let hostile = spawn_data(&t, "mutation { createNote(data: {body: \"x\"}) { id } }", json!({}));
            // Meanwhile others are answered: while the runaway loop spins towards its
            // timeout, reads complete.
            for _ in 0..3 {
                let r = t.data_ok("{ probes { nodes { title } } }", json!({})).await;
                assert_eq!(r["probes"]["nodes"][0]["title"], "alive");
            }
            if limit == "timeout" {
                assert!(!hostile.is_finished(), "the reads were answered while the loop still ran");
                // An update's rules run before the writer lock: other writes go on meanwhile.
                let update = spawn_data(
                    &t,
                    "mutation($id: ID!) { updateNote(id: $id, data: {body: \"y\"}) { id } }",
                    json!({"id": note}),
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
                t.data_ok("mutation { createProbe(data: {title: \"written meanwhile\"}) { id } }", json!({})).await;
                assert!(!update.is_finished(), "a write went through while the update's rule still ran");
                let r = update.await.unwrap();
                assert!(field_messages(&r).contains("timeout"), "{r}");
            }
            let r = hostile.await.unwrap();
            assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "[{name}] {r}");
            assert_eq!(field_errors(&r), [(0, String::new(), "SCRIPT".to_string())], "[{name}] {r}");
            assert!(field_messages(&r).contains(limit), "[{name}] expected the limit `{limit}`: {r}");
        }
        let r = t.data_ok("{ notes { totalCount nodes { body version } } }", json!({})).await;
        assert_eq!(r["notes"]["totalCount"], 1, "nothing was written");
        assert_eq!(r["notes"]["nodes"][0], json!({"body": "before", "version": 1}));
        // No eval, no modules, no files: refused when saved, or failing when run.
        for source in ["eval(\"1\")", "import \"os\" as os;", "open_file(\"/etc/passwd\")", "read_file(\"x\")"] {
            let saved = set_script(&t, "note", "hostile", "VALIDATE", 0, source).await;
            if saved.get("errors").is_some() {
                assert_eq!(error_codes(&saved), ["BAD_USER_INPUT"], "{saved}");
                continue;
            }
            let r = t.data("mutation { createNote(data: {body: \"x\"}) { id } }", json!({})).await;
            assert_eq!(field_errors(&r), [(0, String::new(), "SCRIPT".to_string())], "[{source}] {r}");
        }
        let r = t.data_ok("{ notes { totalCount } }", json!({})).await;
        assert_eq!(r["notes"]["totalCount"], 1);
        t.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_script_is_a_dry_run() {
    each_backend!(|t| {
        deal_object(&t).await;
        let test = "mutation($h: ScriptHook!, $s: String!, $r: JSON, $o: JSON) { testScript(object: \"deal\", hook: $h, source: $s, record: $r, old: $o) { ok error fieldErrors { field message } changes writes logs result durationMicros operations } }";
        let r = t
            .meta_ok(
                test,
                json!({"h": "VALIDATE", "s": "log(\"checking \" + record.name); if record.amount > 1000 { error(\"amount\", \"too big\") } if old != () { reject(\"no updates\") }",
                       "r": {"name": "X", "amount": "1500"}, "o": {"name": "X", "amount": "10"}}),
            )
            .await;
        let run = &r["testScript"];
        assert_eq!(run["ok"], false);
        assert_eq!(
            run["fieldErrors"],
            json!([{"field": "amount", "message": "too big"}, {"field": null, "message": "no updates"}])
        );
        assert_eq!(run["logs"], json!(["checking X"]));
        assert!(run["operations"].as_u64().unwrap() > 0);
        let r = t
            .meta_ok(test, json!({"h": "BEFORE_SAVE", "s": "record.discount = round_money(record.amount / 100000);", "r": {"name": "Y", "amount": "1500"}}))
            .await;
        assert_eq!(r["testScript"]["ok"], true, "{r}");
        assert_eq!(r["testScript"]["changes"], json!({"discount": "0.02"}));
        let r = t
            .meta_ok(
                test,
                json!({"h": "AFTER_SAVE", "s": "let d = create(\"deal\", #{ name: \"copy of \" + record.name, amount: \"1\" }); d.id",
                       "r": {"id": "0190aaaa-0000-7000-8000-000000000000", "name": "Z"}}),
            )
            .await;
        let run = &r["testScript"];
        assert_eq!(run["ok"], true, "{r}");
        assert_eq!(run["writes"][0]["op"], "create");
        assert_eq!(run["writes"][0]["values"]["name"], "copy of Z");
        assert_eq!(deal_count(&t).await, 0, "a dry run writes nothing");
        let r = t.meta_ok(test, json!({"h": "VALIDATE", "s": "loop {}", "r": {"name": "L"}})).await;
        assert!(r["testScript"]["error"].as_str().unwrap().contains("max_operations"), "{r}");
        let r = t.meta(test, json!({"h": "VALIDATE", "s": "if (", "r": {}})).await;
        assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "{r}");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upserts_run_scripts_as_creates_or_updates() {
    each_backend!(|t| {
        t.object(
            "sku",
            "skus",
            vec![
                json!({"name": "code", "label": "Code", "type": "TEXT", "unique": true}),
                json!({"name": "price", "label": "Price", "type": "CURRENCY"}),
                json!({"name": "qty", "label": "Qty", "type": "INTEGER"}),
                json!({"name": "total", "label": "Total", "type": "FORMULA", "resultType": "CURRENCY",
                       "expression": "if record.price == () || record.qty == () { () } else { record.price * record.qty }"}),
            ],
        )
        .await;
        set_script_ok(
            &t,
            "sku",
            "priced",
            "VALIDATE",
            0,
            r#"if old == () && record.price == () { error("price", "a new SKU needs a price") }"#,
        )
        .await;
        let upsert = "mutation($d: [SkuInput!]!) { createSkus(data: $d, upsert: {onConflict: [code], update: [qty]}) { code total } }";
        t.data_ok(upsert, json!({"d": [{"code": "A", "price": "2", "qty": 1}]})).await;
        // Matching A makes its input an update (the create-only rule does not apply and the
        // formula follows the new quantity); B is a create and needs its price.
        let r = t.data(upsert, json!({"d": [{"code": "A", "qty": 5}, {"code": "B", "qty": 1}]})).await;
        assert_eq!(field_errors(&r), [(1, "price".to_string(), "SCRIPT".to_string())], "{r}");
        let r =
            t.data_ok(upsert, json!({"d": [{"code": "A", "qty": 5}, {"code": "B", "price": "1.50", "qty": 2}]})).await;
        assert_eq!(r["createSkus"], json!([{"code": "A", "total": "10.00"}, {"code": "B", "total": "3.00"}]));
    });
}
