//! The `schema` frame a subscriber receives (see README and docs/reference/protocol.md), built
//! per subscriber shape: only the columns it may see.

use crate::vocab::Pos;

use super::diff::{Diff, Renamed};
use super::event::SchemaEvent;

/// Which shape a column name belongs to, for the visibility test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Before,
    After,
}

/// Appends the frame to `out`. `visible(side, column)` says whether the subscriber may see a
/// column; `rebound` lists the renamed columns its request used.
pub fn encode_frame(
    out: &mut String,
    event: &SchemaEvent,
    diff: &Diff,
    pos: Option<Pos>,
    visible: &dyn Fn(Side, &str) -> bool,
    rebound: &[Renamed],
) {
    todo!()
}
