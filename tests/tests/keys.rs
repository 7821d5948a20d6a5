//! Field encryption keys: the master key file at start-up, online rotation (interrupted and
//! resumed, with writes going on), field conversion, and tampered ciphertexts — on SQLite and
//! PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement, TransactionTrait};
use serde_json::{Value, json};
use tessera_platform::crypto::keys::{self, KeySource};
use tessera_platform::crypto::{Aad, KeyRing, MasterKey, envelope_version};
use tessera_platform::server::{Config, StartError, start};
use tessera_platform::store::{JobState, RekeyOptions, RotationOutcome, Store, StoreError};
use tessera_tests::{ADMIN_EMAIL, ADMIN_PASSWORD, TestDatabase, TestServer, backends};

fn config(db: &TestDatabase) -> Config {
    Config {
        database_url: db.url.clone(),
        bind: "127.0.0.1:0".into(),
        admin_email: Some(ADMIN_EMAIL.into()),
        admin_password: Some(ADMIN_PASSWORD.into()),
        data_key_file: Some(db.key_file()),
        ..Config::default()
    }
}

/// A store of its own on the server's database with the key ring opened: what
/// `tessera keys …` uses.
async fn key_store(t: &TestServer) -> Store {
    let store = Store::connect(&t.database_url).await.unwrap();
    keys::open_existing(&store, &KeySource::new(t.key_file(), None)).await.unwrap();
    store
}

async fn raw(t: &TestServer) -> DatabaseConnection {
    Database::connect(t.database_url.clone()).await.unwrap()
}

fn stmt(conn: &DatabaseConnection, sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    let sql = if conn.get_database_backend() == sea_orm::DbBackend::Postgres {
        let mut n = 0;
        sql.chars()
            .map(|c| {
                if c == '?' {
                    n += 1;
                    format!("${n}")
                } else {
                    c.to_string()
                }
            })
            .collect()
    } else {
        sql.to_string()
    };
    Statement::from_sql_and_values(conn.get_database_backend(), sql, values)
}

async fn rows(conn: &DatabaseConnection, sql: &str) -> Vec<Vec<Option<String>>> {
    let result = conn.query_all_raw(stmt(conn, sql, vec![])).await.unwrap();
    result
        .iter()
        .map(|r| {
            let n = r.column_names().len();
            (0..n).map(|i| r.try_get_by_index::<Option<String>>(i).unwrap()).collect()
        })
        .collect()
}

/// Marks fields of an object sensitive in its stored definition, as the metadata change that
/// makes a field encrypted will, and bumps the metadata version so servers reload.
async fn mark_encrypted(conn: &DatabaseConnection, object: &str, fields: &[(&str, bool)]) {
    let defs = rows(conn, &format!("SELECT definition FROM sys_objects WHERE name = '{object}'")).await;
    let mut def: Value = serde_json::from_str(defs[0][0].as_deref().unwrap()).unwrap();
    for f in def["fields"].as_array_mut().unwrap() {
        if let Some((_, searchable)) = fields.iter().find(|(n, _)| f["name"] == *n) {
            f["sensitive"] = json!({"encrypted": true, "searchable": searchable, "mask": "NONE"});
        }
    }
    conn.execute_raw(stmt(
        conn,
        "UPDATE sys_objects SET definition = ? WHERE name = ?",
        vec![def.to_string().into(), object.into()],
    ))
    .await
    .unwrap();
    conn.execute_unprepared("UPDATE sys_metadata SET value = value + 1 WHERE key = 'version'").await.unwrap();
}

/// Creates `n` records of `patient` with a national id and a note; returns their ids in order.
async fn patients(t: &TestServer, n: usize) -> Vec<String> {
    t.object(
        "patient",
        "patients",
        vec![
            json!({"name": "national_id", "label": "ID", "type": "TEXT"}),
            json!({"name": "note", "label": "Note", "type": "TEXT"}),
        ],
    )
    .await;
    let mut ids = Vec::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let data: Vec<Value> =
            chunk.iter().map(|i| json!({"nationalId": format!("ID-{i:05}"), "note": "first"})).collect();
        let r =
            t.data_ok("mutation($d: [PatientInput!]!) { createPatients(data: $d) { id } }", json!({"d": data})).await;
        ids.extend(r["createPatients"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_string()));
    }
    ids.sort();
    ids
}

