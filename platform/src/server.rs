//! Start-up: configuration, database, first admin, metadata snapshot, and the HTTP listener.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::access::AccessService;
use crate::crypto::Secret;
use crate::crypto::keys::{self, KeyError, KeySource, Opened};
use crate::graphql::data_schema::Limits;
use crate::graphql::metadata_schema::{self, MetadataSchema};
use crate::http;
use crate::metadata_service::MetadataService;
use crate::store::{Store, StoreError};

/// Server configuration (the CLI fills it from flags and environment).
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    pub bind: String,
    pub admin_email: Option<String>,
    pub admin_password: Option<String>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Longest a GraphQL request may run before it is answered with `TIMEOUT`.
    pub request_timeout: std::time::Duration,
    pub limits: Limits,
    pub login_limits: crate::auth::LoginLimits,
    /// Reverse proxies whose `X-Forwarded-For` names the client (none by default).
    pub trusted_proxies: crate::http::TrustedProxies,
    /// The master key file of field encryption (default `./tessera.key`).
    pub data_key_file: Option<PathBuf>,
    /// The master key itself (base64, from `TESSERA_DATA_KEY`); wins over the file.
    pub data_key: Option<Secret<String>>,
    /// Sandbox limits of one script run.
    pub script_limits: tessera_plugins::Limits,
    /// Budgets of one transaction's scripts (queries, rows, writes, operations, time, nesting).
    pub script_budget: tessera_plugins::BudgetLimits,
    /// Limits of searches on fields a caller sees masked.
    pub masked_search: crate::store::MaskedSearchLimits,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: "sqlite://tessera.db".into(),
            bind: "127.0.0.1:8080".into(),
            admin_email: None,
            admin_password: None,
            max_body_bytes: 4 * 1024 * 1024,
            request_timeout: std::time::Duration::from_secs(30),
            limits: Limits::default(),
            login_limits: crate::auth::LoginLimits::default(),
            trusted_proxies: Default::default(),
            data_key_file: None,
            data_key: None,
            script_limits: Default::default(),
            script_budget: Default::default(),
            masked_search: Default::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the database: {0}")]
    Database(#[from] StoreError),
    #[error("cannot load metadata: {0}")]
    Metadata(String),
    #[error("cannot create the first admin")]
    Admin,
    #[error("cannot set up sign-in")]
    Login,
    #[error("cannot load access rules: {0}")]
    Access(String),
    #[error("cannot set up field encryption: {0}")]
    Keys(#[from] KeyError),
    #[error("cannot listen on {0}: {1}")]
    Bind(String, std::io::Error),
}

/// Shared state of the HTTP handlers.
pub struct AppState {
    pub store: Store,
    /// The store as the data API sees it.
    pub records: Arc<dyn crate::graphql::RecordStore>,
    pub metadata: Arc<MetadataService>,
    pub metadata_schema: MetadataSchema,
    pub max_body_bytes: usize,
    pub request_timeout: std::time::Duration,
    /// Users, roles, permissions; the cache of resolved tokens lives there too.
    pub access: Arc<AccessService>,
    pub login: Arc<crate::auth::LoginService>,
    pub trusted_proxies: crate::http::TrustedProxies,
}

/// A server running in the background.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub store: Store,
    pub state: Arc<AppState>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    /// Stops accepting connections and waits for the server task to end.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }

    /// Serves until Ctrl-C or SIGTERM (what service managers send), then drains in-flight
    /// requests.
    pub async fn wait_for_shutdown_signal(self) {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down");
        self.shutdown().await;
    }
}

