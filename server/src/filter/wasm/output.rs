//! The `out_*` builder: the guest's edits of the output row images, kept in store data, and their
//! rendering into a change frame with `FrameEncoder::change_with` (or a format-version-1 frame
//! with `FrameEncoder::v1_with`) after `PASS_REWRITTEN`. Does not
//! read guest memory (see `linker`).
//!
//! Rewrites are rendered from the change copy, never from the change itself: under a policy rule
//! the copy holds only the rule's columns (see `visible`), so an untouched image is rendered
//! projected, an original value is reached only through a column the copy holds, and a write
//! naming a hidden column is refused (`ABSENT`). A rewrite carries only the rule's columns.

use std::fmt::Write as _;
use std::ops::Range;

use super::abi::{ABSENT, BAD_JSON};
use super::snapshot::ChangeCopy;
use crate::decode::{
    put_column_value, put_column_value_v1, put_str, Change, FrameEncoder, Image, Part,
};

#[derive(Clone, Debug)]
enum Name {
    /// Name of the copied column at this index (of `ChangeCopy::cols`).
    Orig(usize),
    /// Range in the builder's text arena.
    Text(Range<u32>),
}

#[derive(Clone, Debug)]
pub(crate) enum OutValue {
    /// The value of the copied column at this index (of `ChangeCopy::cols`), rendered exactly as
    /// a normal frame would.
    Orig(usize),
    Null,
    Bool(bool),
    I64(i64),
    F64(f64),
    Str(Range<u32>),
    Json(Range<u32>),
}

#[derive(Clone, Debug)]
struct OutCol {
    name: Name,
    value: OutValue,
}

/// Edits of the two output images. `None` means "unchanged copy of the original image", so a
/// guest that touches nothing costs nothing.
#[derive(Default)]
pub(crate) struct OutBuilder {
    images: [Option<Vec<OutCol>>; 2],
    /// Reusable buffers for the two images once touched.
    spare: [Vec<OutCol>; 2],
    text: String,
}

fn slot(image: Image) -> usize {
    match image {
        Image::New => 0,
        Image::Old => 1,
    }
}

impl OutBuilder {
    /// Back to "copies of the change's images" (start of each `walcast_filter`).
    pub(crate) fn reset(&mut self) {
        for i in 0..2 {
            if let Some(mut v) = self.images[i].take() {
                v.clear();
                self.spare[i] = v;
            }
        }
        self.text.clear();
    }

    /// The image's edit list, materialised from the original columns on first touch.
    fn image(&mut self, change: &ChangeCopy, image: Image) -> &mut Vec<OutCol> {
        let i = slot(image);
        let spare = &mut self.spare[i];
        self.images[i].get_or_insert_with(|| {
            let mut v = std::mem::take(spare);
            v.clear();
            v.extend((0..change.cols(image).len()).map(|k| OutCol {
                name: Name::Orig(k),
                value: OutValue::Orig(k),
            }));
            v
        })
    }

    fn name_of<'s>(&'s self, change: &'s ChangeCopy, image: Image, name: &Name) -> &'s str {
        match name {
            Name::Orig(k) => change
                .cols(image)
                .get(*k)
                .map(|c| change.slice(&c.name))
                .unwrap_or(""),
            Name::Text(r) => self
                .text
                .get(r.start as usize..r.end as usize)
                .unwrap_or(""),
        }
    }

    fn position(&self, change: &ChangeCopy, image: Image, name: &str) -> Option<usize> {
        let cols = self.images[slot(image)].as_ref()?;
        cols.iter()
            .position(|c| self.name_of(change, image, &c.name) == name)
    }

    fn push_text(&mut self, s: &str) -> Range<u32> {
        let start = self.text.len() as u32;
        self.text.push_str(s);
        start..self.text.len() as u32
    }

    pub(crate) fn clear(&mut self, change: &ChangeCopy, image: Image) -> i32 {
        self.image(change, image).clear();
        0
    }

    pub(crate) fn remove(&mut self, change: &ChangeCopy, image: Image, name: &str) -> i32 {
        self.image(change, image);
        match self.position(change, image, name) {
            Some(at) => {
                self.image(change, image).remove(at);
                0
            }
            None => ABSENT,
        }
    }

    pub(crate) fn copy(&mut self, change: &ChangeCopy, image: Image, name: &str) -> i32 {
        match change.find(image, name.as_bytes()) {
            Some(k) => self.put(change, image, name, OutValue::Orig(k)),
            None => ABSENT,
        }
    }

    /// Set (or add at the end) column `name` of `image`; `ABSENT` when the guest may not see
    /// that column.
    pub(crate) fn put(
        &mut self,
        change: &ChangeCopy,
        image: Image,
        name: &str,
        value: OutValue,
    ) -> i32 {
        if !change.visible(name.as_bytes()) {
            return ABSENT;
        }
        self.image(change, image);
        match self.position(change, image, name) {
            Some(at) => self.image(change, image)[at].value = value,
            None => {
                let name = match change.find(image, name.as_bytes()) {
                    Some(k) => Name::Orig(k),
                    None => Name::Text(self.push_text(name)),
                };
                self.image(change, image).push(OutCol { name, value });
            }
        }
        0
    }

    pub(crate) fn set_str(
        &mut self,
        change: &ChangeCopy,
        image: Image,
        name: &str,
        s: &str,
    ) -> i32 {
        if !change.visible(name.as_bytes()) {
            return ABSENT;
        }
        let r = self.push_text(s);
        self.put(change, image, name, OutValue::Str(r))
    }

