//! `walcast setup`: installs and removes the event triggers that describe every schema change
//! as a `walcast.ddl` logical message in the change's transaction (the SQL is `sql.rs`), says
//! plainly what to do when the role may not create them, and reads whether they are installed
//! (walcast reports it at start). Does not read the messages (`schema` does) and does not decide
//! what their absence means for subscribers (the intake does).

mod sql;

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::source::{self, PgEndpoint, SourceError};

pub use sql::{DDL_VERSION, TRIGGERS};

/// What `walcast setup` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Install,
    Uninstall,
}

/// Whether the event triggers are installed in the database walcast reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TriggerStatus {
    /// At least one of the three triggers exists. `version` is `walcast.ddl_version()` (0 when
    /// that function is missing); `enabled` when all three exist and fire in every session
    /// (`ENABLE ALWAYS`, as installed).
    Installed {
        version: u32,
        enabled: bool,
    },
    NotInstalled,
}

impl TriggerStatus {
    /// The installed version; 0 when not installed (the `walcast_schema_trigger_version` gauge).
    pub fn version(&self) -> u32 {
        match self {
            TriggerStatus::Installed { version, .. } => *version,
            TriggerStatus::NotInstalled => 0,
        }
    }

    /// The start-up line saying where schema events will come from.
    pub fn log_at_start(&self) {
        match *self {
            TriggerStatus::Installed {
                version,
                enabled: true,
            } if version == DDL_VERSION => {
                tracing::info!("schema events: trigger installed (version {version})");
            }
            TriggerStatus::Installed { version, enabled } => {
                let problem = if !enabled {
                    format!(
                        "not all of {} exist with ENABLE ALWAYS: DDL may go undescribed",
                        TRIGGERS.join(", ")
                    )
                } else if version > DDL_VERSION {
                    format!("newer than this walcast reads ({DDL_VERSION}): its messages are refused; upgrade walcast")
                } else {
                    format!("this walcast installs version {DDL_VERSION}")
                };
                tracing::warn!(
                    "schema events: trigger installed (version {version}), but {problem}; run walcast setup"
                );
            }
            TriggerStatus::NotInstalled => tracing::info!(
                "schema events: no trigger installed (run walcast setup); changes whose columns differ from the catalog emit inferred schema events"
            ),
        }
    }
}

/// Why `walcast setup` (or the status query) failed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The role may not create event triggers (SQLSTATE 42501).
    #[error("{}", not_allowed_message(role, cause))]
    NotAllowed {
        role: String,
        #[source]
        cause: tokio_postgres::Error,
    },
    #[error("cannot connect to Postgres at {target}: {cause}")]
    Connect {
        target: String,
        #[source]
        cause: SourceError,
    },
    #[error("cannot {action}: {}", source::error_chain(cause))]
    Sql {
        action: &'static str,
        #[source]
        cause: tokio_postgres::Error,
    },
    #[error("walcast.ddl_version() returned {0}, which is no version")]
    BadVersion(i32),
}

impl SetupError {
    /// The exit code of `walcast setup`: 2 for a connection string to fix, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            SetupError::Connect {
                cause: SourceError::Config(_),
                ..
            } => 2,
            _ => 1,
        }
    }

    fn sql(action: &'static str) -> impl FnOnce(tokio_postgres::Error) -> SetupError {
        move |cause| SetupError::Sql { action, cause }
    }
}

/// What a role that may not create event triggers reads: the privilege, that walcast works
/// without the triggers, and what managed services are known to allow.
fn not_allowed_message(role: &str, cause: &tokio_postgres::Error) -> String {
    let server = cause
        .as_db_error()
        .map_or_else(|| cause.to_string(), |e| e.message().to_owned());
    format!(
        "role \"{role}\" may not install the schema-event triggers ({server}).\n\
         \n\
         walcast setup creates event triggers, and PostgreSQL (15) lets only superusers create \
         them: run it once with a superuser's connection string (--database-url or \
         DATABASE_URL); walcast itself keeps its own role.\n\
         \n\
         walcast works without them: a change whose columns differ from walcast's catalog \
         emits an inferred schema event (\"source\":\"inferred\") before that change, with the \
         columns the change shows; a DDL that no change of its table follows goes unnoticed.\n\
         \n\
         Managed services: on Amazon RDS for PostgreSQL the master user (rds_superuser) may \
         create event triggers; on Supabase, the postgres role may. Elsewhere (Google Cloud \
         SQL, Azure, others), ask your provider whether event triggers are available."
    )
}

