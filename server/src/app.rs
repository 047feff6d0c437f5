//! Wiring: builds the source, hub and HTTP router from a `Config`, runs them, and shuts them down
//! in order (stop accepting, close sessions with 1001, final LSN feedback, join with a timeout).
//! The HTTP listener serves from the first moment: while Postgres cannot be reached yet (a
//! compose file or a unit started in the wrong order), start-up waits for it with backoff,
//! `/healthz` answers 200, `/readyz` 503 and every other route 503 `starting`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use std::path::Path;

use crate::config::{Config, DEFAULT_JOURNAL_DIR};
use crate::filter::wasm::{PluginError, PluginHost};
use crate::filter::{AllowList, Catalog};
use crate::http::{router, AppState};
use crate::hub::{Hub, Intake};
use crate::journal::{Bound, Identity, Journal};
use crate::metrics::Metrics;
use crate::named;
use crate::source::{self, PgEndpoint, SourceConfig, SourceError, SourceStatus};

/// How long shutdown waits for sessions and the source to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("no database configured (set DATABASE_URL or database_url)")]
    NoDatabase,
    #[error("notify.channels: {0}")]
    NotifyChannels(globset::Error),
    #[error("tables.allow: {0}")]
    AllowList(globset::Error),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("HTTP server failed: {0}")]
    Http(std::io::Error),
    #[error(transparent)]
    Plugins(#[from] PluginError),
    #[error("replication task panicked")]
    SourcePanicked,
    #[error("journal: {0}")]
    Journal(crate::journal::JournalError),
    #[error("named subscriptions: {0}")]
    Named(named::NamedError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthSetupError),
    /// Postgres answered, but with a refusal no wait can fix (authentication, a missing
    /// database, wal_level, wal2json, privileges), or a DATABASE_URL that cannot work.
    #[error("Postgres at {target}: {cause}")]
    Postgres {
        target: String,
        cause: Box<SourceError>,
    },
}

impl AppError {
    /// The process exit code: 2 for a configuration to fix (as for invalid config values, a
    /// journal that belongs to another upstream or cannot continue this one), 1 for everything
    /// else (Postgres refused walcast, a failure while running).
    pub fn exit_code(&self) -> u8 {
        match self {
            AppError::NoDatabase
            | AppError::NotifyChannels(_)
            | AppError::AllowList(_)
            | AppError::Config(_)
            | AppError::Auth(_) => 2,
            AppError::Postgres { cause, .. } if matches!(**cause, SourceError::Config(_)) => 2,
            AppError::Journal(e) if e.is_identity() => 2,
            AppError::Source(SourceError::Refused(_)) => 2,
            _ => 1,
        }
    }
}

/// Run walcast until `shutdown` is cancelled or replication fails fatally.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), AppError> {
    // Every Postgres connection of this process goes there, with the DATABASE_URL's sslmode and
    // sslrootcert.
    let pg = config.pg_endpoint().ok_or(AppError::NoDatabase)?;
    let allow = Arc::new(AllowList::new(&config.tables.allow).map_err(AppError::AllowList)?);
    let auth = Arc::new(crate::auth::Authenticator::from_config(&config)?);
    if auth.mode() == crate::config::AuthMode::None && !config.listen.ip().is_loopback() {
        tracing::warn!(listen = %config.listen, "auth.mode = \"none\" on a non-loopback address: anyone who reaches the port reads every allowed table");
    }
    let notify_allow = Arc::new(
        crate::relay::Channels::new(&config.notify.channels).map_err(AppError::NotifyChannels)?,
    );
    let source_config = SourceConfig {
        pg: pg.clone(),
        slot: config.replication.slot.clone(),
        temporary: config.replication.temporary,
        status_interval: config.replication.status_interval,
        max_backoff: config.replication.max_backoff,
        add_tables: allow.wal2json_add_tables(),
    };

    // Before waiting for Postgres: a plugin directory that cannot be served is a configuration
    // to fix now.
    let plugins = match &config.plugins.dir {
        Some(_) => Some(PluginHost::with_limits(
            &config.plugins,
            &config.limits.limits(&config.plugins),
        )?),
        None => None,
    };

    // Served from now on: the probes answer while Postgres is awaited.
    let gate: Arc<OnceLock<axum::Router>> = Arc::new(OnceLock::new());
    let mut http = HttpServer::start(listener, crate::http::gated(gate.clone()), &config)?;
    let result = serve(
        config,
        pg,
        source_config,
        allow,
        auth,
        notify_allow,
        plugins,
        &gate,
        &mut http,
        shutdown,
    )
    .await;
    let http_result = http.finish().await;
    result.and(http_result)
}

