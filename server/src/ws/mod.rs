//! The axum router and WebSocket sessions: request validation, the wire protocol, writers.
//! Does not filter or fan out (see `hub`).

mod client;
mod listen;
mod router;
mod session;
mod viewer;

pub use router::{router, AppState};
