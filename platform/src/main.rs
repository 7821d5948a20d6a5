//! The `tessera` command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

// mimalloc; the server hands its freed memory back when idle (see `tessera_alloc`).
#[global_allocator]
static GLOBAL: tessera_alloc::MiMalloc = tessera_alloc::MiMalloc;
use tessera_platform::crypto::Secret;
use tessera_platform::graphql::data_schema::{DEFAULT_MAX_BATCH, DEFAULT_MAX_REQUEST_ROWS};
use tessera_platform::server::{Config, start};
use tessera_platform::store::{
    DEFAULT_MASKED_SEARCHES_PER_FIELD, DEFAULT_MASKED_SEARCHES_PER_MINUTE, MaskedSearchLimits,
};

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
        /// Most records the mutations of one request (`createContacts`, …, aliases included) may
        /// write. A batch is one transaction: larger batches load faster, and hold the write lock
        /// longer.
        #[arg(long, env = "TESSERA_MAX_BATCH", default_value_t = DEFAULT_MAX_BATCH,
              value_parser = clap::value_parser!(u16).range(1..=10_000))]
        max_batch: u16,
        /// Most records one data API request may ask for, estimated before it runs: pages times
        /// the pages around them, nested relations, lookups, groups and mutation results.
        #[arg(long, env = "TESSERA_MAX_REQUEST_ROWS", default_value_t = DEFAULT_MAX_REQUEST_ROWS,
              value_parser = clap::value_parser!(u64).range(1..))]
        max_request_rows: u64,
        /// Seconds a data API request may run before it is answered `TIMEOUT`; its database
        /// statements stop then too (PostgreSQL's statement timeout is the same).
        #[arg(long, env = "TESSERA_REQUEST_TIMEOUT_SECS", default_value_t = 30,
              value_parser = clap::value_parser!(u64).range(1..=3600))]
        request_timeout_secs: u64,
        /// The master key file of field encryption (default ./tessera.key; generated on first
        /// start, its path printed).
        #[arg(long, env = "TESSERA_DATA_KEY_FILE")]
        data_key_file: Option<PathBuf>,
        /// The master key itself, base64; wins over the file.
        #[arg(long = "data-key", env = "TESSERA_DATA_KEY", hide_env_values = true, hide = true)]
        data_key: Option<String>,
        #[command(flatten)]
        scripts: ScriptArgs,
        #[command(flatten)]
        sensitive: SensitiveArgs,
        #[command(flatten)]
        login: LoginArgs,
    },
    /// Field encryption keys: status, online rotation, offline backups.
    Keys {
        #[command(subcommand)]
        command: keys_cli::KeysCommand,
    },
}

/// Sandbox limits of one script run and budgets of one transaction (see plugins/GUIDE.md).
#[derive(clap::Args)]
struct ScriptArgs {
    /// Rhai operations one script run may perform.
    #[arg(long, env = "TESSERA_SCRIPT_MAX_OPERATIONS", default_value_t = 1_000_000)]
    script_max_operations: u64,
    /// Wall-clock milliseconds one script run may take.
    #[arg(long, env = "TESSERA_SCRIPT_TIMEOUT_MS", default_value_t = 1_000)]
    script_timeout_ms: u64,
    /// `find` calls per transaction.
    #[arg(long, env = "TESSERA_SCRIPT_MAX_QUERIES", default_value_t = 100)]
    script_max_queries: u32,
    /// Records read by `find` per transaction.
    #[arg(long, env = "TESSERA_SCRIPT_MAX_ROWS_READ", default_value_t = 10_000)]
    script_max_rows_read: u32,
    /// `create` and `update` calls per transaction.
    #[arg(long, env = "TESSERA_SCRIPT_MAX_WRITES", default_value_t = 150)]
    script_max_writes: u32,
    /// Rhai operations over all script runs of one transaction.
    #[arg(long, env = "TESSERA_SCRIPT_MAX_TOTAL_OPERATIONS", default_value_t = 10_000_000)]
    script_max_total_operations: u64,
    /// Wall-clock milliseconds of all script runs of one transaction.
    #[arg(long, env = "TESSERA_SCRIPT_MAX_WALL_MS", default_value_t = 10_000)]
    script_max_wall_ms: u64,
    /// How deeply triggers may nest.
    #[arg(long, env = "TESSERA_SCRIPT_TRIGGER_DEPTH", default_value_t = 5)]
    script_trigger_depth: u32,
}

impl ScriptArgs {
    fn apply(&self, config: &mut Config) {
        config.script_limits.max_operations = self.script_max_operations;
        config.script_limits.timeout = std::time::Duration::from_millis(self.script_timeout_ms);
        config.script_budget = tessera_plugins::BudgetLimits {
            queries: self.script_max_queries,
            rows_read: self.script_max_rows_read,
            writes: self.script_max_writes,
            operations: self.script_max_total_operations,
            wall: std::time::Duration::from_millis(self.script_max_wall_ms),
            trigger_depth: self.script_trigger_depth,
        };
    }
}

