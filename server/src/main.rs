//! The `walcast` binary: parses flags, loads config from the real environment, starts the
//! embedded demo cluster when no database is configured, binds the listener, turns SIGINT/SIGTERM
//! into the root cancellation token and hands everything to `walcast::app::run`; or runs a
//! command (`setup`, `plugin`). No pipeline logic lives here.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use walcast::config::{Cli, Command, Config, PluginCommand, PluginsConfig};
use walcast::embedded::{self, EmbeddedPostgres};
use walcast::setup::Action;

/// Exit code for an invalid configuration (as clap uses for bad flags).
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Plugin(command)) => return plugin_tool(command),
        Some(Command::Setup(args)) => {
            let action = if args.uninstall {
                Action::Uninstall
            } else {
                Action::Install
            };
            if args.dry_run {
                print!("{}", walcast::setup::dry_run(action));
                return ExitCode::SUCCESS;
            }
            return setup_tool(&args.over(&cli), action);
        }
        None => {}
    }
    let config = match Config::load(&cli, &|key| std::env::var(key).ok()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("walcast: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    walcast::telemetry::init(&config.log);
    // Every WebSocket client is one socket: take the hard open-file limit, not the soft default.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(limit, "open-file limit"),
        Err(error) => tracing::warn!(%error, "cannot raise the open-file limit"),
    }

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("walcast: cannot start the tokio runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("walcast: {err:#}");
            let code = err
                .downcast_ref::<walcast::app::AppError>()
                .map_or(1, walcast::app::AppError::exit_code);
            ExitCode::from(code)
        }
    }
}

/// `walcast setup [--uninstall]`: against the database the server would read.
fn setup_tool(cli: &Cli, action: Action) -> ExitCode {
    let config = match Config::load(cli, &|key| std::env::var(key).ok()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("walcast setup: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let Some(pg) = config.pg_endpoint() else {
        eprintln!(
            "walcast setup: no database configured (set DATABASE_URL, database_url or \
             --database-url); the embedded demo cluster installs the triggers by itself"
        );
        return ExitCode::from(EXIT_CONFIG);
    };
    walcast::telemetry::init(&config.log);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("walcast setup: cannot start the tokio runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(walcast::setup::run(&pg, action)) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("walcast setup: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}

/// `walcast plugin check|run`: develop a filter without a database.
fn plugin_tool(command: &PluginCommand) -> ExitCode {
    use walcast::filter::wasm::{check_file, run_file};
    match command {
        PluginCommand::Check { file } => match check_file(file) {
            Ok(report) => {
                println!("{report}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("walcast: {}: {err}", file.display());
                ExitCode::FAILURE
            }
        },
        PluginCommand::Run {
            file,
            change,
            params,
        } => {
            let mut pairs = Vec::new();
            for p in params {
                match p.split_once('=') {
                    Some((k, v)) => pairs.push((k.to_owned(), v.to_owned())),
                    None => {
                        eprintln!("walcast: --param {p:?}: expected key=value");
                        return ExitCode::from(EXIT_CONFIG);
                    }
                }
            }
            match run_file(file, change, &pairs, &PluginsConfig::default()) {
                Ok(outcome) => {
                    println!("{outcome}");
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("walcast: {}: {err}", file.display());
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn run(mut config: Config) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let signals = tokio::spawn(cancel_on_signal(shutdown.clone()));

    // Embedded mode: a throwaway cluster (plus demo table and writer) when no database is set.
    let mut embedded: Option<(
        EmbeddedPostgres,
        CancellationToken,
        Option<tokio::task::JoinHandle<()>>,
    )> = None;
    if config.database_url.is_none() {
        let cluster = EmbeddedPostgres::start(&config.embedded).await.context(
            "cannot start the embedded demo Postgres (set database_url to use your own)",
        )?;
        let url = cluster.database_url();
        let writer_cancel = shutdown.child_token();
        let writer = if config.embedded.demo {
            embedded::seed_demo(&url)
                .await
                .context("cannot create the demo table")?;
            Some(embedded::spawn_demo_writer(&url, writer_cancel.clone()))
        } else {
            None
        };
        tracing::info!(demo = config.embedded.demo, "using the embedded Postgres");
        println!("embedded Postgres: {}", cluster.psql_command());
        config.database_url = Some(url);
        if config.journal.dir.is_none() {
            config.journal.dir = Some(cluster.socket_dir().join("journal"));
        }
        embedded = Some((cluster, writer_cancel, writer));
    }

    let listen = config.listen;
    let result = match tokio::net::TcpListener::bind(listen).await {
        Ok(listener) => {
            let addr = listener.local_addr().unwrap_or(listen);
            let (http, ws) = if config.tls.files().is_some() {
                ("https", "wss")
            } else {
                ("http", "ws")
            };
            // The demo's table exists only in the embedded demo cluster.
            let hint = match &embedded {
                Some(_) if config.embedded.demo => {
                    format!("  (try: websocat '{ws}://{addr}/ws?query=*:people')")
                }
                _ => String::new(),
            };
            println!("walcast listening on {http}://{addr}{hint}");
            walcast::app::run(config, listener, shutdown.clone())
                .await
                .context("walcast stopped")
        }
        Err(err) => Err(anyhow::Error::new(err).context(format!(
            "cannot listen on {listen} (change `listen`, WALCAST_LISTEN or --listen)"
        ))),
    };

    // Whatever happened, wind down the demo pieces; the cluster goes last so the app's
    // connections close first.
    shutdown.cancel();
    if let Some((cluster, writer_cancel, writer)) = embedded {
        writer_cancel.cancel();
        if let Some(writer) = writer {
            let _ = writer.await;
        }
        cluster.stop().await;
    }
    signals.abort();
    result
}

/// Cancels `shutdown` on the first SIGINT or SIGTERM.
async fn cancel_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        result = tokio::signal::ctrl_c() => {
            if let Err(error) = result {
                tracing::warn!(%error, "cannot listen for SIGINT");
                return;
            }
        }
        () = terminate => {}
        () = shutdown.cancelled() => return,
    }
    tracing::info!("shutdown signal received");
    shutdown.cancel();
}
