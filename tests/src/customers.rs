//! The customer fixture of the sensitive-data tests: an encrypted, searchable, unique phone;
//! an encrypted ID number; an encrypted, searchable email; a masked name; and purchases that
//! point at customers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;

use crate::TestServer;

pub const PHONE: &str = "13812345678";
pub const ID_NUMBER: &str = "110101199003071234";
pub const EMAIL: &str = "li.lei@example.com";

/// A customer object whose phone is encrypted, searchable and unique, whose ID number is
/// encrypted, and whose email is encrypted and searchable; and purchases pointing at customers.
pub async fn customer_object(t: &TestServer) {
    t.object(
        "customer",
        "customers",
        vec![
            json!({"name": "name", "label": "姓名", "type": "TEXT", "sensitive": {"mask": "NAME"}}),
            json!({"name": "phone", "label": "手机号", "type": "PHONE", "unique": true,
                   "sensitive": {"encrypted": true, "searchable": true}}),
            json!({"name": "id_number", "label": "身份证号", "type": "TEXT",
                   "sensitive": {"encrypted": true, "mask": "ID_NUMBER"}}),
            json!({"name": "email", "label": "Email", "type": "EMAIL",
                   "sensitive": {"encrypted": true, "searchable": true}}),
            json!({"name": "city", "label": "城市", "type": "TEXT"}),
        ],
    )
    .await;
    t.object(
        "purchase",
        "purchases",
        vec![
            json!({"name": "title", "label": "Title", "type": "TEXT"}),
            json!({"name": "customer", "label": "Customer", "type": "LOOKUP", "target": "customer"}),
        ],
    )
    .await;
}

pub async fn create_customer(t: &TestServer, name: &str, phone: &str, id_number: &str, email: &str) -> String {
    let r = t
        .data_ok(
            "mutation($d: CustomerInput!) { createCustomer(data: $d) { id phone idNumber email } }",
            json!({"d": {"name": name, "phone": phone, "idNumber": id_number, "email": email, "city": "Beijing"}}),
        )
        .await;
    // The writer gets back what they wrote.
    assert_eq!(r["createCustomer"]["phone"], phone);
    r["createCustomer"]["id"].as_str().unwrap().to_string()
}