/// Connects, builds the pipeline, opens the gate to the router and runs until `shutdown` or a
/// fatal replication error; then shuts down in order.
#[allow(clippy::too_many_arguments)]
async fn serve(
    config: Config,
    pg: PgEndpoint,
    source_config: SourceConfig,
    allow: Arc<AllowList>,
    auth: Arc<crate::auth::Authenticator>,
    notify_allow: Arc<crate::relay::Channels>,
    plugins: Option<Arc<PluginHost>>,
    gate: &OnceLock<axum::Router>,
    http: &mut HttpServer,
    shutdown: CancellationToken,
) -> Result<(), AppError> {
    let connected = connect_at_start(
        &pg,
        &source_config,
        config.replication.max_backoff,
        &shutdown,
    )
    .await?;
    let Some((client, sql_connection, slot_created)) = connected else {
        tracing::info!("shutting down before Postgres was reached");
        return Ok(());
    };
    // Where the slot's stream begins: what a journal that holds nothing yet starts after.
    // (Only for a slot that was there before this start: a slot created now, or a temporary
    // one, streams nothing from before this journal.)
    let confirmed = if source_config.temporary || slot_created {
        None
    } else {
        source::slot_confirmed_flush(&client, &source_config).await?
    };
    // Where schema events come from: `walcast setup`'s triggers, or inference from changes.
    let schema_trigger = crate::setup::status(&client).await.unwrap_or_else(|error| {
        tracing::warn!(%error, "schema events: cannot read whether the trigger is installed; counting it as not installed");
        crate::setup::TriggerStatus::NotInstalled
    });
    schema_trigger.log_at_start();
    let catalog = Arc::new(Catalog::new(client));

    let plugin_stop = CancellationToken::new();
    let plugin_watch = plugins.as_ref().map(|host| host.watch(plugin_stop.clone()));

    let journal_config = config
        .journal
        .journal_config(Path::new(DEFAULT_JOURNAL_DIR))?;
    let journal_dir = journal_config.dir.clone();
    let journal = tokio::task::spawn_blocking(move || Journal::open(journal_config))
        .await
        .map_err(|_| AppError::SourcePanicked)?
        .map_err(AppError::Journal)?;
    tracing::info!(
        dir = %journal_dir.display(),
        last = ?journal.last_pos(),
        segments = journal.segments(),
        bytes = journal.bytes(),
        "journal open"
    );
    let journal = bind_journal(journal, &source_config, slot_created, confirmed).await?;

    let journal_handle = journal.handle();
    let metrics = Arc::new(Metrics::new());
    metrics
        .schema_trigger_version
        .set(i64::from(schema_trigger.version()));
    let named_dir = journal_dir.clone();
    let named_config = config.named.named_config(config.replication.temporary);
    let named_metrics = metrics.clone();
    let named = tokio::task::spawn_blocking(move || {
        named::Store::open(&named_dir, named_config, named_metrics)
    })
    .await
    .map_err(|_| AppError::SourcePanicked)?
    .map_err(AppError::Named)?;
    tracing::info!(subscriptions = named.len(), "named subscriptions loaded");
    let named_stop = CancellationToken::new();
    let named_writer = tokio::spawn(
        named
            .clone()
            .run_writer(metrics.clone(), named_stop.clone()),
    );
    let hub = Hub::new(metrics.clone(), config.sessions.queue_capacity);
    // A fresh journal's start is the first position the hub hands out (`subscribed`, a new
    // named subscription's), so that every position it hands out is one the journal serves.
    if let Some(last) = journal.last_pos().or(journal.starts_after()) {
        hub.resume_after(last);
    }
    // The schema events an earlier run journaled, before the stream adds more.
    let history_journal = journal_handle.clone();
    let history =
        tokio::task::spawn_blocking(move || crate::hub::journaled_events(&history_journal))
            .await
            .unwrap_or_default();
    hub.load_history(history);
    // Without a working trigger, schema events are inferred from the changes.
    let schema_trigger_missing = !matches!(
        schema_trigger,
        crate::setup::TriggerStatus::Installed { enabled: true, .. }
    );
    let status = Arc::new(SourceStatus::default());
    let source_stop = CancellationToken::new();
    let mut source_task = tokio::spawn(source::run(
        source_config,
        Intake::new(hub.clone(), metrics.clone())
            .with_journal(journal)
            .with_named(named.clone())
            .with_temporary_slot(config.replication.temporary)
            .with_inference(schema_trigger_missing)
            .with_catalog(catalog.clone()),
        status.clone(),
        source_stop.clone(),
    ));

    let relay_stop = CancellationToken::new();
    let (relay, relay_task) =
        crate::relay::Relay::start(pg.clone(), metrics.clone(), relay_stop.clone());
    let sessions_stop = CancellationToken::new();
    let sessions = TaskTracker::new();
    let state = AppState {
        hub,
        catalog,
        pg: pg.clone(),
        allow,
        status,
        metrics: metrics.clone(),
        plugins,
        shutdown: sessions_stop.clone(),
        sessions: sessions.clone(),
        journal: journal_handle,
        named,
        max_subscriptions: config.sessions.max_subscriptions_per_socket,
        snapshots: Arc::new(crate::snapshot::Snapshots::new(
            pg.clone(),
            config.snapshot.max_concurrent,
        )),
        relay,
        notify_allow,
        auth,
        max_messages_per_second: config.sessions.max_messages_per_second,
        limits: config.limits.limits(&config.plugins),
        timeouts: crate::ws::SocketTimeouts {
            write: config.sessions.write_timeout,
            ping_interval: config.sessions.ping_interval,
            idle: config.sessions.idle_timeout,
        },
        conns: crate::http::ConnLimits::new(
            config.http.max_connections,
            config.http.max_connections_per_ip,
            config.http.trusted_proxies.clone(),
        ),
    };
    // Every request goes to the router from now on (the listener has served since start-up).
    let _ = gate.set(router(state));
    tracing::info!("pipeline ready; waiting for the replication stream");

    let source_ended = tokio::select! {
        _ = shutdown.cancelled() => None,
        ended = &mut source_task => Some(ended),
    };
    tracing::info!("shutting down");
    http.stop.cancel();
    sessions_stop.cancel();
    // Sessions end once their close frame is out (or after its own timeout).
    sessions.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, sessions.wait())
        .await
        .is_err()
    {
        tracing::warn!(sessions = sessions.len(), "sessions did not close in time");
    }
    let http_result = http.finish().await;
    source_stop.cancel();
    let source_result = match source_ended {
        Some(ended) => ended,
        None => match tokio::time::timeout(SHUTDOWN_GRACE, source_task).await {
            Ok(ended) => ended,
            Err(_) => {
                tracing::warn!("replication task did not stop in time");
                Ok(Ok(()))
            }
        },
    };
    sql_connection.abort();
    relay_stop.cancel();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, relay_task).await;
    // The last acks go to disk before walcast exits.
    named_stop.cancel();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, named_writer).await;
    plugin_stop.cancel();
    if let Some(watch) = plugin_watch {
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, watch).await;
    }
    match source_result {
        Ok(result) => result?,
        Err(_) => return Err(AppError::SourcePanicked),
    }
    http_result
}

