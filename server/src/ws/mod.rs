//! WebSocket sessions: the `/ws` session loop with its subscriptions (live, catching up from the
//! journal, snapshots), the `/listen` socket, what clients send, and what every socket shares
//! (write deadlines, pings and idle timeouts). Does not route or check HTTP requests (`http`
//! does, then hands the upgraded socket here), filter or fan out (`hub` does).

pub(crate) mod client;
mod deadline;
mod keepalive;
pub(crate) mod listen;
pub(crate) mod session;

pub use keepalive::SocketTimeouts;
