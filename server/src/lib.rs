//! walcast: streams PostgreSQL changes (wal2json over logical replication) to WebSocket clients.
//!
//! The modules follow the data, one stage each:
//!
//! ```text
//! source ──> hub::Intake ──┬──> journal ─────────────────────────────> ws sessions (catch-up)
//!                          └──> decode, filter ──> hub cohort logs ──> ws sessions <── http
//!
//! beside them: relay (LISTEN/NOTIFY), snapshot (current rows), named (sub=, acks),
//!              auth (tokens, policies); under them all: vocab, config, metrics
//! ```
//!
//! `source` hands each wal2json payload to the hub's intake, which journals it, decodes it and
//! offers it to every matching cohort; a `ws` session sends its cohort's frames, or reads the
//! journal when it resumes or falls behind; `http` checks a request before its socket is opened.
//! Every stage takes its shared words from `vocab` and imports no sibling for them; the import
//! graph is drawn and checked by `server/tests/house.rs`.

/// Wiring: builds every stage from a `Config`, runs them, shuts them down in order.
pub mod app;
/// Who a request is: tokens (JWT, JWKS), the admin token, origins and hosts, policies.
pub mod auth;
/// The configuration tree: file, environment, CLI flags, validation.
pub mod config;
/// wal2json payloads to borrowed change views (simd-json, in place), and change frames.
pub mod decode;
/// The throwaway Postgres cluster with demo data that `walcast` starts without a database.
pub mod embedded;
/// Subscription requests and their predicates, the table catalog and allow-list; plugins.
pub mod filter;
#[doc(hidden)]
pub mod fuzzing;
/// The HTTP surface: routes, request checks before an upgrade, admin API, probes, viewer.
pub mod http;
/// The intake from the source, the subscription registry, cohort logs and journal catch-ups.
pub mod hub;
/// The durable journal of every change taken from the slot, its readers and retention.
pub mod journal;
/// The Prometheus metrics every stage bumps, rendered at `/metrics`.
pub mod metrics;
/// Named subscriptions (`sub=`): claims, acks and the subscriptions file.
pub mod named;
/// The LISTEN/NOTIFY relay: one Postgres connection, channels shared by sockets.
pub mod relay;
/// One way to watch files for changes: plugins, JWKS, TLS certificates.
mod reload;
/// Schema events: the event triggers' messages, table shapes, diffs, rebinding, `schema` frames.
pub mod schema;
/// `walcast setup`: the event triggers that emit `walcast.ddl` messages; installed or not.
pub mod setup;
/// Snapshots: a subscription's current rows, read in one transaction.
pub mod snapshot;
/// The replication source: connection, slot, LSN feedback, reconnects; every Postgres connection.
pub mod source;
/// The `tracing` subscriber, installed once.
pub mod telemetry;
/// The HTTPS listener: handshakes and certificate reload.
pub mod tls;
/// The words stages share: positions, LSNs, operations, frames, session signals, close codes.
pub mod vocab;
/// Webhooks: the bodies and headers each delivery `format` sends to an endpoint.
pub mod webhooks;
/// WebSocket sessions: the `/ws` session loop with its subscriptions, the `/listen` socket.
pub mod ws;

/// The reference docs held against the code (test only).
#[cfg(test)]
mod reference_docs;