    pub(crate) fn set_json(
        &mut self,
        change: &ChangeCopy,
        image: Image,
        name: &str,
        s: &str,
    ) -> i32 {
        if !change.visible(name.as_bytes()) {
            return ABSENT;
        }
        if serde_json::from_str::<serde::de::IgnoredAny>(s).is_err() {
            return BAD_JSON;
        }
        let r = self.push_text(s.trim());
        self.put(change, image, name, OutValue::Json(r))
    }

    /// The complete rewritten change frame.
    pub(crate) fn render(
        &self,
        encoder: &mut FrameEncoder,
        change: &Change<'_>,
        copy: &ChangeCopy,
    ) -> String {
        encoder.change_with(change, &mut |image, b| match &self.images[slot(image)] {
            None => {
                b.push('{');
                for (k, col) in copy.cols(image).iter().enumerate() {
                    if k > 0 {
                        b.push(',');
                    }
                    put_str(b, copy.slice(&col.name));
                    b.push(':');
                    put_column_value(b, change, image, col.orig as usize);
                }
                b.push('}');
            }
            Some(cols) => {
                b.push('{');
                for (i, col) in cols.iter().enumerate() {
                    if i > 0 {
                        b.push(',');
                    }
                    put_str(b, self.name_of(copy, image, &col.name));
                    b.push(':');
                    self.put_value(b, change, copy, image, &col.value);
                }
                b.push('}');
            }
        })
    }

    /// The rewritten change as a `format=wal2json-v1` frame. A column the guest set gets the type
    /// its value has (`boolean`, `bigint`, `double precision`, `text`, `json`; `unknown` for
    /// null); an original column keeps its Postgres type.
    pub(crate) fn render_v1(
        &self,
        encoder: &mut FrameEncoder,
        change: &Change<'_>,
        copy: &ChangeCopy,
    ) -> String {
        encoder.v1_with(
            change,
            &mut |image, part, b| match &self.images[slot(image)] {
                None => {
                    for (k, col) in copy.cols(image).iter().enumerate() {
                        if k > 0 {
                            b.push(',');
                        }
                        match part {
                            Part::Names => put_str(b, copy.slice(&col.name)),
                            Part::Types => put_str(b, type_at(change, image, col.orig as usize)),
                            Part::Values => {
                                put_column_value_v1(b, change, image, col.orig as usize)
                            }
                        }
                    }
                }
                Some(cols) => {
                    for (i, col) in cols.iter().enumerate() {
                        if i > 0 {
                            b.push(',');
                        }
                        match part {
                            Part::Names => put_str(b, self.name_of(copy, image, &col.name)),
                            Part::Types => put_str(b, type_of(change, copy, image, &col.value)),
                            Part::Values => self.put_value_v1(b, change, copy, image, &col.value),
                        }
                    }
                }
            },
        )
    }

    /// A value as format-version 1 writes it: JSON text set by the guest stays a string.
    fn put_value_v1(
        &self,
        b: &mut String,
        change: &Change<'_>,
        copy: &ChangeCopy,
        image: Image,
        v: &OutValue,
    ) {
        match v {
            OutValue::Orig(k) => put_column_value_v1(b, change, image, orig(copy, image, *k)),
            OutValue::Json(r) => put_str(
                b,
                self.text
                    .get(r.start as usize..r.end as usize)
                    .unwrap_or(""),
            ),
            other => self.put_value(b, change, copy, image, other),
        }
    }

    fn put_value(
        &self,
        b: &mut String,
        change: &Change<'_>,
        copy: &ChangeCopy,
        image: Image,
        v: &OutValue,
    ) {
        let text = |r: &Range<u32>| {
            self.text
                .get(r.start as usize..r.end as usize)
                .unwrap_or("")
        };
        match v {
            OutValue::Orig(k) => put_column_value(b, change, image, orig(copy, image, *k)),
            OutValue::Null => b.push_str("null"),
            OutValue::Bool(true) => b.push_str("true"),
            OutValue::Bool(false) => b.push_str("false"),
            OutValue::I64(n) => b.push_str(itoa::Buffer::new().format(*n)),
            // Display of a finite f64 is the shortest text that round-trips and is valid JSON.
            OutValue::F64(x) if x.is_finite() => {
                let _ = write!(b, "{x}");
            }
            OutValue::F64(_) => b.push_str("null"),
            OutValue::Str(r) => put_str(b, text(r)),
            OutValue::Json(r) => b.push_str(text(r)),
        }
    }
}

/// The index in the change of the copied column `k`. Every `Orig(k)` comes from the copy the
/// edits were made on, so `k` is in range; were it not, `usize::MAX` renders as null, never as
/// another column.
fn orig(copy: &ChangeCopy, image: Image, k: usize) -> usize {
    copy.cols(image)
        .get(k)
        .map_or(usize::MAX, |c| c.orig as usize)
}

/// The Postgres type name of column `index` of the change's `image`.
fn type_at<'a>(change: &Change<'a>, image: Image, index: usize) -> &'a str {
    change.column_at(image, index).map_or("", |c| c.type_name)
}

/// The type name a format-version-1 frame gives a column of a rewritten image.
fn type_of<'a>(change: &Change<'a>, copy: &ChangeCopy, image: Image, v: &OutValue) -> &'a str {
    match v {
        OutValue::Orig(k) => type_at(change, image, orig(copy, image, *k)),
        OutValue::Null => "unknown",
        OutValue::Bool(_) => "boolean",
        OutValue::I64(_) => "bigint",
        OutValue::F64(_) => "double precision",
        OutValue::Str(_) => "text",
        OutValue::Json(_) => "json",
    }
}
