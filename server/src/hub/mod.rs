//! Subscription registry, indexes and fan-out into bounded per-session queues. Takes decoded
//! changes from `source` through `Intake`; never writes to sockets (that is `ws`).

mod intake;
mod registry;
mod session;

pub use intake::Intake;
pub use registry::{Hub, Subscription, SubscriptionId};
// public for benches
#[doc(hidden)]
pub use registry::Scratch;
pub use session::{close_code, session_queue, Frame, Push, SessionSignal, SessionTx};
