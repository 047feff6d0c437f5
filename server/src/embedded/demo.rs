//! Demo data for the embedded cluster: the `public.people` table, the schema-event triggers of
//! `walcast setup`, and a writer task that inserts, updates or deletes one row per second so a
//! new user sees changes immediately. Starts no server (`cluster` does).

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};
use tokio_util::sync::CancellationToken;

use super::EmbeddedError;

const NAMES: [&str; 12] = [
    "Paul", "Ana", "Wei", "Fatima", "Jonas", "Priya", "Mateo", "Yuki", "Olu", "Sara", "Ivan",
    "Lena",
];
const CITIES: [&str; 6] = ["Lisbon", "Osaka", "Lagos", "Berlin", "Lima", "Pune"];

/// Below this many rows the writer inserts instead of deleting, so the table never empties.
const MIN_ROWS: i64 = 5;

/// Creates `public.people` and fills it with ten rows when it is empty, and installs the
/// schema-event triggers (idempotent).
pub async fn seed_demo(url: &str) -> Result<(), EmbeddedError> {
    let mut client = connect(url).await?;
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS public.people (
                 pk serial PRIMARY KEY,
                 name text NOT NULL,
                 age int,
                 height float8,
                 city text,
                 updated_at timestamptz DEFAULT now()
             )",
        )
        .await
        .map_err(|cause| EmbeddedError::Sql {
            action: "create table public.people",
            cause,
        })?;
    let row = client
        .query_one("SELECT count(*) FROM public.people", &[])
        .await
        .map_err(|cause| EmbeddedError::Sql {
            action: "count public.people",
            cause,
        })?;
    if row.get::<_, i64>(0) == 0 {
        for n in 0..10u32 {
            insert_person(&client, n).await?;
        }
    }
    tracing::info!(table = "public.people", "demo table ready");
    // The cluster's role is its superuser, so `walcast setup` needs no privilege here; without
    // the triggers the demo still runs, with inferred schema events.
    if let Err(error) = crate::setup::install(&mut client).await {
        tracing::warn!(%error, "cannot install the schema-event triggers in the embedded cluster; schema events are inferred");
    }
    Ok(())
}

/// Starts the demo writer: one insert, update or delete per second until `cancel` fires.
/// Connection errors are logged and retried on the next tick.
pub fn spawn_demo_writer(url: &str, cancel: CancellationToken) -> JoinHandle<()> {
    let url = url.to_owned();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut client: Option<Client> = None;
        let mut step: u32 = 0;
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = ticker.tick() => {}
            }
            let needs_connect = match &client {
                Some(c) => c.is_closed(),
                None => true,
            };
            if needs_connect {
                match connect(&url).await {
                    Ok(c) => client = Some(c),
                    Err(error) => {
                        tracing::warn!(%error, "demo writer cannot connect; retrying");
                        continue;
                    }
                }
            }
            let Some(c) = client.as_ref() else { continue };
            if let Err(error) = demo_step(c, step).await {
                tracing::warn!(%error, "demo writer step failed");
            }
            step = step.wrapping_add(1);
        }
        tracing::debug!("demo writer stopped");
    })
}

/// One change chosen by the step counter: insert, update age, update city, delete the oldest;
/// then a NOTIFY on channel `people` saying which (for `/listen/people`).
pub(super) async fn demo_step(client: &Client, step: u32) -> Result<(), EmbeddedError> {
    change_step(client, step).await?;
    let what = match step % 4 {
        0 => "insert",
        1 | 2 => "update",
        _ => "delete",
    };
    let payload = format!(r#"{{"step":{step},"op":"{what}","table":"public.people"}}"#);
    client
        .execute("SELECT pg_notify('people', $1)", &[&payload])
        .await
        .map(drop)
        .map_err(|cause| EmbeddedError::Sql {
            action: "notify people",
            cause,
        })
}

async fn change_step(client: &Client, step: u32) -> Result<(), EmbeddedError> {
    match step % 4 {
        0 => insert_person(client, step).await,
        1 | 2 => {
            let city = CITIES[(step as usize / 4) % CITIES.len()];
            client
                .execute(
                    "UPDATE public.people
                        SET age = coalesce(age, 0) + 1, city = $1, updated_at = now()
                      WHERE pk = (SELECT pk FROM public.people ORDER BY pk
                                  OFFSET $2::bigint % greatest((SELECT count(*) FROM public.people), 1)
                                  LIMIT 1)",
                    &[&city, &i64::from(step)],
                )
                .await
                .map(drop)
                .map_err(|cause| EmbeddedError::Sql {
                    action: "update public.people",
                    cause,
                })
        }
        _ => {
            let deleted = client
                .execute(
                    "DELETE FROM public.people
                      WHERE pk = (SELECT min(pk) FROM public.people)
                        AND (SELECT count(*) FROM public.people) > $1",
                    &[&MIN_ROWS],
                )
                .await
                .map_err(|cause| EmbeddedError::Sql {
                    action: "delete from public.people",
                    cause,
                })?;
            if deleted == 0 {
                insert_person(client, step).await?;
            }
            Ok(())
        }
    }
}

async fn insert_person(client: &Client, n: u32) -> Result<(), EmbeddedError> {
    let i = n as usize;
    let name = NAMES[i % NAMES.len()];
    let age = 18 + (n * 7 % 60) as i32;
    let height = 1.50 + f64::from(n * 13 % 45) / 100.0;
    let city = CITIES[i % CITIES.len()];
    client
        .execute(
            "INSERT INTO public.people (name, age, height, city) VALUES ($1, $2, $3, $4)",
            &[&name, &age, &height, &city],
        )
        .await
        .map(drop)
        .map_err(|cause| EmbeddedError::Sql {
            action: "insert into public.people",
            cause,
        })
}

/// Plain connection for demo SQL; the embedded cluster is on a Unix socket, so no TLS.
pub(super) async fn connect(url: &str) -> Result<Client, EmbeddedError> {
    let (client, connection) =
        tokio_postgres::connect(url, NoTls)
            .await
            .map_err(|cause| EmbeddedError::Sql {
                action: "connect",
                cause,
            })?;
    // Ends by itself when the client is dropped.
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "demo connection closed");
        }
    });
    Ok(client)
}