const PATIENT: &str = "patient";

fn aad<'a>(field: &'a str, id: &'a str) -> Aad<'a> {
    Aad { object: PATIENT, field, record_id: id }
}

/// Replaces the plaintext national ids in the table and in the audit images with envelopes
/// of the ring's active key, as the write path stores them.
async fn encrypt_in_place(conn: &DatabaseConnection, ring: &KeyRing) {
    let records = rows(conn, "SELECT id, national_id FROM obj_patient").await;
    let audit =
        rows(conn, "SELECT id, record_id, after_image FROM sys_audit WHERE object = 'patient' AND category = 'record'")
            .await;
    let txn = conn.begin().await.unwrap();
    for r in records {
        let (id, value) = (r[0].clone().unwrap(), r[1].clone().unwrap());
        let sealed = ring.encrypt(aad("national_id", &id), &value);
        txn.execute_raw(stmt(
            conn,
            "UPDATE obj_patient SET national_id = ? WHERE id = ?",
            vec![sealed.into(), id.into()],
        ))
        .await
        .unwrap();
    }
    for r in audit {
        let (id, record) = (r[0].clone().unwrap(), r[1].clone().unwrap());
        let mut image: Value = serde_json::from_str(r[2].as_deref().unwrap()).unwrap();
        let plain = image["national_id"].as_str().unwrap().to_string();
        image["national_id"] = json!(ring.encrypt(aad("national_id", &record), &plain));
        txn.execute_raw(stmt(
            conn,
            "UPDATE sys_audit SET after_image = ? WHERE id = ?",
            vec![image.to_string().into(), id.into()],
        ))
        .await
        .unwrap();
    }
    txn.commit().await.unwrap();
}

#[tokio::test]
async fn generates_a_private_key_file_and_restarts_with_it() {
    for backend in backends() {
        let db = TestDatabase::create(backend).await;
        let key_file = db.key_file();
        assert!(!key_file.exists());
        let t = TestServer::start_on_database(db).await;
        assert!(key_file.exists(), "[{backend:?}] the key file is generated on first start");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "[{backend:?}] only the owner may read the key file");
        }
        let text = std::fs::read_to_string(&key_file).unwrap();
        assert!(MasterKey::parse(&text).is_ok());
        let status = t.meta_ok("{ keyStatus { activeVersion versions { version retiredAt } } }", json!({})).await;
        assert_eq!(status["keyStatus"], json!({"activeVersion": 1, "versions": [{"version": 1, "retiredAt": null}]}));
        let t = t.restart().await;
        assert_eq!(std::fs::read_to_string(&key_file).unwrap(), text, "a restart keeps the key file");
        let after = t.meta_ok("{ keyStatus { activeVersion } }", json!({})).await;
        assert_eq!(after["keyStatus"]["activeVersion"], 1);
        t.stop().await;
    }
}