/// Opens the database, prepares the first admin and metadata, and starts serving.
pub async fn start(config: Config) -> Result<RunningServer, StartError> {
    let mut store = Store::connect_with_timeout(&config.database_url, config.request_timeout).await?;
    store.configure_scripts(config.script_limits.clone(), config.script_budget.clone());
    store.configure_masked_search(config.masked_search.clone());
    let source = KeySource::new(config.data_key_file.clone(), config.data_key.clone());
    if let Opened::Created(Some(path)) = keys::open_or_create(&store, &source).await? {
        // Printed once, like the first admin's password: the operator must know where it is.
        println!(
            "Generated the master key of field encryption in {}.\nKeep a copy apart from the database backups \
             (see `tessera keys export-backup`): without it, encrypted fields cannot be read.",
            path.display()
        );
    }
    match crate::auth::ensure_admin(&store, config.admin_email.as_deref(), config.admin_password.as_deref()).await {
        Ok(Some((email, password))) => {
            // Printed once, on purpose: this is the only way to learn a generated password.
            println!("Created the first admin: {email} with password {password}\nChange it after signing in.");
        }
        Ok(None) => {}
        Err(_) => return Err(StartError::Admin),
    }
    let metadata = MetadataService::load(store.clone(), config.limits.clone())
        .await
        .map_err(|e| StartError::Metadata(e.to_string()))?;
    store
        .suspend_sensitive_formulas(&metadata.current().registry)
        .await
        .map_err(|e| StartError::Metadata(e.to_string()))?;
    let metadata = Arc::new(metadata);
    let access = Arc::new(AccessService::load(store.clone()).await.map_err(|e| StartError::Access(e.to_string()))?);
    let state = Arc::new(AppState {
        store: store.clone(),
        records: Arc::new(store.clone()),
        metadata_schema: metadata_schema::build(metadata.clone(), access.clone(), store.clone()),
        metadata,
        max_body_bytes: config.max_body_bytes,
        request_timeout: config.request_timeout,
        access,
        login: Arc::new(
            crate::auth::LoginService::new(store.clone(), config.login_limits.clone())
                .map_err(|_| StartError::Login)?,
        ),
        trusted_proxies: config.trusted_proxies.clone(),
    });
    let listener = TcpListener::bind(&config.bind).await.map_err(|e| StartError::Bind(config.bind.clone(), e))?;
    let addr = listener.local_addr().map_err(|e| StartError::Bind(config.bind.clone(), e))?;
    let router = http::router(state.clone());
    let watcher = tokio::spawn(watch_changes(store.clone(), state.metadata.clone(), state.access.clone()));
    let maintenance = store.spawn_maintenance();
    let key_jobs = store.spawn_key_jobs();
    let refusals = state.login.spawn_refusal_writer();
    let login = state.login.clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let log_on_exit = store.clone();
    let task = tokio::spawn(async move {
        // The peer address (or the one trusted proxies forwarded for) throttles sign-ins.
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        let serve = axum::serve(listener, service).with_graceful_shutdown(async move {
            let _ = stopped.await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "server stopped");
        }
        // The access log gathers reads for up to a second: write them before the process ends.
        if !log_on_exit.flush_access_log().await {
            tracing::error!("the sensitive access log could not be written before the server stopped");
        }
        refusals.abort();
        login.write_refusals(true).await;
        watcher.abort();
        key_jobs.abort();
        if let Some(m) = maintenance {
            m.abort();
        }
    });
    tracing::info!(%addr, database = %redact(&config.database_url), "tessera is serving");
    Ok(RunningServer { addr, store, state, stop, task })
}

/// App nodes are stateless and may share one PostgreSQL database: each polls the metadata,
/// access and key ring versions, so a change made through one node (a new field, a revoked
/// token, a changed role, a new data key) reaches the others within a second.
async fn watch_changes(store: Store, metadata: Arc<MetadataService>, access: Arc<AccessService>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = metadata.refresh().await {
            tracing::warn!(error = %e, "metadata refresh failed");
        }
        if let Err(e) = access.refresh().await {
            tracing::warn!(error = %e, "access refresh failed");
        }
        if let Err(e) = store.refresh_key_ring().await {
            tracing::warn!(error = %e, "key ring refresh failed");
        }
    }
}

/// The database url without a password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…{}", &url[..s], &url[at..]),
        _ => url.to_string(),
    }
}
