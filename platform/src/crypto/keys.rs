//! Start-up of field encryption: finds the master key (the `TESSERA_DATA_KEY` environment
//! variable, else the key file), opens the database's key ring with it, and on a database
//! without a ring creates one, generating the key file when there is none yet.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{KeyMaterial, KeyRing, MasterKey, Secret};
use crate::store::{KeyRingRow, PURPOSE_BLIND_INDEX, PURPOSE_DATA, Store, StoreError};

/// The key file used when none is named.
pub const DEFAULT_KEY_FILE: &str = "tessera.key";

/// Where the master key comes from.
#[derive(Debug, Clone)]
pub struct KeySource {
    /// The key file (read, or created on a fresh database).
    pub file: PathBuf,
    /// The key itself, base64, from the environment; wins over the file.
    pub key: Option<Secret<String>>,
}

impl KeySource {
    pub fn new(file: Option<PathBuf>, key: Option<Secret<String>>) -> KeySource {
        KeySource { file: file.unwrap_or_else(|| PathBuf::from(DEFAULT_KEY_FILE)), key }
    }

    /// Where the key was found, for messages.
    fn describe(&self) -> String {
        if self.key.is_some() { "TESSERA_DATA_KEY".into() } else { self.file.display().to_string() }
    }
}

/// Failures to set up field encryption; each tells the operator what to do.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "this database's encrypted fields need their master key, but there is no key file at {0}: \
         pass it with --data-key-file (or TESSERA_DATA_KEY_FILE), or the key itself in TESSERA_DATA_KEY"
    )]
    MissingMasterKey(String),
    #[error("the master key in {0} does not open this database's key ring: is it this database's key file?")]
    WrongMasterKey(String),
    #[error("the master key in {0} is malformed: {1}")]
    Malformed(String, String),
    #[error("cannot read the master key file {0}: {1}")]
    Read(String, std::io::Error),
    #[error("cannot write the master key file {0}: {1}")]
    Write(String, std::io::Error),
    #[error(
        "another node created this database's key ring at the same moment with another master key: \
         copy that node's key file to {0} and start again"
    )]
    Race(String),
    #[error("this database has no key ring yet: start `tessera serve` on it once to create one")]
    NoKeyRing,
    #[error("the key ring is incomplete: {0}")]
    Incomplete(String),
    #[error("cannot load the key ring: {0}")]
    Store(#[from] StoreError),
}

/// How start-up found the key ring.
#[derive(Debug)]
pub enum Opened {
    /// The database's ring, opened with the given key.
    Existing,
    /// A new ring; `Some(path)` when the master key file was generated too.
    Created(Option<PathBuf>),
}