#[tokio::test]
async fn refuses_to_start_without_the_master_key_or_with_another() {
    for backend in backends() {
        let db = TestDatabase::create(backend).await;
        let first = start(config(&db)).await.unwrap();
        first.shutdown().await;

        let missing = db.key_file().with_file_name("elsewhere.key");
        let error = start(Config { data_key_file: Some(missing.clone()), ..config(&db) }).await.err().unwrap();
        assert!(matches!(error, StartError::Keys(_)), "[{backend:?}] {error}");
        let message = error.to_string();
        assert!(message.contains(&missing.display().to_string()), "{message}");
        assert!(message.contains("--data-key-file"), "{message}");
        assert!(!missing.exists(), "no key is generated for a database that has a key ring");

        let wrong = db.key_file().with_file_name("wrong.key");
        keys::write_new_key_file(&wrong, &MasterKey::generate()).unwrap();
        let message =
            start(Config { data_key_file: Some(wrong.clone()), ..config(&db) }).await.err().unwrap().to_string();
        assert!(message.contains("does not open this database's key ring"), "{message}");
        assert!(message.contains(&wrong.display().to_string()), "{message}");

        let env_key = MasterKey::generate().encode();
        let message = start(Config { data_key: Some(env_key), ..config(&db) }).await.err().unwrap().to_string();
        assert!(message.contains("TESSERA_DATA_KEY") && message.contains("does not open"), "{message}");

        // The right key still opens it.
        start(config(&db)).await.unwrap().shutdown().await;
        db.drop_database().await;
    }
}

#[tokio::test]
async fn rotation_resumes_after_interruption_while_writes_go_on() {
    for backend in backends() {
        let t = TestServer::start(backend).await;
        let ids = patients(&t, 2000).await;
        let conn = raw(&t).await;
        mark_encrypted(&conn, PATIENT, &[("national_id", false)]).await;
        let store = key_store(&t).await;
        let v1 = store.key_ring().unwrap();
        encrypt_in_place(&conn, &v1).await;

        // Interrupted after ten batches of fifty: a new version, part of the rows moved.
        let options = RekeyOptions { batch_size: 50, max_batches: Some(10) };
        let outcome = store.rotate_keys(options, |_| {}).await.unwrap();
        assert_eq!(outcome, RotationOutcome::Paused { version: 2 }, "[{backend:?}]");
        let jobs = store.key_jobs(true).await.unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!((jobs[0].done, jobs[0].state), (500, JobState::Running));
        let on_v2 = rows(&conn, "SELECT id FROM obj_patient WHERE national_id LIKE 'k2:%'").await.len();
        assert_eq!(on_v2, 500, "[{backend:?}] ten batches of fifty were re-encrypted");

        // A node that has not reloaded yet writes with key 1 behind the cursor.
        let straggler = &ids[3];
        let stale = v1.encrypt(aad("national_id", straggler), "ID-LATE");
        conn.execute_raw(stmt(
            &conn,
            "UPDATE obj_patient SET national_id = ? WHERE id = ?",
            vec![stale.into(), straggler.clone().into()],
        ))
        .await
        .unwrap();

        // Writes through the API go on while the rotation resumes.
        let writer = {
            let client = t.client.clone();
            let base = t.base.clone();
            let token = t.token.clone();
            let ids: Vec<String> = ids.iter().step_by(97).cloned().collect();
            tokio::spawn(async move {
                for (n, id) in ids.iter().enumerate() {
                    let body = json!({"query": "mutation($id: ID!, $d: PatientInput!) { updatePatient(id: $id, data: $d) { id } }",
                                      "variables": {"id": id, "d": {"note": format!("edited {n}")}}});
                    let r: Value = client
                        .post(format!("{base}/graphql"))
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    assert!(r.get("errors").is_none(), "{r}");
                }
                ids
            })
        };
        let mut seen = Vec::new();
        let outcome = store
            .rotate_keys(RekeyOptions { batch_size: 50, max_batches: None }, |p| seen.push((p.done, p.total)))
            .await
            .unwrap();
        let edited = writer.await.unwrap();
        match outcome {
            RotationOutcome::Done { version, retired, resumed, .. } => {
                assert_eq!((version, retired, resumed), (2, vec![1], true), "[{backend:?}]");
            }
            other => panic!("[{backend:?}] {other:?}"),
        }
        assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "progress only moves on: {seen:?}");
        assert_eq!(seen.last().map(|s| s.0), seen.last().map(|s| s.1), "progress ends at the total");

        // Every value decrypts, on version 2 only; nothing was lost.
        let ring: Arc<KeyRing> = store.key_ring().unwrap();
        let stored = rows(&conn, "SELECT id, national_id, note FROM obj_patient ORDER BY id").await;
        assert_eq!(stored.len(), 2000);
        for (i, r) in stored.iter().enumerate() {
            let (id, value) = (r[0].as_deref().unwrap(), r[1].as_deref().unwrap());
            assert_eq!(envelope_version(value), Some(2), "[{backend:?}] {id}");
            let plain = ring.decrypt(aad("national_id", id), value).unwrap();
            let expected = if id == straggler { "ID-LATE".to_string() } else { format!("ID-{i:05}") };
            assert_eq!(plain, expected);
        }
        for (n, id) in edited.iter().enumerate() {
            let note = stored.iter().find(|r| r[0].as_deref() == Some(id)).unwrap()[2].clone();
            assert_eq!(note.as_deref(), Some(format!("edited {n}").as_str()), "the API's writes are kept");
        }
        // Audit images too, the ones the API's updates appended included.
        let audit = rows(&conn, "SELECT record_id, before_image, after_image FROM sys_audit WHERE object = 'patient' AND category = 'record'").await;
        assert!(audit.len() >= 2000 + edited.len());
        let mut envelopes = 0;
        for r in &audit {
            for image in [&r[1], &r[2]].into_iter().flatten() {
                let image: Value = serde_json::from_str(image).unwrap();
                if let Some(v) = image["national_id"].as_str() {
                    assert_eq!(envelope_version(v), Some(2), "audit image {image}");
                    ring.decrypt(aad("national_id", r[0].as_deref().unwrap()), v).unwrap();
                    envelopes += 1;
                }
            }
        }
        assert!(envelopes >= 2000);

        // The old version is kept but retired; the server sees it through the API.
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        let status = t.meta_ok("{ keyStatus { activeVersion versions { version retiredAt } } keyJobs(all: true) { kind state done total } }", json!({})).await;
        assert_eq!(status["keyStatus"]["activeVersion"], 2);
        assert!(status["keyStatus"]["versions"][0]["retiredAt"].is_string());
        assert!(status["keyStatus"]["versions"][1]["retiredAt"].is_null());
        assert_eq!(status["keyJobs"][0]["state"], "done");
        assert_eq!(
            t.server.as_ref().unwrap().store.key_ring().unwrap().active_version(),
            2,
            "the server reloaded the ring"
        );

        // Running it again starts a new rotation rather than repeating this one.
        let again = store.rotate_keys(RekeyOptions::default(), |_| {}).await.unwrap();
        assert!(matches!(again, RotationOutcome::Done { version: 3, resumed: false, .. }), "{again:?}");
        conn.close().await.ok();
        t.stop().await;
    }
}

