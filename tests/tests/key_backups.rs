//! Key backups as an operator restores them with `tessera keys restore-backup`: the header of
//! a backup (its key derivation above all) is authenticated, derivation parameters outside
//! their bounds are refused before any memory is spent on them, and backups written before
//! the header was authenticated still restore. SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use tessera_tests::{each_backend, tessera_binary as tessera};

const PASSPHRASE: &str = "a long enough passphrase";

fn restore(backup: &Path, passphrase: &str, target: &Path) -> Output {
    Command::new(tessera())
        .args(["keys", "restore-backup", "--passphrase-env", "BACKUP_PASS", "--input"])
        .arg(backup)
        .arg("--data-key-file")
        .arg(target)
        .env("BACKUP_PASS", passphrase)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// A copy of the backup at `from` with its JSON changed by `edit`.
fn altered(from: &Path, to: &Path, edit: impl FnOnce(&mut Value)) {
    let mut json: Value = serde_json::from_str(&std::fs::read_to_string(from).unwrap()).unwrap();
    edit(&mut json);
    std::fs::write(to, json.to_string()).unwrap();
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

#[test]
fn a_backup_written_before_headers_were_authenticated_still_restores() {
    // Written by `tessera keys export-backup` as it was before version 2 (a throwaway key).
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("restored.key");
    let out = restore(&fixture("key-backup-v1.json"), "fixture passphrase v1", &target);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(&target).unwrap().trim(),
        std::fs::read_to_string(fixture("key-backup-v1.key")).unwrap().trim()
    );
}

#[test]
fn derivation_parameters_beyond_their_bounds_are_refused_before_deriving() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("restored.key");
    // 512 MiB and 2^32 passes of Argon2 would be spent before the passphrase could fail.
    for (field, value) in [("memoryKib", 512 * 1024_u64), ("iterations", u64::from(u32::MAX))] {
        let tampered = dir.path().join(format!("{field}.backup"));
        altered(&fixture("key-backup-v1.json"), &tampered, |j| j["kdf"][field] = value.into());
        let out = restore(&tampered, "fixture passphrase v1", &target);
        assert!(!out.status.success());
        let message = stderr(&out);
        assert!(message.contains("outside the accepted bounds") && message.contains(field), "{field}: {message}");
        assert!(!target.exists());
    }
}

#[tokio::test]
async fn an_altered_backup_header_fails_authentication() {
    each_backend!(|t| {
        let dir = tempfile::tempdir().unwrap();
        let backup = dir.path().join("keys.backup");
        let out = Command::new(tessera())
            .args(["keys", "export-backup", "--passphrase-env", "BACKUP_PASS", "--output"])
            .arg(&backup)
            .arg("--database-url")
            .arg(&t.database_url)
            .arg("--data-key-file")
            .arg(t.key_file().unwrap())
            .env_remove("TESSERA_DATA_KEY")
            .env("BACKUP_PASS", PASSPHRASE)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let target = dir.path().join("restored.key");
        // Any change to the header, even one the key derivation does not read, is detected;
        // and so is passing the file off as version 1, whose header was not authenticated.
        for (what, value) in [("createdAt", Value::from("2031-01-01T00:00:00Z")), ("version", Value::from(1))] {
            let tampered = dir.path().join(format!("{what}.backup"));
            altered(&backup, &tampered, |j| j[what] = value);
            let out = restore(&tampered, PASSPHRASE, &target);
            assert!(!out.status.success(), "[{:?}] an altered {what} restored", t.backend);
            assert!(stderr(&out).contains("the file was altered"), "{}", stderr(&out));
            assert!(!target.exists());
        }
        let out = restore(&backup, PASSPHRASE, &target);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(
            std::fs::read_to_string(&target).unwrap().trim(),
            std::fs::read_to_string(t.key_file().unwrap()).unwrap().trim()
        );
    });
}
