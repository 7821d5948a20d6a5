//! The `tessera` binary itself (building this test also builds the binary that the end-to-end
//! tests of `tessera keys` run).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

#[test]
fn keys_status_on_a_database_without_a_key_ring_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("fresh.db").display());
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["keys", "status", "--database-url", &url])
        .env_remove("TESSERA_DATA_KEY")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("No key ring yet"), "{text}");
}

#[test]
fn rotate_on_a_database_without_a_key_ring_fails_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("fresh.db").display());
    let missing = dir.path().join("missing.key");
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["keys", "rotate", "--database-url", &url, "--data-key-file"])
        .arg(&missing)
        .env_remove("TESSERA_DATA_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("no key ring yet"), "{text}");
}
