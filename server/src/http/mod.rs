//! The HTTP surface: the route table (`routes`), who a request is and whether it gets a socket
//! (`admission`, `conns`), the checks of a subscription request before the `/ws` upgrade
//! (`request`) and of a channel before the `/listen` upgrade (`listen`), the admin API
//! (`admin`), the probes and the start-up gate (`probes`), the host check and the 426 answer
//! (`edge`), the viewer page (`viewer`), and the one shape of its error answers (`error`). Does
//! not run sessions: `ws` does, once a request passed its checks.

mod admin;
mod admission;
mod conns;
mod edge;
mod error;
mod listen;
mod probes;
mod request;
mod routes;
mod viewer;

pub use conns::ConnLimits;
pub use probes::gated;
pub use routes::{router, AppState};
