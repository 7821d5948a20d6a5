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
/// The version written: its header (format, version, creation time and key derivation) is the
/// associated data of the sealed contents, so altering any of it fails authentication.
const VERSION: u32 = 2;
/// Version 1 files, written before the header was authenticated, still open; their associated
/// data is this constant alone.
const V1_AAD: &[u8] = b"tessera-key-backup-v1";
/// Argon2id parameters a backup may ask for, checked before deriving anything: the file may
/// come from anywhere, and its `memoryKib` is memory this process would allocate. The upper
/// bounds are four times or more what `seal_backup` writes (64 MiB, 3 passes, 1 lane).
const MEMORY_KIB: std::ops::RangeInclusive<u32> = 8 * 1024..=256 * 1024;
const ITERATIONS: std::ops::RangeInclusive<u32> = 1..=16;
const PARALLELISM: std::ops::RangeInclusive<u32> = 1..=8;
const SALT_BYTES: std::ops::RangeInclusive<usize> = 16..=64;
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
    #[error(
        "the file asks for key derivation outside the accepted bounds ({0}); it was not made by Tessera or was altered"
    )]
    KdfBounds(String),
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
    #[serde(flatten)]
    header: Header,
    sealed: String,
}

/// Everything in a backup but the sealed contents.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    format: String,
    version: u32,
    created_at: DateTime<Utc>,
    kdf: Kdf,
}

impl Header {
    /// The associated data the contents are sealed with.
    fn aad(&self) -> Result<Vec<u8>, BackupError> {
        match self.version {
            1 => Ok(V1_AAD.to_vec()),
            _ => serde_json::to_vec(self).map_err(|e| BackupError::Format(e.to_string())),
        }
    }
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

impl Contents {
    fn of(master: &MasterKey, rows: &[KeyRingRow]) -> Contents {
        Contents {
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
        }
    }
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
    let bounds = [
        (MEMORY_KIB.contains(&kdf.memory_kib), format!("memoryKib {} of {MEMORY_KIB:?}", kdf.memory_kib)),
        (ITERATIONS.contains(&kdf.iterations), format!("iterations {} of {ITERATIONS:?}", kdf.iterations)),
        (PARALLELISM.contains(&kdf.parallelism), format!("parallelism {} of {PARALLELISM:?}", kdf.parallelism)),
        (SALT_BYTES.contains(&salt.len()), format!("a salt of {} bytes of {SALT_BYTES:?}", salt.len())),
    ];
    if let Some((_, outside)) = bounds.into_iter().find(|(inside, _)| !inside) {
        return Err(BackupError::KdfBounds(outside));
    }
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
    let contents = Contents::of(master, rows);
    let plain = Secret::new(serde_json::to_vec(&contents).map_err(|e| BackupError::Format(e.to_string()))?);
    let header = Header { format: FORMAT.into(), version: VERSION, created_at: Utc::now(), kdf };
    let sealed = seal(&key.cipher(), &header.aad()?, plain.expose());
    serde_json::to_string_pretty(&SealedFile { header, sealed }).map_err(|e| BackupError::Format(e.to_string()))
}

/// Opens a backup's text with its passphrase.
pub fn open_backup(text: &str, passphrase: &str) -> Result<KeyBackup, BackupError> {
    let file: SealedFile = serde_json::from_str(text).map_err(|e| BackupError::Format(e.to_string()))?;
    let header = &file.header;
    if header.format != FORMAT || !(1..=VERSION).contains(&header.version) {
        return Err(BackupError::Format(format!("format {} version {}", header.format, header.version)));
    }
    let key = derive(passphrase, &header.kdf)?;
    let plain =
        Secret::new(open(&key.cipher(), &header.aad()?, &file.sealed).map_err(|_| BackupError::WrongPassphrase)?);
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

    fn edited(text: &str, edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut json: serde_json::Value = serde_json::from_str(text).unwrap();
        edit(&mut json);
        json.to_string()
    }

    #[test]
    fn refuses_key_derivation_outside_its_bounds_before_deriving() {
        let master = MasterKey::generate();
        let text = seal_backup(&master, &new_ring_rows(&master), "a long passphrase here").unwrap();
        for (field, value) in [("memoryKib", 4_194_304), ("iterations", 100_000), ("parallelism", 0)] {
            let tampered = edited(&text, |j| j["kdf"][field] = value.into());
            match open_backup(&tampered, "a long passphrase here") {
                Err(BackupError::KdfBounds(why)) => assert!(why.contains(field), "{why}"),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_altered_header_fails_authentication() {
        let master = MasterKey::generate();
        let text = seal_backup(&master, &new_ring_rows(&master), "a long passphrase here").unwrap();
        let later = edited(&text, |j| j["createdAt"] = "2030-01-01T00:00:00Z".into());
        assert!(matches!(open_backup(&later, "a long passphrase here"), Err(BackupError::WrongPassphrase)));
        let as_v1 = edited(&text, |j| j["version"] = 1.into());
        assert!(matches!(open_backup(&as_v1, "a long passphrase here"), Err(BackupError::WrongPassphrase)));
        assert!(open_backup(&text, "a long passphrase here").is_ok());
    }

    #[test]
    fn opens_version_1_files() {
        let master = MasterKey::generate();
        let rows = new_ring_rows(&master);
        let header = Header {
            format: FORMAT.into(),
            version: 1,
            created_at: Utc::now(),
            kdf: Kdf {
                algorithm: "argon2id".into(),
                memory_kib: 8 * 1024,
                iterations: 1,
                parallelism: 1,
                salt: STANDARD_NO_PAD.encode([7u8; 16]),
            },
        };
        let key = derive("a long passphrase here", &header.kdf).unwrap();
        let contents = Contents::of(&master, &rows);
        let sealed = seal(&key.cipher(), V1_AAD, &serde_json::to_vec(&contents).unwrap());
        let text = serde_json::to_string(&SealedFile { header, sealed }).unwrap();
        let opened = open_backup(&text, "a long passphrase here").unwrap();
        assert_eq!(opened.rows, rows);
    }
}