#[tokio::test]
async fn tampered_ciphertext_fails_the_rotation_and_names_the_record() {
    for backend in backends() {
        let t = TestServer::start(backend).await;
        let ids = patients(&t, 30).await;
        let conn = raw(&t).await;
        mark_encrypted(&conn, PATIENT, &[("national_id", false)]).await;
        let store = key_store(&t).await;
        encrypt_in_place(&conn, &store.key_ring().unwrap()).await;
        let victim = &ids[17];
        let original = rows(&conn, &format!("SELECT national_id FROM obj_patient WHERE id = '{victim}'")).await[0][0]
            .clone()
            .unwrap();
        let mut bytes = original.clone().into_bytes();
        let at = bytes.len() - 4;
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        conn.execute_raw(stmt(
            &conn,
            "UPDATE obj_patient SET national_id = ? WHERE id = ?",
            vec![tampered.clone().into(), victim.clone().into()],
        ))
        .await
        .unwrap();

        let error = store.rotate_keys(RekeyOptions { batch_size: 8, max_batches: None }, |_| {}).await.unwrap_err();
        let StoreError::Refused(message) = error else { panic!("[{backend:?}] {error}") };
        assert!(message.contains(victim.as_str()) && message.contains("patient.national_id"), "{message}");
        assert!(message.contains("fails authentication"), "{message}");
        let now =
            rows(&conn, &format!("SELECT national_id FROM obj_patient WHERE id = '{victim}'")).await[0][0].clone();
        assert_eq!(now.as_deref(), Some(tampered.as_str()), "the tampered value is left for inspection");

        let jobs = t.meta_ok("{ keyJobs { kind state error } }", json!({})).await;
        assert_eq!(jobs["keyJobs"][0]["state"], "failed");
        assert!(jobs["keyJobs"][0]["error"].as_str().unwrap().contains(victim.as_str()));
        let status = t.meta_ok("{ keyStatus { versions { retiredAt } } }", json!({})).await;
        assert!(status["keyStatus"]["versions"][0]["retiredAt"].is_null(), "nothing is retired while values remain");

        // Once repaired, running the rotation again resumes and finishes it.
        conn.execute_raw(stmt(
            &conn,
            "UPDATE obj_patient SET national_id = ? WHERE id = ?",
            vec![original.into(), victim.clone().into()],
        ))
        .await
        .unwrap();
        let outcome = store.rotate_keys(RekeyOptions { batch_size: 8, max_batches: None }, |_| {}).await.unwrap();
        assert!(matches!(outcome, RotationOutcome::Done { version: 2, resumed: true, .. }), "{outcome:?}");
        conn.close().await.ok();
        t.stop().await;
    }
}