/// The SQL `walcast setup` would run, as a psql script (`--dry-run`).
pub fn dry_run(action: Action) -> String {
    let (what, body) = match action {
        Action::Install => ("installs", sql::install()),
        Action::Uninstall => ("--uninstall runs", sql::UNINSTALL.to_owned()),
    };
    format!(
        "-- walcast setup {what} this, in one transaction (printed by --dry-run: nothing was changed).\n{}",
        sql::script(&body)
    )
}

/// Installs (or re-installs) the schema, functions and triggers in one transaction that ends
/// with the `installed` control message.
pub async fn install(client: &mut Client) -> Result<(), SetupError> {
    run_in_transaction(client, &sql::install(), "install the schema-event triggers").await
}

/// Emits the `uninstalled` control message, then drops the triggers, functions and the
/// `walcast` schema, in one transaction.
pub async fn uninstall(client: &mut Client) -> Result<(), SetupError> {
    run_in_transaction(client, sql::UNINSTALL, "remove the schema-event triggers").await
}

async fn run_in_transaction(
    client: &mut Client,
    body: &str,
    action: &'static str,
) -> Result<(), SetupError> {
    let role: String = client
        .query_one("SELECT current_user::text", &[])
        .await
        .map_err(SetupError::sql("read the current role"))?
        .get(0);
    let refused = |cause: tokio_postgres::Error| {
        if cause.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
            SetupError::NotAllowed {
                role: role.clone(),
                cause,
            }
        } else {
            SetupError::Sql { action, cause }
        }
    };
    // Dropped without a commit, the transaction rolls back: all or nothing.
    let transaction = client.transaction().await.map_err(&refused)?;
    transaction.batch_execute(body).await.map_err(&refused)?;
    transaction.commit().await.map_err(refused)
}

/// Reads whether the triggers are installed, their version and whether all three are enabled.
pub async fn status(client: &Client) -> Result<TriggerStatus, SetupError> {
    let rows = client
        .query(
            "SELECT evtname::text, evtenabled::text FROM pg_catalog.pg_event_trigger \
             WHERE evtname = ANY ($1)",
            &[&TRIGGERS.as_slice()],
        )
        .await
        .map_err(SetupError::sql("read pg_event_trigger"))?;
    if rows.is_empty() {
        return Ok(TriggerStatus::NotInstalled);
    }
    let enabled = rows.len() == TRIGGERS.len() && rows.iter().all(|r| r.get::<_, &str>(1) == "A");
    let has_version: bool = client
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_proc p \
             JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
             WHERE n.nspname = 'walcast' AND p.proname = 'ddl_version' AND p.pronargs = 0)",
            &[],
        )
        .await
        .map_err(SetupError::sql("look for walcast.ddl_version()"))?
        .get(0);
    let version = if has_version {
        let v: i32 = client
            .query_one("SELECT walcast.ddl_version()", &[])
            .await
            .map_err(SetupError::sql("call walcast.ddl_version()"))?
            .get(0);
        u32::try_from(v).map_err(|_| SetupError::BadVersion(v))?
    } else {
        0
    };
    Ok(TriggerStatus::Installed { version, enabled })
}

/// `walcast setup` against `pg`: connects as the server does (same host, TLS and sslrootcert
/// settings), runs `action` and returns the line to print.
pub async fn run(pg: &PgEndpoint, action: Action) -> Result<String, SetupError> {
    let target = source::describe_target(&pg.config);
    let (mut client, connection) =
        source::connect_sql(pg)
            .await
            .map_err(|cause| SetupError::Connect {
                target: target.clone(),
                cause,
            })?;
    let database = pg.config.get_dbname().unwrap_or("(default)").to_owned();
    let line = match action {
        Action::Install => {
            install(&mut client).await?;
            let version = status(&client).await?.version();
            format!(
                "walcast setup: schema-event triggers installed (version {version}) in database \"{database}\" at {target}; walcast reads schema events from them"
            )
        }
        Action::Uninstall => {
            uninstall(&mut client).await?;
            format!(
                "walcast setup: schema-event triggers removed from database \"{database}\" at {target}; walcast infers schema events from changes"
            )
        }
    };
    // The connection task ends once the client is gone.
    drop(client);
    let _ = connection.await;
    Ok(line)
}
