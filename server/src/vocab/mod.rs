//! The words several stages share, at the bottom of the house: WAL positions (`Lsn`), stream
//! positions (`Pos`), row operations (`Op`), encoded frames (`Frame`), the signal that closes one
//! session (`SessionSignal`), the close codes with their standard reasons (`close_code`) and
//! which transactions a snapshot shows (`Visibility`). Imports no stage; every stage takes its
//! words from here, and none re-exports them. Holds values and their text forms only: no I/O, no
//! tasks, no configuration.

pub mod close_code;
mod frame;
mod lsn;
mod op;
mod pos;
mod signal;
mod visibility;

pub use frame::Frame;
pub use lsn::{Lsn, ParseLsnError};
pub use op::Op;
pub use pos::{ParsePosError, Pos};
pub use signal::SessionSignal;
pub use visibility::Visibility;
