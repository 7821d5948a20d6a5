//! `tessera keys …`: the state of field encryption, online key rotation with a progress bar,
//! and offline backups of the keys. Part of the `tessera` binary.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use tessera_platform::crypto::Secret;
use tessera_platform::crypto::backup::{open_backup, seal_backup};
use tessera_platform::crypto::keys::{self, KeySource};
use tessera_platform::store::{RekeyOptions, RotationOutcome, Store};

/// Where the database and its master key are.
#[derive(Args)]
pub struct KeyArgs {
    /// sqlite://path.db (default ./tessera.db) or postgres://user@host/db
    #[arg(long, env = "TESSERA_DATABASE_URL", default_value = "sqlite://tessera.db")]
    database_url: String,
    /// The master key file (default ./tessera.key).
    #[arg(long, env = "TESSERA_DATA_KEY_FILE")]
    data_key_file: Option<PathBuf>,
    /// The master key itself, base64; wins over the file.
    #[arg(long = "data-key", env = "TESSERA_DATA_KEY", hide_env_values = true, hide = true)]
    data_key: Option<String>,
}

impl KeyArgs {
    fn source(&mut self) -> KeySource {
        KeySource::new(self.data_key_file.clone(), self.data_key.take().map(Secret::new))
    }
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Shows key versions, how many values each encrypted field has on each, and unfinished jobs.
    Status {
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Adds a data key version and a blind-index key, re-encrypts every value and recomputes
    /// every blind index with them, online and in batches, then retires the old keys. Run
    /// again after an interruption to resume.
    Rotate {
        #[command(flatten)]
        keys: KeyArgs,
        /// Rows per write transaction.
        #[arg(long, default_value_t = 500)]
        batch_size: u64,
        /// Stop after this many batches (resumable), to spread the work over several runs.
        #[arg(long)]
        max_batches: Option<u64>,
    },
    /// Writes the master key and the key ring to a file sealed under a passphrase, to keep
    /// offline and apart from database backups.
    ExportBackup {
        #[command(flatten)]
        keys: KeyArgs,
        /// The backup file to create (never overwritten).
        #[arg(long)]
        output: PathBuf,
        /// Name of the environment variable holding the passphrase.
        #[arg(long)]
        passphrase_env: String,
    },
    /// Writes the master key file back from a backup (never overwriting a key file).
    RestoreBackup {
        /// The backup file.
        #[arg(long)]
        input: PathBuf,
        /// Name of the environment variable holding the passphrase.
        #[arg(long)]
        passphrase_env: String,
        /// The key file to write (default ./tessera.key).
        #[arg(long, env = "TESSERA_DATA_KEY_FILE")]
        data_key_file: Option<PathBuf>,
    },
}

type CliResult = Result<(), String>;

fn passphrase(var: &str) -> Result<Secret<String>, String> {
    std::env::var(var).map(Secret::new).map_err(|_| format!("the environment variable {var} holds no passphrase"))
}

async fn open(keys: &mut KeyArgs) -> Result<Store, String> {
    let store = Store::connect(&keys.database_url).await.map_err(|e| e.to_string())?;
    keys::open_existing(&store, &keys.source()).await.map_err(|e| e.to_string())?;
    Ok(store)
}

pub async fn run(command: KeysCommand) -> CliResult {
    match command {
        KeysCommand::Status { mut keys } => status(&mut keys).await,
        KeysCommand::Rotate { mut keys, batch_size, max_batches } => rotate(&mut keys, batch_size, max_batches).await,
        KeysCommand::ExportBackup { mut keys, output, passphrase_env } => {
            export_backup(&mut keys, &output, &passphrase_env).await
        }
        KeysCommand::RestoreBackup { input, passphrase_env, data_key_file } => {
            restore_backup(&input, &passphrase_env, data_key_file)
        }
    }
}

async fn status(keys: &mut KeyArgs) -> CliResult {
    // Counting values needs no key, so status also works where the key file is not.
    let store = Store::connect(&keys.database_url).await.map_err(|e| e.to_string())?;
    let status = store.key_status().await.map_err(|e| e.to_string())?;
    let mut out = String::new();
    match status.active_version {
        Some(v) => out.push_str(&format!("Active data key version: {v}\n")),
        None => out.push_str("No key ring yet: `tessera serve` creates one on first start.\n"),
    }
    for v in &status.versions {
        let retired = v.retired_at.map(|t| format!(", retired {}", t.to_rfc3339())).unwrap_or_default();
        out.push_str(&format!("  version {}: created {}{retired}\n", v.version, v.created_at.to_rfc3339()));
    }
    // Lookups match every blind-index key not retired: more than one only during a rotation.
    for v in &status.blind_index_versions {
        let state = match v.retired_at {
            Some(t) => format!("retired {}", t.to_rfc3339()),
            None => "matched by lookups".to_string(),
        };
        out.push_str(&format!(
            "Blind-index key version {}: created {}, {state}\n",
            v.version,
            v.created_at.to_rfc3339()
        ));
    }
    if status.fields.is_empty() {
        out.push_str("No encrypted fields.\n");
    }
    for f in &status.fields {
        let per: Vec<String> = f.by_version.iter().map(|(v, n)| format!("v{v}: {n}")).collect();
        let other = if f.other > 0 { format!(", not encrypted: {}", f.other) } else { String::new() };
        out.push_str(&format!("{}.{}: {}{other}\n", f.object, f.field, per.join(", ")));
    }
    if status.unfinished_jobs.is_empty() {
        out.push_str("No unfinished jobs.\n");
    }
    for j in &status.unfinished_jobs {
        let field = j.field.as_deref().map(|f| format!(".{f}")).unwrap_or_default();
        let error = j.error.as_deref().map(|e| format!(" — {e}")).unwrap_or_default();
        out.push_str(&format!(
            "job {} {} {}{field}: {} ({}), {}/{}{error}\n",
            j.id,
            j.kind.as_str(),
            j.object,
            j.state.as_str(),
            j.phase,
            j.done,
            j.total
        ));
    }
    print!("{out}");
    Ok(())
}

async fn rotate(keys: &mut KeyArgs, batch_size: u64, max_batches: Option<u64>) -> CliResult {
    if batch_size == 0 {
        return Err("--batch-size must be at least 1".into());
    }
    let store = open(keys).await?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} rows {msg} (eta {eta})")
            .map_err(|e| e.to_string())?,
    );
    let options = RekeyOptions { batch_size, max_batches };
    let outcome = store
        .rotate_keys(options, |p| {
            bar.set_length(p.total);
            bar.set_position(p.done);
            bar.set_message(format!("key v{} · {}", p.version, p.object));
        })
        .await;
    bar.finish_and_clear();
    match outcome.map_err(|e| format!("the rotation stopped: {e}"))? {
        RotationOutcome::Done { version, retired, rewritten, resumed } => {
            let retired: Vec<String> = retired.iter().map(|v| v.to_string()).collect();
            println!(
                "{} key version {version}: {rewritten} records and audit entries re-encrypted; retired version(s): {}.",
                if resumed { "Finished rotating to" } else { "Rotated to" },
                if retired.is_empty() { "none".to_string() } else { retired.join(", ") }
            );
        }
        RotationOutcome::Paused { version } => {
            println!("Paused the rotation to key version {version}: run `tessera keys rotate` again to resume.");
        }
    }
    Ok(())
}

