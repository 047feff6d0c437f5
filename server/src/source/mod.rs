//! stub
mod lsn;
pub use lsn::{Lsn, ParseLsnError};
