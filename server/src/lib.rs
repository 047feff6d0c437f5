//! walcast: streams PostgreSQL changes (wal2json over logical replication) to WebSocket clients.
//!
//! The modules mirror the pipeline: `source` (replication connection, slot, LSN feedback) ->
//! `decode` (simd-json -> change view, frame encoding) -> `filter` (query-string predicates,
//! catalog) -> `hub` (subscription registry, cohorts, indexes, fan-out into bounded cohort logs)
//! -> `ws` (axum router, sessions, wire protocol). `app` wires them; `embedded` runs the throwaway demo cluster.

pub mod app;
pub mod auth;
pub mod config;
pub mod decode;
pub mod embedded;
pub mod filter;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod hub;
pub mod journal;
pub mod metrics;
pub mod named;
pub mod relay;
pub mod snapshot;
pub mod source;
pub mod telemetry;
pub mod tls;
pub mod vocab;
pub mod ws;
