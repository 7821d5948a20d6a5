//! The `tessera` command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

// glibc's per-thread arenas fragment under many small short-lived allocations and keep freed
// memory; mimalloc is faster here and returns memory to the system.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use tessera_platform::crypto::Secret;
use tessera_platform::server::{Config, start};

mod keys_cli;

#[derive(Parser)]
#[command(name = "tessera", version, about = "Tessera: a metadata-driven CRM platform")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the server.
    Serve {
        /// sqlite://path.db (default ./tessera.db) or postgres://user@host/db
        #[arg(long, env = "TESSERA_DATABASE_URL", default_value = "sqlite://tessera.db")]
        database_url: String,
        /// Address to listen on.
        #[arg(long, env = "TESSERA_BIND", default_value = "127.0.0.1:8080")]
        bind: String,
        /// Email of the first admin, created when there are no users.
        #[arg(long, env = "TESSERA_ADMIN_EMAIL")]
        admin_email: Option<String>,
        /// Password of the first admin; generated and printed once if absent.
        #[arg(long, env = "TESSERA_ADMIN_PASSWORD", hide_env_values = true)]
        admin_password: Option<String>,
        /// Refuse schema introspection on the data API.
        #[arg(long, env = "TESSERA_DISABLE_INTROSPECTION")]
        disable_introspection: bool,
        /// The master key file of field encryption (default ./tessera.key; generated on first
        /// start, its path printed).
        #[arg(long, env = "TESSERA_DATA_KEY_FILE")]
        data_key_file: Option<PathBuf>,
        /// The master key itself, base64; wins over the file.
        #[arg(long = "data-key", env = "TESSERA_DATA_KEY", hide_env_values = true, hide = true)]
        data_key: Option<String>,
    },
    /// Field encryption keys: status, online rotation, offline backups.
    Keys {
        #[command(subcommand)]
        command: keys_cli::KeysCommand,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Keys { command } => match keys_cli::run(command).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tessera: {e}");
                std::process::ExitCode::FAILURE
            }
        },
        Command::Serve {
            database_url,
            bind,
            admin_email,
            admin_password,
            disable_introspection,
            data_key_file,
            data_key,
        } => {
            let mut config = Config {
                database_url,
                bind,
                admin_email,
                admin_password,
                data_key_file,
                data_key: data_key.map(Secret::new),
                ..Config::default()
            };
            config.limits.introspection = !disable_introspection;
            match start(config).await {
                Ok(server) => {
                    println!("Tessera is listening on http://{}", server.addr);
                    server.wait_for_shutdown_signal().await;
                    std::process::ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("tessera: {e}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
    }
}
