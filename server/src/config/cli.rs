//! The command line: `walcast [flags]` serves, `walcast setup` installs the schema-event
//! triggers, `walcast plugin check|run` are the plugin author's tools. Declares flags only;
//! `Config::apply_cli` applies them over the file and the environment, and `main` runs the
//! commands.

use std::path::PathBuf;

use clap::Parser;

/// `walcast <command>`: tools beside the server.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Install the event triggers that describe schema changes (needs a role that may create
    /// event triggers).
    Setup(SetupArgs),
    /// Wasm filter plugin tools.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

/// `walcast setup`: connects as the server does (config file, DATABASE_URL, these flags).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SetupArgs {
    /// Print the SQL and change nothing (needs no database).
    #[arg(long)]
    pub dry_run: bool,
    /// Remove the triggers, their functions and the `walcast` schema.
    #[arg(long)]
    pub uninstall: bool,
    /// Postgres URL (as `walcast --database-url`).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// TOML config file (as `walcast --config`).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

impl SetupArgs {
    /// `cli` with this command's `--database-url` and `--config` over the top-level ones, for
    /// `Config::load`.
    pub fn over(&self, cli: &Cli) -> Cli {
        let mut cli = cli.clone();
        if let Some(url) = &self.database_url {
            cli.database_url = Some(url.clone());
        }
        if let Some(config) = &self.config {
            cli.config = Some(config.clone());
        }
        cli
    }
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum PluginCommand {
    /// Validate a module against the walcast_v1 ABI and print what is wrong.
    Check {
        /// The `.wasm` file.
        file: PathBuf,
    },
    /// Run a module's init and filter on one change and print the verdict (and rewritten frame).
    Run {
        /// The `.wasm` file.
        file: PathBuf,
        /// A wal2json v2 message or a walcast change frame (JSON).
        #[arg(long)]
        change: String,
        /// A plugin param `key=value` (repeatable).
        #[arg(long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
    },
}

/// Command-line flags. Every flag overrides the file and the environment.
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "walcast",
    version,
    about = "Stream PostgreSQL changes to WebSocket clients"
)]
pub struct Cli {
    /// Tools (setup, plugin authoring); without one, walcast serves.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// TOML config file (default: ./walcast.toml when it exists).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// HTTP/WebSocket listen address, e.g. 127.0.0.1:7700 or localhost:7700 (a name is resolved
    /// once, at start; the first address is bound).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Postgres URL; without one walcast starts an embedded demo cluster.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Replication slot name.
    #[arg(long, value_name = "NAME")]
    pub slot: Option<String>,
    /// Use a temporary replication slot (dropped when the connection ends).
    #[arg(long)]
    pub temporary_slot: bool,
    /// Allowed tables as schema.table globs; repeat the flag or give a comma list.
    #[arg(long, value_name = "GLOB", value_delimiter = ',')]
    pub tables: Vec<String>,
    /// Unread frames a session's cohort log may hold for it; a session further behind reads the
    /// journal instead.
    #[arg(long, value_name = "N")]
    pub queue_capacity: Option<String>,
    /// Directory watched for Wasm filter plugins (`*.wasm`).
    #[arg(long, value_name = "PATH")]
    pub plugin_dir: Option<PathBuf>,
    /// Log filter directive, e.g. `info,walcast=debug` (overrides WALCAST_LOG and RUST_LOG).
    #[arg(long, value_name = "FILTER")]
    pub log: Option<String>,
    /// Log format: text or json.
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Do not create the demo table and writer in the embedded cluster.
    #[arg(long)]
    pub no_demo: bool,
}
