//! The HTTP surface: the axum router, request validation before the `/ws` and `/listen`
//! upgrades, connection limits, the admin API, the probes and the viewer page. Does not run
//! sessions (`ws` does, once a request passed its checks).

mod conns;
mod edge;
mod listen;
mod router;
mod viewer;

pub use conns::ConnLimits;
pub use router::{router, AppState};