/// Creates a file readable by its owner only; never replaces one.
fn create_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    keys::sync_parent_dir(path)
}

async fn export_backup(keys: &mut KeyArgs, output: &Path, passphrase_env: &str) -> CliResult {
    let passphrase = passphrase(passphrase_env)?;
    let source = keys.source();
    let store = Store::connect(&keys.database_url).await.map_err(|e| e.to_string())?;
    keys::open_existing(&store, &source).await.map_err(|e| e.to_string())?;
    let master = keys::read_master_key(&source)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "there is no master key to back up".to_string())?;
    let rows = store.key_ring_rows().await.map_err(|e| e.to_string())?;
    let text = seal_backup(&master, &rows, passphrase.expose()).map_err(|e| e.to_string())?;
    create_private(output, &text).map_err(|e| format!("cannot create {}: {e}", output.display()))?;
    println!(
        "Wrote the master key and {} keys of the key ring to {}, sealed under the passphrase. Keep it offline.",
        rows.len(),
        output.display()
    );
    Ok(())
}

fn restore_backup(input: &Path, passphrase_env: &str, data_key_file: Option<PathBuf>) -> CliResult {
    let passphrase = passphrase(passphrase_env)?;
    let text = std::fs::read_to_string(input).map_err(|e| format!("cannot read {}: {e}", input.display()))?;
    let backup = open_backup(&text, passphrase.expose()).map_err(|e| e.to_string())?;
    keys::open_ring(&backup.master, &backup.rows).map_err(|e| format!("the backup is inconsistent: {e}"))?;
    let path = data_key_file.unwrap_or_else(|| PathBuf::from(keys::DEFAULT_KEY_FILE));
    keys::write_new_key_file(&path, &backup.master).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            format!("{} exists: move it away first (it is never overwritten)", path.display())
        } else {
            format!("cannot write {}: {e}", path.display())
        }
    })?;
    let versions: Vec<String> = backup.rows.iter().map(|r| format!("{} v{}", r.purpose, r.version)).collect();
    println!("Wrote the master key to {} (the backup's key ring holds {}).", path.display(), versions.join(", "));
    Ok(())
}
