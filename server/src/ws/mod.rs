//! The axum router and WebSocket sessions: request validation, the wire protocol, writers.
//! Does not filter or fan out (see `hub`).

pub(crate) mod client;
mod conns;
mod deadline;
mod edge;
mod keepalive;
mod listen;
mod router;
mod session;
mod viewer;

pub use conns::ConnLimits;
pub use keepalive::SocketTimeouts;
pub use router::{router, AppState};