/// The HTTP server task and its stop signal.
struct HttpServer {
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl HttpServer {
    /// Serves `app` on `listener` (HTTPS when `tls` is configured), with the client's address
    /// in each request (connection limits per address).
    fn start(
        listener: TcpListener,
        app: axum::Router,
        config: &Config,
    ) -> Result<HttpServer, crate::config::ConfigError> {
        let stop = CancellationToken::new();
        let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        let task = match config.tls.files() {
            // HTTPS/WSS only on `listen` (crate::tls: handshakes, certificate reload).
            Some((cert, key)) => {
                let listener =
                    crate::tls::TlsListener::new(listener, cert, key, config.tls.reload_interval)
                        .map_err(|e| crate::config::ConfigError::Invalid {
                        key: "tls".into(),
                        message: e.to_string(),
                    })?;
                // A no-op tap gives the TLS listener axum's `ConnectInfo<SocketAddr>`, as the
                // plain listener's `tap_io` below does.
                let listener = listener.tap_io(|_| {});
                let serve = axum::serve(listener, app)
                    .with_graceful_shutdown(stop.clone().cancelled_owned());
                tokio::spawn(async move { serve.await })
            }
            None => {
                // Frames are small and latency matters: without TCP_NODELAY, Nagle's algorithm
                // holds a frame back until the previous one is acknowledged (delayed ACKs: tens
                // of milliseconds).
                let listener = listener.tap_io(|tcp| {
                    if let Err(error) = tcp.set_nodelay(true) {
                        tracing::warn!(%error, "cannot set TCP_NODELAY on a client connection");
                    }
                });
                let serve = axum::serve(listener, app)
                    .with_graceful_shutdown(stop.clone().cancelled_owned());
                tokio::spawn(async move { serve.await })
            }
        };
        Ok(HttpServer {
            stop,
            task: Some(task),
        })
    }

    /// Stops accepting and waits (a bounded time) for the server to end; once only.
    async fn finish(&mut self) -> Result<(), AppError> {
        self.stop.cancel();
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        match tokio::time::timeout(SHUTDOWN_GRACE, task).await {
            Ok(Ok(result)) => result.map_err(AppError::Http),
            _ => Ok(()),
        }
    }
}

/// The first wait between start-up attempts; it doubles up to `replication.max_backoff`.
const FIRST_RETRY: Duration = Duration::from_millis(500);

/// The catalog's SQL connection, with the prerequisites checked, waiting for a server that is
/// not up yet: each failed attempt is logged with the server's address and the whole cause, and
/// retried after 0.5 s doubling to `replication.max_backoff`, for as long as it takes (until
/// shutdown: then `None`). A refusal no wait can fix (authentication, a missing database,
/// wal_level, wal2json, privileges, a rejected certificate) ends start-up at once.
async fn connect_at_start(
    pg: &PgEndpoint,
    source_config: &SourceConfig,
    max_backoff: Duration,
    shutdown: &CancellationToken,
) -> Result<Option<(tokio_postgres::Client, tokio::task::JoinHandle<()>, bool)>, AppError> {
    let target = source::describe_target(&pg.config);
    // What tokio-postgres would refuse on every attempt, as "invalid configuration".
    let missing = if pg.config.get_user().is_none() {
        Some("DATABASE_URL names no user: add user@ to it")
    } else if pg.config.get_hosts().is_empty() {
        Some("DATABASE_URL names no host: add a host or a socket directory")
    } else {
        None
    };
    if let Some(message) = missing {
        let cause = Box::new(SourceError::Config(message.into()));
        return Err(AppError::Postgres { target, cause });
    }
    let mut backoff = source::Backoff::new(FIRST_RETRY.min(max_backoff), max_backoff);
    let mut attempt: u64 = 1;
    loop {
        let tried = async {
            let (client, connection) = source::connect_sql(pg).await?;
            // A slot created now is one the journal (if it holds changes) cannot continue.
            let checked = async {
                let created = !source_config.temporary
                    && !source::slot_exists(&client, source_config).await?;
                source::check_prerequisites(&client, source_config).await?;
                Ok::<bool, SourceError>(created)
            };
            match checked.await {
                Ok(created) => Ok((client, connection, created)),
                Err(error) => {
                    connection.abort();
                    Err(error)
                }
            }
        };
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            outcome = tried => outcome,
        };
        match outcome {
            Ok(connected) => {
                if attempt > 1 {
                    tracing::info!(postgres = %target, attempt, "connected to Postgres");
                }
                return Ok(Some(connected));
            }
            Err(error) if error.is_retryable_at_start() => {
                let delay = backoff.delay();
                tracing::warn!(
                    postgres = %target,
                    attempt,
                    %error,
                    retry_in_ms = delay.as_millis() as u64,
                    "cannot reach Postgres yet; retrying (/readyz answers 503 meanwhile)"
                );
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(delay) => {}
                }
                attempt += 1;
            }
            Err(cause) => {
                let cause = Box::new(cause);
                return Err(AppError::Postgres { target, cause });
            }
        }
    }
}