/// Reads the master key from the environment or the key file; `None` when neither has one.
pub fn read_master_key(source: &KeySource) -> Result<Option<MasterKey>, KeyError> {
    if let Some(text) = &source.key {
        return MasterKey::parse(text.expose())
            .map(Some)
            .map_err(|e| KeyError::Malformed(source.describe(), e.to_string()));
    }
    match std::fs::read_to_string(&source.file) {
        Ok(text) => {
            let text = Secret::new(text);
            MasterKey::parse(text.expose()).map(Some).map_err(|e| KeyError::Malformed(source.describe(), e.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(KeyError::Read(source.describe(), e)),
    }
}

/// The directory a file is in (`.` for a bare file name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Makes the entries of the directory holding `path` durable: a file synced to disk is lost in
/// a crash all the same if the directory entry naming it is not.
pub fn sync_parent_dir(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(parent_dir(path))?.sync_all()?;
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Writes a new key file readable by its owner only. Never replaces an existing file: the
/// key is written to a temporary file first and then linked into place, which fails if the
/// path exists (so two processes generating at once cannot both win); the directory is synced
/// once the link is made, so a key that encrypted data survives a crash.
pub fn write_new_key_file(path: &Path, master: &MasterKey) -> std::io::Result<()> {
    let dir = parent_dir(path);
    let temp = dir.join(format!(".tessera-key-{}", uuid::Uuid::new_v4().simple()));
    let written = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&temp)?;
        file.write_all(master.encode().expose().as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::hard_link(&temp, path)
    })();
    let _ = std::fs::remove_file(&temp);
    written?;
    sync_parent_dir(path)
}

/// Unwraps every stored key: the highest data key version is the active one, and so is the
/// highest blind-index key version; older blind-index keys not yet retired (a rotation is still
/// rewriting the indexes made with them) are kept for lookups.
pub fn open_ring(master: &MasterKey, rows: &[KeyRingRow]) -> Result<KeyRing, KeyError> {
    let mut data = Vec::new();
    let mut blind: Vec<(u32, bool, KeyMaterial)> = Vec::new();
    for row in rows {
        let key = master
            .unwrap(&row.purpose, row.version, &row.wrapped)
            .map_err(|_| KeyError::WrongMasterKey(String::new()))?;
        match row.purpose.as_str() {
            PURPOSE_DATA => data.push((row.version, key)),
            PURPOSE_BLIND_INDEX => blind.push((row.version, row.retired_at.is_some(), key)),
            _ => {}
        }
    }
    let active = data.iter().map(|(v, _)| *v).max().ok_or_else(|| KeyError::Incomplete("no data key".into()))?;
    blind.sort_by_key(|(version, _, _)| std::cmp::Reverse(*version));
    let mut blind = blind.into_iter();
    let (_, _, newest) = blind.next().ok_or_else(|| KeyError::Incomplete("no blind-index key".into()))?;
    let older: Vec<KeyMaterial> = blind.filter(|(_, retired, _)| !retired).map(|(_, _, key)| key).collect();
    Ok(KeyRing::new(data, active, &newest).also_matching(&older))
}

/// A fresh ring: data key version 1 and the blind-index key, wrapped by `master`.
pub fn new_ring_rows(master: &MasterKey) -> Vec<KeyRingRow> {
    vec![
        KeyRingRow::new(PURPOSE_DATA, 1, master.wrap(PURPOSE_DATA, 1, &KeyMaterial::generate())),
        KeyRingRow::new(PURPOSE_BLIND_INDEX, 1, master.wrap(PURPOSE_BLIND_INDEX, 1, &KeyMaterial::generate())),
    ]
}

/// Finds the master key, opens (or on a fresh database creates) the key ring, and installs
/// both in the store.
pub async fn open_or_create(store: &Store, source: &KeySource) -> Result<Opened, KeyError> {
    let mut master = read_master_key(source)?;
    let mut rows = store.key_ring_rows().await?;
    let mut opened = Opened::Existing;
    if rows.is_empty() {
        let mut generated = None;
        let key = match master.take() {
            Some(key) => key,
            None => {
                let key = MasterKey::generate();
                match write_new_key_file(&source.file, &key) {
                    Ok(()) => {
                        generated = Some(source.file.clone());
                        key
                    }
                    // Another process generated the file a moment ago: use its key.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        read_master_key(source)?.ok_or_else(|| KeyError::MissingMasterKey(source.describe()))?
                    }
                    Err(e) => return Err(KeyError::Write(source.describe(), e)),
                }
            }
        };
        if store.create_key_ring(&new_ring_rows(&key)).await? {
            opened = Opened::Created(generated);
        } else {
            // Another node stored its ring first; ours is discarded, and a key file made for
            // it would open nothing.
            if let Some(path) = generated
                && open_ring(&key, &store.key_ring_rows().await?).is_err()
            {
                let _ = std::fs::remove_file(path);
                return Err(KeyError::Race(source.describe()));
            }
        }
        master = Some(key);
        rows = store.key_ring_rows().await?;
    }
    let master = master.ok_or_else(|| KeyError::MissingMasterKey(source.describe()))?;
    open_ring(&master, &rows).map_err(|e| match e {
        KeyError::WrongMasterKey(_) => KeyError::WrongMasterKey(source.describe()),
        other => other,
    })?;
    store.set_master_key(master);
    store.reload_key_ring().await?;
    Ok(opened)
}

/// Opens the key ring of a database that has one (for the `tessera keys` commands, which never
/// create one) and installs it in the store.
pub async fn open_existing(store: &Store, source: &KeySource) -> Result<(), KeyError> {
    let rows = store.key_ring_rows().await?;
    if rows.is_empty() {
        return Err(KeyError::NoKeyRing);
    }
    let master = read_master_key(source)?.ok_or_else(|| KeyError::MissingMasterKey(source.describe()))?;
    open_ring(&master, &rows).map_err(|e| match e {
        KeyError::WrongMasterKey(_) => KeyError::WrongMasterKey(source.describe()),
        other => other,
    })?;
    store.set_master_key(master);
    store.reload_key_ring().await?;
    Ok(())
}
