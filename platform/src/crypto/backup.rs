//! Offline backups of the keys: the master key and the (wrapped) key ring sealed with
//! AES-256-GCM under a key derived from a passphrase with Argon2id, so an operator can keep
//! one file apart from both the database and the server.

use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use super::{KEY_BYTES, KeyMaterial, MasterKey, Secret, open, seal};
use crate::store::KeyRingRow;

const FORMAT: &str = "tessera-key-backup";
const AAD: &[u8] = b"tessera-key-backup-v1";
/// Shortest passphrase accepted: the file leaves the server, so its passphrase is all that
/// protects it.
pub const MIN_PASSPHRASE_CHARS: usize = 12;

/// Failures of sealing and opening a backup; none carries a key or the passphrase.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("the passphrase is too short: use at least {MIN_PASSPHRASE_CHARS} characters")]
    WeakPassphrase,
    #[error("the file is not a Tessera key backup: {0}")]
    Format(String),
    #[error("the passphrase does not open this backup, or the file was altered")]
    WrongPassphrase,
    #[error("cannot derive the key from the passphrase: {0}")]
    Kdf(String),
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Kdf {
    algorithm: String,
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
    salt: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SealedFile {
    format: String,
    version: u32,
    created_at: DateTime<Utc>,
    kdf: Kdf,
    sealed: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BackupRow {
    purpose: String,
    version: u32,
    wrapped: String,
    created_at: DateTime<Utc>,
    retired_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Contents {
    master_key: String,
    key_ring: Vec<BackupRow>,
}

/// What a backup holds once opened.
#[derive(Debug)]
pub struct KeyBackup {
    pub master: MasterKey,
    pub rows: Vec<KeyRingRow>,
}

fn derive(passphrase: &str, kdf: &Kdf) -> Result<KeyMaterial, BackupError> {
    if kdf.algorithm != "argon2id" {
        return Err(BackupError::Format(format!("unknown key derivation `{}`", kdf.algorithm)));
    }
    let salt = STANDARD_NO_PAD.decode(&kdf.salt).map_err(|_| BackupError::Format("bad salt".into()))?;
    let params = Params::new(kdf.memory_kib, kdf.iterations, kdf.parallelism, Some(KEY_BYTES))
        .map_err(|e| BackupError::Kdf(e.to_string()))?;
    let mut bytes = [0u8; KEY_BYTES];
    let derived = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), &salt, &mut bytes)
        .map_err(|e| BackupError::Kdf(e.to_string()));
    let key = KeyMaterial::from_bytes(bytes);
    bytes.zeroize();
    derived.map(|()| key)
}

/// Seals the master key and the key ring under `passphrase`; returns the file's text.
pub fn seal_backup(master: &MasterKey, rows: &[KeyRingRow], passphrase: &str) -> Result<String, BackupError> {
    if passphrase.chars().count() < MIN_PASSPHRASE_CHARS {
        return Err(BackupError::WeakPassphrase);
    }
    let salt: [u8; 16] = rand::random();
    // OWASP's Argon2id figures, raised: unlocking a backup is rare and may take a second.
    let kdf = Kdf {
        algorithm: "argon2id".into(),
        memory_kib: 64 * 1024,
        iterations: 3,
        parallelism: 1,
        salt: STANDARD_NO_PAD.encode(salt),
    };
    let key = derive(passphrase, &kdf)?;
    let contents = Contents {
        master_key: master.encode().expose().clone(),
        key_ring: rows
            .iter()
            .map(|r| BackupRow {
                purpose: r.purpose.clone(),
                version: r.version,
                wrapped: r.wrapped.clone(),
                created_at: r.created_at,
                retired_at: r.retired_at,
            })
            .collect(),
    };
    let plain = Secret::new(serde_json::to_vec(&contents).map_err(|e| BackupError::Format(e.to_string()))?);
    let file = SealedFile {
        format: FORMAT.into(),
        version: 1,
        created_at: Utc::now(),
        kdf,
        sealed: seal(&key.cipher(), AAD, plain.expose()),
    };
    serde_json::to_string_pretty(&file).map_err(|e| BackupError::Format(e.to_string()))
}

/// Opens a backup's text with its passphrase.
pub fn open_backup(text: &str, passphrase: &str) -> Result<KeyBackup, BackupError> {
    let file: SealedFile = serde_json::from_str(text).map_err(|e| BackupError::Format(e.to_string()))?;
    if file.format != FORMAT || file.version != 1 {
        return Err(BackupError::Format(format!("format {} version {}", file.format, file.version)));
    }
    let key = derive(passphrase, &file.kdf)?;
    let plain = Secret::new(open(&key.cipher(), AAD, &file.sealed).map_err(|_| BackupError::WrongPassphrase)?);
    let contents: Contents =
        serde_json::from_slice(plain.expose()).map_err(|_| BackupError::Format("unreadable contents".into()))?;
    let master_text = Secret::new(contents.master_key);
    let master = MasterKey::parse(master_text.expose()).map_err(|e| BackupError::Format(e.to_string()))?;
    let rows = contents
        .key_ring
        .into_iter()
        .map(|r| KeyRingRow {
            purpose: r.purpose,
            version: r.version,
            wrapped: r.wrapped,
            created_at: r.created_at,
            retired_at: r.retired_at,
        })
        .collect();
    Ok(KeyBackup { master, rows })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::crypto::keys::{new_ring_rows, open_ring};

    #[test]
    fn seals_and_opens_only_with_the_passphrase() {
        let master = MasterKey::generate();
        let rows = new_ring_rows(&master);
        let text = seal_backup(&master, &rows, "a long passphrase here").unwrap();
        assert!(!text.contains(master.encode().expose().as_str()));
        assert!(!text.contains(&rows[0].wrapped));
        let opened = open_backup(&text, "a long passphrase here").unwrap();
        assert_eq!(opened.master.encode().expose(), master.encode().expose());
        assert_eq!(opened.rows, rows);
        assert!(open_ring(&opened.master, &opened.rows).is_ok());
        assert!(matches!(open_backup(&text, "another long passphrase"), Err(BackupError::WrongPassphrase)));
        assert!(matches!(seal_backup(&master, &rows, "short"), Err(BackupError::WeakPassphrase)));
    }
}
