//! Start-up checks over an ordinary SQL connection, so that a misconfigured server fails with a
//! message naming the fix before streaming starts. It does not stream (stream.rs).

use tokio_postgres::Client;
use tracing::info;

use super::error::{ServerError, SourceError};
use super::SourceConfig;

/// Whether the replication slot exists now (so the start-up checks can tell a slot walcast is
/// about to create from one that was there).
pub async fn slot_exists(client: &Client, cfg: &SourceConfig) -> Result<bool, SourceError> {
    let user = cfg.pg.config.get_user().unwrap_or_default();
    let row = client
        .query_opt(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
            &[&cfg.slot],
        )
        .await
        .map_err(|e| SourceError::from_sql("looking up the replication slot", e, user))?;
    Ok(row.is_some())
}

/// The slot's `confirmed_flush_lsn`: where the stream it sends begins (`None` for a slot that
/// does not exist or never confirmed anything).
pub async fn slot_confirmed_flush(
    client: &Client,
    cfg: &SourceConfig,
) -> Result<Option<crate::vocab::Lsn>, SourceError> {
    let user = cfg.pg.config.get_user().unwrap_or_default();
    let row = client
        .query_opt(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&cfg.slot],
        )
        .await
        .map_err(|e| SourceError::from_sql("reading the slot's confirmed position", e, user))?;
    Ok(row
        .and_then(|row| row.get::<_, Option<String>>(0))
        .and_then(|text| text.parse().ok()))
}

/// Drops the slot walcast created at this start, when the start is refused after all.
pub async fn drop_slot(client: &Client, cfg: &SourceConfig) -> Result<(), SourceError> {
    let user = cfg.pg.config.get_user().unwrap_or_default();
    client
        .execute("SELECT pg_drop_replication_slot($1)", &[&cfg.slot])
        .await
        .map_err(|e| SourceError::from_sql("dropping the replication slot", e, user))?;
    Ok(())
}

/// Checks wal_level, the role's privilege, the slot's plugin, free slots and that wal2json can be
/// loaded. A missing persistent slot is created here (that is the wal2json check); for a temporary
/// slot a throwaway probe slot is created and dropped.
pub async fn check_prerequisites(client: &Client, cfg: &SourceConfig) -> Result<(), SourceError> {
    let user = cfg.pg.config.get_user().unwrap_or_default();
    let sql = |context: &'static str| move |e| SourceError::from_sql(context, e, user);

    let wal_level: String = client
        .query_one("SELECT current_setting('wal_level')", &[])
        .await
        .map_err(sql("reading wal_level"))?
        .get(0);
    if wal_level != "logical" {
        return Err(SourceError::WalLevel(ServerError {
            code: "55000".into(),
            message: format!("wal_level is {wal_level}"),
            ..Default::default()
        }));
    }

    let privileged: bool = client
        .query_one(
            "SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map_err(sql("reading the role's privileges"))?
        .get(0);
    if !privileged {
        return Err(SourceError::MissingPrivilege {
            user: user.to_owned(),
            server: ServerError {
                code: "42501".into(),
                message: "the role has neither REPLICATION nor SUPERUSER".into(),
                ..Default::default()
            },
        });
    }

    let existing = client
        .query_opt(
            "SELECT plugin::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&cfg.slot],
        )
        .await
        .map_err(sql("looking up the replication slot"))?;
    if let Some(row) = existing {
        let plugin: Option<String> = row.get(0);
        if plugin.as_deref() != Some("wal2json") {
            return Err(SourceError::SlotWrongPlugin {
                slot: cfg.slot.clone(),
                plugin: plugin.unwrap_or_else(|| "(physical)".into()),
            });
        }
        return Ok(());
    }

    let row = client
        .query_one(
            "SELECT current_setting('max_replication_slots')::int8, (SELECT count(*) FROM pg_replication_slots)",
            &[],
        )
        .await
        .map_err(sql("counting replication slots"))?;
    let (max, used): (i64, i64) = (row.get(0), row.get(1));
    if used >= max {
        return Err(SourceError::SlotsExhausted(ServerError {
            code: "53400".into(),
            message: format!("{used} of max_replication_slots = {max} are in use"),
            ..Default::default()
        }));
    }

    // pg_available_extensions does not list output plugins: loading it is the only check.
    if cfg.temporary {
        let probe = format!("walcast_probe_{}", std::process::id());
        client
            .execute(
                "SELECT slot_name FROM pg_create_logical_replication_slot($1, 'wal2json', true)",
                &[&probe],
            )
            .await
            .map_err(sql("creating a probe slot"))?;
        client
            .execute("SELECT pg_drop_replication_slot($1)", &[&probe])
            .await
            .map_err(sql("dropping the probe slot"))?;
    } else {
        let created = client
            .execute(
                "SELECT slot_name FROM pg_create_logical_replication_slot($1, 'wal2json', false)",
                &[&cfg.slot],
            )
            .await;
        match created {
            Ok(_) => info!(slot = %cfg.slot, "created replication slot"),
            // Created concurrently (another walcast, or the replication connection): fine.
            Err(e) if e.code().map(|c| c.code()) == Some("42710") => {}
            Err(e) => {
                return Err(SourceError::from_sql(
                    "creating the replication slot",
                    e,
                    user,
                ))
            }
        }
    }
    Ok(())
}