#[tokio::test]
async fn field_conversion_encrypts_plaintext_and_fills_blind_indexes_in_the_background() {
    for backend in backends() {
        let t = TestServer::start(backend).await;
        let ids = patients(&t, 120).await;
        let conn = raw(&t).await;
        // The blind index column, as the DDL of a searchable field makes it.
        conn.execute_unprepared("ALTER TABLE obj_patient ADD COLUMN national_id__bidx BIGINT").await.unwrap();
        mark_encrypted(&conn, PATIENT, &[("national_id", true)]).await;
        let server_store = t.server.as_ref().unwrap().store.clone();
        server_store.queue_field_conversion(PATIENT, "national_id").await.unwrap();
        assert!(server_store.is_converting(PATIENT, "national_id"), "reads accept plaintext from the start");

        let mut state = Value::Null;
        for _ in 0..100 {
            let jobs =
                t.meta_ok("{ keyJobs(all: true) { kind object field state done total error } }", json!({})).await;
            state = jobs["keyJobs"][0].clone();
            if state["state"] == "done" || state["state"] == "failed" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        assert_eq!(state["state"], "done", "[{backend:?}] {state}");
        assert_eq!((state["kind"].as_str(), state["field"].as_str()), (Some("convert_field"), Some("national_id")));
        assert!(!server_store.is_converting(PATIENT, "national_id"), "the field is no longer converting");

        let ring = server_store.key_ring().unwrap();
        let stored =
            rows(&conn, "SELECT id, national_id, CAST(national_id__bidx AS TEXT) FROM obj_patient ORDER BY id").await;
        for (i, r) in stored.iter().enumerate() {
            assert_eq!(r[0].as_deref(), Some(ids[i].as_str()));
            let plain = ring.decrypt(aad("national_id", &ids[i]), r[1].as_deref().unwrap()).unwrap();
            assert_eq!(plain, format!("ID-{i:05}"));
            assert_eq!(r[2], Some(ring.blind_index(tessera_metadata::FieldType::Text, &plain).to_string()));
        }
        let audit =
            rows(&conn, "SELECT after_image FROM sys_audit WHERE object = 'patient' AND category = 'record'").await;
        for r in &audit {
            let image: Value = serde_json::from_str(r[0].as_deref().unwrap()).unwrap();
            assert_eq!(
                envelope_version(image["national_id"].as_str().unwrap()),
                Some(1),
                "audit images are encrypted too"
            );
        }
        conn.close().await.ok();
        t.stop().await;
    }
}

/// Each member's id and the blind index stored for its phone, by id.
async fn phone_indexes(conn: &DatabaseConnection) -> std::collections::BTreeMap<String, i64> {
    let result = conn.query_all_raw(stmt(conn, "SELECT id, phone__bidx FROM obj_member", vec![])).await.unwrap();
    result.iter().map(|r| (r.try_get_by_index::<String>(0).unwrap(), r.try_get_by_index::<i64>(1).unwrap())).collect()
}

#[tokio::test]
async fn rotation_turns_over_the_blind_index_key_and_lookups_match_both_keys_meanwhile() {
    for backend in backends() {
        let t = TestServer::start(backend).await;
        t.object(
            "member",
            "members",
            vec![
                json!({"name": "name", "label": "Name", "type": "TEXT"}),
                json!({"name": "phone", "label": "手机号", "type": "PHONE", "unique": true,
                       "sensitive": {"encrypted": true, "searchable": true}}),
                json!({"name": "email", "label": "Email", "type": "EMAIL",
                       "sensitive": {"encrypted": true, "searchable": true}}),
            ],
        )
        .await;
        let phone = |i: usize| format!("1380000{i:04}");
        // Two members share an email once normalised; the field is not unique (yet).
        let email = |i: usize| if i == 1 { "M0@Example.com".to_string() } else { format!("m{i}@example.com") };
        let data: Vec<Value> =
            (0..300).map(|i| json!({"name": format!("m{i}"), "phone": phone(i), "email": email(i)})).collect();
        t.data_ok("mutation($d: [MemberInput!]!) { createMembers(data: $d) { id } }", json!({"d": data})).await;
        let conn = raw(&t).await;
        let before = phone_indexes(&conn).await;
        let ids: Vec<String> = before.keys().cloned().collect();
        let store = key_store(&t).await;

        // Interrupted after two batches of fifty: a hundred rows carry the new key's indexes.
        let outcome = store.rotate_keys(RekeyOptions { batch_size: 50, max_batches: Some(2) }, |_| {}).await.unwrap();
        assert_eq!(outcome, RotationOutcome::Paused { version: 2 }, "[{backend:?}]");
        let during = phone_indexes(&conn).await;
        let moved: Vec<&String> = ids.iter().filter(|id| during[*id] != before[*id]).collect();
        assert_eq!(moved.len(), 100, "[{backend:?}] the rewritten rows have new blind indexes");
        let status = store.key_status().await.unwrap();
        let blind: Vec<(u32, bool)> =
            status.blind_index_versions.iter().map(|v| (v.version, v.retired_at.is_some())).collect();
        assert_eq!(blind, [(1, false), (2, false)], "[{backend:?}] both keys are matched meanwhile");

        // A member still under the old key and one already under the new.
        let names: std::collections::HashMap<String, usize> = rows(&conn, "SELECT id, name FROM obj_member")
            .await
            .into_iter()
            .map(|r| (r[0].clone().unwrap(), r[1].as_deref().unwrap()[1..].parse().unwrap()))
            .collect();
        let old_id = ids.iter().find(|id| !moved.contains(id)).unwrap().clone();
        let (old, new) = (phone(names[&old_id]), phone(names[moved[0]]));

        // The server has reloaded the ring; its lookups find rows under either key.
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        let find = "query($f: MemberFilter) { members(filter: $f) { totalCount nodes { id } } }";
        for (value, id) in [(&old, &old_id), (&new, moved[0])] {
            let r = t.data_ok(find, json!({"f": {"phone": {"eq": format!("+86 {value}")}}})).await;
            assert_eq!(r["members"]["nodes"], json!([{"id": id}]), "[{backend:?}] {value}");
        }
        let r = t.data_ok(find, json!({"f": {"phone": {"in": [old.clone(), new.clone()]}}})).await;
        assert_eq!(r["members"]["totalCount"], 2, "[{backend:?}]");
        let r = t.data_ok(find, json!({"f": {"not": {"phone": {"eq": old.clone()}}}})).await;
        assert_eq!(r["members"]["totalCount"], 299, "[{backend:?}]");
        // Uniqueness holds across the keys, and an upsert matches a row under the old one.
        for value in [&old, &new] {
            let r = t
                .data(
                    "mutation($p: String) { createMember(data: {name: \"dup\", phone: $p}) { id } }",
                    json!({"p": value}),
                )
                .await;
            assert_eq!(tessera_tests::error_codes(&r), ["CONFLICT"], "[{backend:?}] {r}");
        }
        let r = t
            .data_ok(
                "mutation($p: String) { createMembers(data: [{name: \"renamed\", phone: $p}], upsert: {onConflict: [\"phone\"], update: [\"name\"]}) { id } }",
                json!({"p": old}),
            )
            .await;
        assert_eq!(r["createMembers"][0]["id"], old_id.as_str(), "[{backend:?}] {r}");

        // Making a field unique mid-rotation compares the decrypted values, not the indexes
        // under two keys: the shared email is found.
        let unique =
            "mutation($f: String!) { updateField(object: \"member\", field: $f, input: {unique: true}) { unique } }";
        let r = t.meta(unique, json!({"f": "email"})).await;
        assert_eq!(tessera_tests::error_codes(&r), ["BAD_USER_INPUT"], "[{backend:?}] {r}");
        assert!(r["errors"][0]["message"].as_str().unwrap().contains("hold the same value"), "[{backend:?}] {r}");

        // Resumed to the end: no row keeps an index of the old key, which is retired.
        let outcome = store.rotate_keys(RekeyOptions { batch_size: 50, max_batches: None }, |_| {}).await.unwrap();
        assert!(matches!(outcome, RotationOutcome::Done { version: 2, .. }), "[{backend:?}] {outcome:?}");
        let after = phone_indexes(&conn).await;
        assert_eq!(after.len(), 300);
        let old_indexes: std::collections::HashSet<i64> = before.values().copied().collect();
        assert!(after.values().all(|i| !old_indexes.contains(i)), "[{backend:?}] an old index is left");
        let status = store.key_status().await.unwrap();
        let blind: Vec<(u32, bool)> =
            status.blind_index_versions.iter().map(|v| (v.version, v.retired_at.is_some())).collect();
        assert_eq!(blind, [(1, true), (2, false)], "[{backend:?}]");
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        let r = t.data_ok(find, json!({"f": {"phone": {"eq": old.clone()}}})).await;
        assert_eq!(r["members"]["nodes"], json!([{"id": old_id}]), "[{backend:?}]");
        // Once the second member's email changes, the field becomes unique.
        let second = names.iter().find(|(_, i)| **i == 1).unwrap().0;
        t.data_ok(
            "mutation($id: ID!) { updateMember(id: $id, data: {email: \"m1@example.com\"}) { id } }",
            json!({"id": second}),
        )
        .await;
        assert_eq!(t.meta_ok(unique, json!({"f": "email"})).await["updateField"]["unique"], true, "[{backend:?}]");
        let r = t
            .data("mutation { createMember(data: {name: \"dup\", email: \"M2@Example.COM\"}) { id } }", json!({}))
            .await;
        assert_eq!(tessera_tests::error_codes(&r), ["CONFLICT"], "[{backend:?}] {r}");
        let r = t.meta_ok("{ keyStatus { blindIndexVersions { version retiredAt } } }", json!({})).await;
        let versions = &r["keyStatus"]["blindIndexVersions"];
        assert_eq!((versions[0]["version"].clone(), versions[1]["version"].clone()), (json!(1), json!(2)));
        assert!(versions[0]["retiredAt"].is_string() && versions[1]["retiredAt"].is_null(), "{r}");
        let r = t
            .data("mutation($p: String) { createMember(data: {name: \"dup\", phone: $p}) { id } }", json!({"p": new}))
            .await;
        assert_eq!(tessera_tests::error_codes(&r), ["CONFLICT"], "[{backend:?}] {r}");
        conn.close().await.ok();
        t.stop().await;
    }
}
