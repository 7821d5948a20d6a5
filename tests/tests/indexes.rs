//! Indexes over several fields, declared through the metadata API, on SQLite and PostgreSQL:
//! real database indexes that the list query of a filter sorted by another field walks,
//! uniqueness across fields, and the guards around fields they cover.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sea_orm::{ConnectionTrait, Database, Statement};
use serde_json::{Value, json};
use tessera_tests::{Backend, TestServer, backends, error_codes};

const CREATE_INDEX: &str =
    "mutation($o: String!, $i: IndexInput!) { createIndex(object: $o, input: $i) { name fields unique } }";

/// The columns of each `cx_` index of a table, as the database itself reports them.
async fn declared_indexes(t: &TestServer, table: &str) -> Vec<(String, String)> {
    let db = Database::connect(&t.database_url).await.unwrap();
    let sql = match t.backend {
        Backend::Sqlite => format!(
            "SELECT name, (SELECT group_concat(name, ',') FROM pragma_index_info(m.name)) FROM sqlite_master m \
             WHERE type = 'index' AND tbl_name = '{table}' AND name LIKE 'cx_%' ORDER BY name"
        ),
        Backend::Postgres => format!(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = '{table}' AND indexname LIKE 'cx_%' \
             ORDER BY indexname"
        ),
    };
    let rows = db.query_all_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap();
    let out = rows
        .iter()
        .map(|r| (r.try_get_by_index::<String>(0).unwrap(), r.try_get_by_index::<String>(1).unwrap()))
        .collect();
    db.close().await.ok();
    out
}