/// The journal's identity check at start (`journal/identity.rs`), before anything streams: the
/// journal must continue the stream of this cluster, database and slot. Refused, a slot created
/// for this start is dropped again.
async fn bind_journal(
    mut journal: Journal,
    source_config: &SourceConfig,
    slot_created: bool,
    confirmed: Option<crate::vocab::Lsn>,
) -> Result<Journal, AppError> {
    let upstream = source::identify(source_config).await?;
    let identity = Identity {
        system_identifier: upstream.system_identifier,
        database: upstream.database,
        slot: upstream.slot,
    };
    let server_lsn = upstream.server_lsn;
    let (journal, bound) = tokio::task::spawn_blocking(move || {
        let bound = journal.bind(&identity, server_lsn, slot_created, confirmed);
        (journal, bound)
    })
    .await
    .map_err(|_| AppError::SourcePanicked)?;
    match bound {
        Ok(Bound::Matched | Bound::New) => {}
        Ok(Bound::Adopted) => tracing::warn!(
            identity = ?journal.identity(),
            last = ?journal.last_pos(),
            "journal directory had no identity.json (written by an earlier walcast): adopted for this cluster, database and slot, as nothing contradicts it"
        ),
        Err(error) => {
            if slot_created {
                let dropped = match source::connect_sql(&source_config.pg).await {
                    Ok((client, connection)) => {
                        let dropped = source::drop_slot(&client, source_config).await;
                        connection.abort();
                        dropped
                    }
                    Err(error) => Err(error),
                };
                if let Err(error) = dropped {
                    tracing::warn!(%error, slot = %source_config.slot, "cannot drop the replication slot created at this start");
                }
            }
            return Err(AppError::Journal(error));
        }
    }
    Ok(journal)
}