/// Limits on reading sensitive fields.
#[derive(clap::Args)]
struct SensitiveArgs {
    /// Most different values one request may search for in one field the caller sees masked
    /// (by `eq`; other comparisons are refused on such fields).
    #[arg(long, env = "TESSERA_MASKED_SEARCHES_PER_FIELD", default_value_t = DEFAULT_MASKED_SEARCHES_PER_FIELD,
          value_parser = clap::value_parser!(u32).range(1..=1_000))]
    masked_searches_per_field: u32,
    /// Most new values one user may search for in fields they see masked, per minute; more
    /// answer `RATE_LIMITED`.
    #[arg(long, env = "TESSERA_MASKED_SEARCHES_PER_MINUTE", default_value_t = DEFAULT_MASKED_SEARCHES_PER_MINUTE,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    masked_searches_per_minute: u32,
}

impl SensitiveArgs {
    fn apply(&self, config: &mut Config) {
        config.masked_search = MaskedSearchLimits {
            per_field_per_request: self.masked_searches_per_field,
            per_user_per_minute: self.masked_searches_per_minute,
        };
    }
}

/// Sign-in limits and the proxies in front of the server.
#[derive(clap::Args)]
struct LoginArgs {
    /// Failed sign-ins in a row that lock an account (from any address).
    #[arg(long, env = "TESSERA_LOGIN_MAX_FAILURES", default_value_t = 5,
          value_parser = clap::value_parser!(u16).range(1..))]
    login_max_failures: u16,
    /// Minutes a locked account stays locked.
    #[arg(long, env = "TESSERA_LOGIN_LOCK_MINUTES", default_value_t = 15,
          value_parser = clap::value_parser!(u32).range(1..))]
    login_lock_minutes: u32,
    /// Failed sign-ins one client address (IPv4, or IPv6 /64) may make per window; further
    /// attempts are answered 429.
    #[arg(long, env = "TESSERA_LOGIN_ADDRESS_FAILURES", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..))]
    login_address_failures: u32,
    /// The window of the address limit, in minutes.
    #[arg(long, env = "TESSERA_LOGIN_WINDOW_MINUTES", default_value_t = 15,
          value_parser = clap::value_parser!(u32).range(1..))]
    login_window_minutes: u32,
    /// Password checks at once (each holds 7 MiB); default: the CPUs available.
    #[arg(long, env = "TESSERA_LOGIN_HASH_CONCURRENCY", value_parser = clap::value_parser!(u16).range(1..))]
    login_hash_concurrency: Option<u16>,
    /// Milliseconds a sign-in waits for a password check before it is answered 503.
    #[arg(long, env = "TESSERA_LOGIN_QUEUE_MS", default_value_t = 2_000)]
    login_queue_ms: u64,
    /// Reverse proxies whose X-Forwarded-For names the client: addresses or CIDR networks,
    /// comma-separated. Default none (the header is ignored).
    #[arg(long, env = "TESSERA_TRUSTED_PROXIES", value_delimiter = ',',
          value_parser = tessera_platform::http::parse_trusted_proxy)]
    trusted_proxies: Vec<ipnet::IpNet>,
}

impl LoginArgs {
    fn apply(self, config: &mut Config) {
        let limits = &mut config.login_limits;
        limits.account_failures = i32::from(self.login_max_failures);
        limits.lock_for = chrono::Duration::minutes(i64::from(self.login_lock_minutes));
        limits.address_failures = self.login_address_failures as usize;
        limits.window = std::time::Duration::from_secs(u64::from(self.login_window_minutes) * 60);
        if let Some(n) = self.login_hash_concurrency {
            limits.hash_concurrency = usize::from(n);
        }
        limits.hash_queue_wait = std::time::Duration::from_millis(self.login_queue_ms);
        config.trusted_proxies = tessera_platform::http::TrustedProxies::new(self.trusted_proxies);
    }
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
            max_batch,
            max_request_rows,
            request_timeout_secs,
            data_key_file,
            data_key,
            scripts,
            sensitive,
            login,
        } => {
            let mut config = Config {
                database_url,
                bind,
                admin_email,
                admin_password,
                data_key_file,
                data_key: data_key.map(Secret::new),
                request_timeout: std::time::Duration::from_secs(request_timeout_secs),
                ..Config::default()
            };
            config.limits.introspection = !disable_introspection;
            config.limits.max_batch = usize::from(max_batch);
            config.limits.max_request_rows = max_request_rows;
            scripts.apply(&mut config);
            sensitive.apply(&mut config);
            login.apply(&mut config);
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
