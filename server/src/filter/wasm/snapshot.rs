//! The copy of the change under evaluation that host functions read. Does not talk to the guest.
//!
//! Why a copy: host functions receive only `Caller<'_, StoreData>`, and wasmtime requires store
//! data to be `'static`, so the borrowed `Change<'a>` (which points into the replication payload)
//! cannot be reached from inside a call without `unsafe`, which this crate denies. So before each
//! `walcast_filter` call the names and values of the change are appended to one reusable `String`
//! and indexed by small `Col` records. After warm-up that costs no allocation, just one memcpy of
//! the payload's column bytes per evaluation per group (groups are few: one per distinct
//! plugin + params + visible columns). That is a known, bounded cost; the guest still pulls only
//! what it needs.
//!
//! Under a policy rule with `columns` the copy holds only the visible columns (see `visible`):
//! every host function and every rewrite reads this copy, so a hidden column is absent for all
//! of them. Each copied column remembers its index in the change, which the renderer uses.

use std::ops::Range;
use std::sync::Arc;

use super::visible::Visible;
use crate::decode::{Change, Image, Value};
use crate::vocab::Op;

/// Value class of a copied column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Null,
    Bool(bool),
    /// Number text as Postgres printed it.
    Number,
    String,
    /// A `json`/`jsonb` column: the text is JSON.
    Json,
}

#[derive(Clone, Debug)]
pub(crate) struct Col {
    pub(crate) name: Range<u32>,
    pub(crate) value: Range<u32>,
    pub(crate) kind: Kind,
    /// Index of the column in the change's image (differs from the copy's index when columns
    /// are hidden). `u32` keeps `Col` at 24 bytes; a payload below 4 GiB has fewer columns.
    pub(crate) orig: u32,
}

/// Owned copy of one change: text in one buffer, columns as ranges into it.
#[derive(Default)]
pub(crate) struct ChangeCopy {
    /// `None` outside `walcast_filter` (host functions then answer `NO_CHANGE`).
    pub(crate) op: Option<Op>,
    text: String,
    schema: Range<u32>,
    table: Range<u32>,
    new: Vec<Col>,
    old: Vec<Col>,
    /// The columns the guest may see; `None`: all of them.
    visible: Option<Arc<Visible>>,
}

/// Column handles encode the image in bit 16: wal2json rows have at most 1600 columns.
const OLD_BIT: i32 = 1 << 16;

impl ChangeCopy {
    /// Copy only the columns of `visible` from now on (`None`: every column).
    pub(crate) fn set_visible(&mut self, visible: Option<Arc<Visible>>) {
        self.visible = visible;
    }

    /// Whether the guest may see and write column `name` (writes of other names are refused,
    /// so a rewrite under a rule carries only the rule's columns).
    pub(crate) fn visible(&self, name: &[u8]) -> bool {
        self.visible.as_ref().is_none_or(|v| v.contains(name))
    }

    /// Replace the contents with `change` (reusing the buffers), leaving out hidden columns.
    pub(crate) fn fill(&mut self, change: &Change<'_>) {
        self.text.clear();
        self.new.clear();
        self.old.clear();
        self.op = change.op();
        self.schema = push(&mut self.text, change.schema());
        self.table = push(&mut self.text, change.table());
        for image in [Image::New, Image::Old] {
            for (orig, column) in change.columns(image).enumerate() {
                if !self.visible(column.name.as_bytes()) {
                    continue;
                }
                let name = push(&mut self.text, column.name);
                let (kind, value) = match column.value {
                    Value::Null => (Kind::Null, 0..0),
                    Value::Bool(b) => (Kind::Bool(b), 0..0),
                    Value::Number(n) => (Kind::Number, push(&mut self.text, n)),
                    Value::String(s) => {
                        let json = matches!(column.type_name, "json" | "jsonb") && !s.is_empty();
                        let kind = if json { Kind::Json } else { Kind::String };
                        (kind, push(&mut self.text, s))
                    }
                };
                let col = Col {
                    name,
                    value,
                    kind,
                    orig: orig as u32,
                };
                match image {
                    Image::New => self.new.push(col),
                    Image::Old => self.old.push(col),
                }
            }
        }
    }

    /// Forget the change (calls outside `walcast_filter` get `NO_CHANGE`).
    pub(crate) fn clear(&mut self) {
        self.op = None;
    }

    pub(crate) fn schema(&self) -> &str {
        self.slice(&self.schema)
    }

    pub(crate) fn table(&self) -> &str {
        self.slice(&self.table)
    }

    pub(crate) fn slice(&self, r: &Range<u32>) -> &str {
        self.text
            .get(r.start as usize..r.end as usize)
            .unwrap_or_default()
    }

    pub(crate) fn cols(&self, image: Image) -> &[Col] {
        match image {
            Image::New => &self.new,
            Image::Old => &self.old,
        }
    }

    /// Index of the column named `name` in `image`.
    pub(crate) fn find(&self, image: Image, name: &[u8]) -> Option<usize> {
        self.cols(image)
            .iter()
            .position(|c| self.slice(&c.name).as_bytes() == name)
    }

    pub(crate) fn handle(image: Image, index: usize) -> i32 {
        let index = index as i32;
        match image {
            Image::New => index,
            Image::Old => index | OLD_BIT,
        }
    }

    /// The column a handle designates, if valid for this change.
    pub(crate) fn resolve(&self, handle: i32) -> Option<&Col> {
        if handle < 0 {
            return None;
        }
        let image = if handle & OLD_BIT != 0 {
            Image::Old
        } else {
            Image::New
        };
        self.cols(image).get((handle & !OLD_BIT) as usize)
    }

    /// Text of a value for `field_str` / `field_eq_str`: strings and JSON as they are, numbers as
    /// printed, booleans as `true`/`false`; `None` for null.
    pub(crate) fn text_of(&self, col: &Col) -> Option<&str> {
        match col.kind {
            Kind::Null => None,
            Kind::Bool(true) => Some("true"),
            Kind::Bool(false) => Some("false"),
            Kind::Number | Kind::String | Kind::Json => Some(self.slice(&col.value)),
        }
    }

    /// Append the value as JSON text (as a change frame carries it).
    pub(crate) fn put_raw(&self, out: &mut String, col: &Col) {
        match col.kind {
            Kind::Null => out.push_str("null"),
            Kind::Bool(true) => out.push_str("true"),
            Kind::Bool(false) => out.push_str("false"),
            Kind::Number | Kind::Json => out.push_str(self.slice(&col.value)),
            Kind::String => crate::decode::put_str(out, self.slice(&col.value)),
        }
    }
}

/// `Image` from the ABI's image argument.
pub(crate) fn image_of(image: i32) -> Option<Image> {
    match image {
        0 => Some(Image::New),
        1 => Some(Image::Old),
        _ => None,
    }
}

fn push(text: &mut String, s: &str) -> Range<u32> {
    // Payloads are below 4 GiB (the decoder refuses larger), so offsets fit in u32.
    let start = text.len() as u32;
    text.push_str(s);
    start..text.len() as u32
}