async fn contact(t: &TestServer, region: &str, last_name: &str, email: &str) -> Value {
    t.data(
        "mutation($d: ContactInput!) { createContact(data: $d) { id } }",
        json!({"d": {"region": region, "lastName": last_name, "email": email}}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_indexes_are_real_used_and_guarded() {
    for backend in backends() {
        let t = TestServer::start(backend).await;
        t.object(
            "contact",
            "contacts",
            vec![
                json!({"name": "region", "label": "地区", "type": "TEXT"}),
                json!({"name": "last_name", "label": "姓", "type": "TEXT"}),
                json!({"name": "email", "label": "Email", "type": "EMAIL"}),
                json!({"name": "notes", "label": "Notes", "type": "JSON"}),
                json!({"name": "phone", "label": "Phone", "type": "PHONE", "sensitive": {"encrypted": true, "searchable": true}}),
            ],
        )
        .await;
        for (region, last, email) in [("north", "Wang", "a@x.cn"), ("north", "Li", "b@x.cn"), ("south", "Li", "a@x.cn")]
        {
            let r = contact(&t, region, last, email).await;
            assert!(r.get("errors").is_none(), "{r}");
        }
        let r = t
            .meta_ok(
                CREATE_INDEX,
                json!({"o": "contact", "i": {"name": "by_region", "fields": ["region", "last_name"]}}),
            )
            .await;
        assert_eq!(r["createIndex"], json!({"name": "by_region", "fields": ["region", "last_name"], "unique": false}));
        let indexes = declared_indexes(&t, "obj_contact").await;
        assert_eq!(indexes.len(), 1, "{indexes:?}");
        match backend {
            Backend::Sqlite => assert_eq!(indexes[0].1, "region,last_name,id"),
            Backend::Postgres => assert!(indexes[0].1.contains("(region, last_name, id)"), "{indexes:?}"),
        }
        if backend == Backend::Sqlite {
            // The list query of a filter on the first field sorted by the second walks the index
            // and stops after the page, instead of sorting every match.
            let db = Database::connect(&t.database_url).await.unwrap();
            let plan = db
                .query_all_raw(Statement::from_string(
                    db.get_database_backend(),
                    "EXPLAIN QUERY PLAN SELECT id FROM obj_contact WHERE region = 'north' AND deleted_at IS NULL \
                     ORDER BY last_name ASC NULLS LAST, id ASC LIMIT 51"
                        .to_string(),
                ))
                .await
                .unwrap();
            let plan: Vec<String> = plan.iter().map(|r| r.try_get_by_index::<String>(3).unwrap()).collect();
            assert!(plan.iter().any(|p| p.contains("cx_obj_contact_by_region")), "{plan:?}");
            assert!(!plan.iter().any(|p| p.contains("TEMP B-TREE")), "{plan:?}");
            db.close().await.ok();
        }
        let r = t
            .data_ok(
                "{ contacts(filter: {region: {eq: \"north\"}}, orderBy: [{lastName: AscNullsLast}]) { nodes { lastName } } }",
                json!({}),
            )
            .await;
        assert_eq!(r["contacts"]["nodes"], json!([{"lastName": "Li"}, {"lastName": "Wang"}]));
        // Unique across fields: refused while two records share the values, then enforced.
        let unique =
            json!({"o": "contact", "i": {"name": "email_region", "fields": ["email", "region"], "unique": true}});
        t.meta_ok(CREATE_INDEX, unique.clone()).await;
        let r = contact(&t, "north", "Zhao", "a@x.cn").await;
        assert_eq!(error_codes(&r), ["CONFLICT"], "{r}");
        t.meta_ok("mutation { deleteIndex(object: \"contact\", name: \"email_region\") }", json!({})).await;
        let r = contact(&t, "north", "Zhao", "a@x.cn").await;
        assert!(r.get("errors").is_none(), "{r}");
        let r = t.meta(CREATE_INDEX, unique).await;
        assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "{r}");
        assert!(r["errors"][0]["message"].as_str().unwrap().contains("cannot be unique: records"), "{r}");
        // Bad declarations.
        for (fields, why) in [
            (json!(["nope"]), "is not a field"),
            (json!(["notes"]), "cannot be indexed"),
            (json!(["phone"]), "encrypted"),
            (json!([]), "1 to 5 fields"),
            (json!(["region", "region"]), "listed twice"),
        ] {
            let r = t.meta(CREATE_INDEX, json!({"o": "contact", "i": {"name": "bad", "fields": fields}})).await;
            assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "{r}");
            assert!(r["errors"][0]["message"].as_str().unwrap().contains(why), "{why}: {r}");
        }
        // A covered field cannot be deleted; a type change rebuilds the index around it.
        let r = t.meta("mutation { deleteField(object: \"contact\", field: \"last_name\") }", json!({})).await;
        assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "{r}");
        assert!(r["errors"][0]["message"].as_str().unwrap().contains("index `by_region`"), "{r}");
        t.meta_ok(
            "mutation { updateField(object: \"contact\", field: \"last_name\", input: {maxLength: 20}) { name } }",
            json!({}),
        )
        .await;
        let t = t.restart().await;
        assert_eq!(declared_indexes(&t, "obj_contact").await.len(), 1, "the rebuilt index is there");
        let r = t.meta_ok("{ object(name: \"contact\") { indexes { name fields } } }", json!({})).await;
        assert_eq!(r["object"]["indexes"], json!([{"name": "by_region", "fields": ["region", "last_name"]}]));
        t.meta_ok("mutation { deleteIndex(object: \"contact\", name: \"by_region\") }", json!({})).await;
        assert!(declared_indexes(&t, "obj_contact").await.is_empty());
        t.meta_ok("mutation { deleteField(object: \"contact\", field: \"last_name\") }", json!({})).await;
        t.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_statistics_follow_a_bulk_load() {
    for backend in backends().into_iter().filter(|b| *b == Backend::Postgres) {
        let t = TestServer::start(backend).await;
        t.object("visit", "visits", vec![json!({"name": "city", "label": "City", "type": "TEXT"})]).await;
        for batch in 0..3 {
            let rows: Vec<Value> =
                (0..400).map(|i| json!({"city": format!("city {}", (batch * 400 + i) % 7)})).collect();
            t.data_ok("mutation($d: [VisitInput!]!) { createVisits(data: $d) { id } }", json!({"d": rows})).await;
        }
        // Past 1,000 new rows the store has the table analysed, without waiting for autovacuum.
        let db = Database::connect(&t.database_url).await.unwrap();
        let mut analysed = false;
        for _ in 0..100 {
            let row = db
                .query_one_raw(Statement::from_string(
                    db.get_database_backend(),
                    "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'obj_visit'".to_string(),
                ))
                .await
                .unwrap()
                .unwrap();
            if row.try_get_by_index::<bool>(0).unwrap() {
                analysed = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(analysed, "obj_visit was not analysed after 1,200 inserted rows");
        db.close().await.ok();
        t.stop().await;
    }
}
