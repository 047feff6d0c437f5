//! Encoded frames: what every stage that builds a frame for a client hands on (the hub's cohort
//! logs, catch-ups, snapshots, the relay, error frames), and what `ws` writes. Builds none.

use axum::extract::ws::Utf8Bytes;

/// One encoded frame, validated as UTF-8 once and shared by every session that receives it.
pub type Frame = Utf8Bytes;
