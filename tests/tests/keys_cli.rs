//! `tessera keys` as an operator runs it, against a database a server is serving: a rotation
//! killed mid-way resumes where it stopped with no value lost or left on the old key, and a
//! key backup restores the key file. SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use sea_orm::{ConnectionTrait, Database, Statement};
use serde_json::{Value, json};
use tessera_tests::{TestServer, each_backend, tessera_binary as tessera};

fn keys_command(t: &TestServer, args: &[&str]) -> Command {
    let mut c = Command::new(tessera());
    c.arg("keys")
        .args(args)
        .arg("--database-url")
        .arg(&t.database_url)
        .arg("--data-key-file")
        .arg(t.key_file().unwrap())
        .env_remove("TESSERA_DATA_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

async fn envelopes_by_version(t: &TestServer) -> Vec<(String, i64)> {
    let db = Database::connect(&t.database_url).await.unwrap();
    let sql = "SELECT substr(ssn, 1, 3), COUNT(*) FROM obj_member GROUP BY substr(ssn, 1, 3) ORDER BY 1";
    let rows = db.query_all_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap();
    db.close().await.ok();
    rows.iter().map(|r| (r.try_get_by_index::<String>(0).unwrap(), r.try_get_by_index::<i64>(1).unwrap())).collect()
}

#[tokio::test]
async fn a_killed_rotation_resumes_and_leaves_every_value_on_the_new_key() {
    each_backend!(|t| {
        t.object(
            "member",
            "members",
            vec![
                json!({"name": "name", "label": "Name", "type": "TEXT"}),
                json!({"name": "ssn", "label": "SSN", "type": "TEXT", "sensitive": {"encrypted": true, "searchable": true}}),
            ],
        )
        .await;
        let n = 3_000;
        for batch in 0..n / 500 {
            let data: Vec<Value> = (batch * 500..(batch + 1) * 500)
                .map(|i| json!({"name": format!("m{i}"), "ssn": format!("SSN-{i:06}")}))
                .collect();
            t.data_ok("mutation($d: [MemberInput!]!) { createMembers(data: $d) { id } }", json!({"d": data})).await;
        }
        assert_eq!(envelopes_by_version(&t).await, [("k1:".to_string(), n as i64)]);

        // Kill the rotation once it has rewritten some batches but not all.
        let mut child = keys_command(&t, &["rotate", "--batch-size", "10"]).spawn().unwrap();
        let mut partial = false;
        for _ in 0..400 {
            let counts = envelopes_by_version(&t).await;
            if counts.iter().any(|(v, c)| v == "k2:" && *c >= 50) {
                partial = counts.iter().any(|(v, _)| v == "k1:");
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(partial, "the rotation was killed half way: {:?}", envelopes_by_version(&t).await);
        // Writes go on meanwhile, and the server answers every value.
        t.data_ok("mutation { createMember(data: {name: \"late\", ssn: \"SSN-LATE\"}) { id } }", json!({})).await;
        let r = t.data_ok("{ members(first: 100) { nodes { ssn } } }", json!({})).await;
        assert_eq!(r["members"]["nodes"].as_array().unwrap().len(), 100);

        let output = tokio::task::spawn_blocking({
            let mut c = keys_command(&t, &["rotate", "--batch-size", "200"]);
            move || c.output().unwrap()
        })
        .await
        .unwrap();
        assert!(output.status.success(), "resumed: {}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(envelopes_by_version(&t).await, [("k2:".to_string(), n as i64 + 1)]);
        let status = t.meta_ok("{ keyStatus { activeVersion versions { version retiredAt } } }", json!({})).await;
        assert_eq!(status["keyStatus"]["activeVersion"], 2, "{status}");
        assert!(!status["keyStatus"]["versions"][0]["retiredAt"].is_null(), "version 1 retired: {status}");
        // Every value still reads and searches (the server reloaded the ring).
        let r = t
            .data_ok(
                "{ members(filter: {ssn: {in: [\"ssn-000007\", \"SSN-LATE\"]}}) { nodes { name ssn } } }",
                json!({}),
            )
            .await;
        assert_eq!(r["members"]["nodes"].as_array().unwrap().len(), 2, "{r}");
        let r = t.data("{ members(first: 100, after: null) { nodes { ssn } } }", json!({})).await;
        assert!(r.get("errors").is_none(), "{r}");

        // `status` reports the values per key version.
        let out = keys_command(&t, &["status"]).output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Active data key version: 2"), "{text}");

        // A backup sealed under a passphrase restores the key file, and never overwrites one.
        let dir = tempfile::tempdir().unwrap();
        let backup = dir.path().join("keys.backup");
        let out = keys_command(
            &t,
            &["export-backup", "--output", backup.to_str().unwrap(), "--passphrase-env", "BACKUP_PASS"],
        )
        .env("BACKUP_PASS", "a long enough passphrase")
        .output()
        .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let restored = dir.path().join("restored.key");
        let restore = |pass: &str, target: &PathBuf| {
            Command::new(tessera())
                .args([
                    "keys",
                    "restore-backup",
                    "--input",
                    backup.to_str().unwrap(),
                    "--passphrase-env",
                    "BACKUP_PASS",
                ])
                .arg("--data-key-file")
                .arg(target)
                .env("BACKUP_PASS", pass)
                .output()
                .unwrap()
        };
        assert!(!restore("the wrong passphrase!", &restored).status.success());
        assert!(!restored.exists());
        assert!(restore("a long enough passphrase", &restored).status.success());
        assert_eq!(
            std::fs::read_to_string(&restored).unwrap().trim(),
            std::fs::read_to_string(t.key_file().unwrap()).unwrap().trim()
        );
        assert!(!restore("a long enough passphrase", &t.key_file().unwrap()).status.success(), "never overwrites");
    });
}
