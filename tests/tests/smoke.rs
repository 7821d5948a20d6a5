#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use tessera_tests::*;

#[tokio::test]
async fn admin_creates_object_and_records() {
    each_backend!(|t| {
        t.object(
            "account",
            "accounts",
            vec![json!({"name": "name", "label": "名称", "type": "TEXT", "required": true})],
        )
        .await;
        let d = t.data_ok(r#"mutation { createAccount(data: {name: "Acme"}) { id name version } }"#, json!({})).await;
        assert_eq!(d["createAccount"]["name"], "Acme");
        let d = t.data_ok(r#"{ accounts(first: 10) { totalCount nodes { name } } }"#, json!({})).await;
        assert_eq!(d["accounts"]["totalCount"], 1);
    });
}
