#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The data API loads lookups and reverse relations per selection level, never per row.

use serde_json::{Value, json};
use tessera_tests::*;

async fn statements_for(t: &TestServer, query: &str) -> (u64, Value) {
    let store = &t.server.as_ref().unwrap().store;
    let before = store.statements_executed();
    let data = t.data_ok(query, json!({})).await;
    (store.statements_executed() - before, data)
}

#[tokio::test]
async fn a_page_with_two_relation_levels_costs_a_constant_number_of_statements() {
    each_backend!(|t| {
        t.object("account", "accounts", vec![json!({"name": "name", "label": "名称", "type": "TEXT"})]).await;
        t.object(
            "contact",
            "contacts",
            vec![
                json!({"name": "name", "label": "姓名", "type": "TEXT"}),
                json!({"name": "account", "label": "客户", "type": "LOOKUP", "target": "account"}),
            ],
        )
        .await;
        t.object(
            "note",
            "notes",
            vec![
                json!({"name": "body", "label": "内容", "type": "TEXT"}),
                json!({"name": "contact", "label": "联系人", "type": "LOOKUP", "target": "contact"}),
            ],
        )
        .await;
        let accounts: Vec<Value> = (0..10).map(|i| json!({"name": format!("A{i}")})).collect();
        let d = t
            .data_ok("mutation($d: [AccountInput!]!) { createAccounts(data: $d) { id } }", json!({"d": accounts}))
            .await;
        let account_ids: Vec<String> =
            d["createAccounts"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_string()).collect();
        let contacts: Vec<Value> =
            (0..60).map(|i| json!({"name": format!("C{i:02}"), "accountId": account_ids[i % 10]})).collect();
        let d = t
            .data_ok("mutation($d: [ContactInput!]!) { createContacts(data: $d) { id } }", json!({"d": contacts}))
            .await;
        let contact_ids: Vec<String> =
            d["createContacts"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_string()).collect();
        let notes: Vec<Value> =
            (0..120).map(|i| json!({"body": format!("N{i}"), "contactId": contact_ids[i % 60]})).collect();
        t.data_ok("mutation($d: [NoteInput!]!) { createNotes(data: $d) { id } }", json!({"d": notes})).await;

        let query = |n: usize| {
            format!(
                "{{ contacts(first: {n}, orderBy: [{{name: AscNullsLast}}]) {{ nodes {{ name
                     account {{ name contacts(first: 3) {{ nodes {{ name }} }} }}
                     notes(first: 2) {{ nodes {{ body contact {{ name }} }} }} }} }} }}"
            )
        };
        // Warm up authentication so only the query's own statements are counted.
        t.data_ok("{ me { id } }", json!({})).await;
        let (small, _) = statements_for(&t, &query(5)).await;
        let (large, data) = statements_for(&t, &query(50)).await;
        let nodes = data["contacts"]["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), 50);
        assert_eq!(nodes[0]["name"], "C00");
        assert_eq!(nodes[0]["account"]["name"], "A0");
        assert_eq!(nodes[0]["account"]["contacts"]["nodes"].as_array().unwrap().len(), 3);
        assert_eq!(nodes[0]["notes"]["nodes"].as_array().unwrap().len(), 2);
        assert_eq!(nodes[0]["notes"]["nodes"][0]["contact"]["name"], "C00");
        // list + accounts + their contacts + notes + the notes' contacts
        assert_eq!(small, large, "statement count grows with the page size");
        assert!(large <= 5, "{large} statements for one page");
    });
}
