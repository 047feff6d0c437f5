//! Subscription registry, cohorts, indexes and fan-out into bounded cohort logs that sessions read
//! from their own cursors. Takes decoded changes from `source` through `Intake`; never writes to
//! sockets (that is `ws`).

mod catchup;
mod cohort;
mod intake;
mod journaling;
mod prefilter;
mod registry;
mod schema_events;
mod verdict;

pub use catchup::{
    Budget, CatchUp, CatchUpError, CatchUpRequest, CatchUpSlots, Fill, RECORDS_PER_STEP,
};
pub use cohort::{Cohort, Entry, Next, Pushed, Reader};
pub use intake::Intake;
pub use registry::{Hub, SubscribeRequest, Subscription, SubscriptionId};
pub use schema_events::{
    carry, frame_for, journaled_events, schema_changed_frame, Binding, FollowRequest, Rebinding,
    Sees, Sight,
};
pub use verdict::PluginOutcome;
// public for benches
#[doc(hidden)]
pub use registry::Scratch;
