//! Entry points for the fuzz targets in `server/fuzz` (docs/development/fuzzing.md): thin public
//! wrappers around parsers that are private to their modules (client messages, the plugin `out_*`
//! builder), so those keep their visibility. The other fuzzed parsers (`filter::parse_request`,
//! `decode::Decoder`) are public already. Not an API: nothing but the fuzz targets calls these.

use std::sync::Arc;

use axum::extract::ws::Message;

use crate::decode::{Change, FrameEncoder, Image};
use crate::filter::wasm::output::{OutBuilder, OutValue};
use crate::filter::wasm::snapshot::ChangeCopy;
use crate::filter::wasm::visible::Visible;
use crate::vocab::Pos;
use crate::ws::client::{self, Control};

/// The longest subscription id a client may choose (`ws::client::MAX_ID`).
pub const CLIENT_MAX_ID: usize = client::MAX_ID;

/// What the session's reader makes of one client frame (`ws::client::Control`), as plain data.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientOutcome {
    Subscribe {
        id: String,
        params: Vec<(String, String)>,
    },
    Unsubscribe {
        id: String,
    },
    Ack {
        pos: Pos,
        id: Option<String>,
    },
    AccessToken {
        token: String,
    },
    /// The text of the error frame sent back.
    Reply(String),
}

/// `ws::client::parse` of one frame: a text frame when `bytes` is UTF-8, a binary one otherwise.
pub fn client_message(bytes: &[u8]) -> Option<ClientOutcome> {
    let msg = match std::str::from_utf8(bytes) {
        Ok(text) => Message::Text(text.into()),
        Err(_) => Message::Binary(bytes.to_vec().into()),
    };
    Some(match client::parse(&msg)? {
        Control::Subscribe { id, params } => ClientOutcome::Subscribe { id, params },
        Control::Unsubscribe { id } => ClientOutcome::Unsubscribe { id },
        Control::Ack { pos, id } => ClientOutcome::Ack { pos, id },
        Control::AccessToken { token } => ClientOutcome::AccessToken { token },
        Control::Reply(frame) => ClientOutcome::Reply(frame.as_str().to_owned()),
    })
}

/// `ws::client::tagged`: `frame` with `"id":<id>` after its `type`.
pub fn tag_frame(frame: &str, id: &str) -> String {
    client::tagged(&frame.to_owned().into(), id)
        .as_str()
        .to_owned()
}

/// The plugin host's `out_*` builder with the change copy it reads, driven as `linker` and
/// `PluginGroup::evaluate` drive it (after the guest memory and UTF-8 checks). Each edit returns
/// the ABI code the guest would get.
#[derive(Default)]
pub struct OutputBuilder {
    out: OutBuilder,
    copy: ChangeCopy,
    encoder: FrameEncoder,
}

impl OutputBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder whose change copy holds only the columns `names`, as the copy of a group
    /// attached under a policy rule with those `columns` does.
    pub fn seeing(names: &[String]) -> Self {
        let mut builder = Self::default();
        builder
            .copy
            .set_visible(Some(Arc::new(Visible::new(names))));
        builder
    }

    /// Start an evaluation of `change` (an I/U/D/T message): copy it, forget earlier edits.
    pub fn start(&mut self, change: &Change<'_>) {
        self.copy.fill(change);
        self.out.reset();
    }

    pub fn clear(&mut self, image: Image) -> i32 {
        self.out.clear(&self.copy, image)
    }

    pub fn copy(&mut self, image: Image, name: &str) -> i32 {
        self.out.copy(&self.copy, image, name)
    }

    pub fn remove(&mut self, image: Image, name: &str) -> i32 {
        self.out.remove(&self.copy, image, name)
    }

    pub fn set_null(&mut self, image: Image, name: &str) -> i32 {
        self.out.put(&self.copy, image, name, OutValue::Null)
    }

    pub fn set_bool(&mut self, image: Image, name: &str, v: bool) -> i32 {
        self.out.put(&self.copy, image, name, OutValue::Bool(v))
    }

    pub fn set_i64(&mut self, image: Image, name: &str, v: i64) -> i32 {
        self.out.put(&self.copy, image, name, OutValue::I64(v))
    }

    /// As `out_set_f64`: a value that is not finite is set as null.
    pub fn set_f64(&mut self, image: Image, name: &str, v: f64) -> i32 {
        let v = if v.is_finite() {
            OutValue::F64(v)
        } else {
            OutValue::Null
        };
        self.out.put(&self.copy, image, name, v)
    }

    pub fn set_str(&mut self, image: Image, name: &str, value: &str) -> i32 {
        self.out.set_str(&self.copy, image, name, value)
    }

    pub fn set_json(&mut self, image: Image, name: &str, value: &str) -> i32 {
        self.out.set_json(&self.copy, image, name, value)
    }

    /// The rewritten `change` frame (`change` is the one given to `start`).
    pub fn render(&mut self, change: &Change<'_>) -> String {
        self.out.render(&mut self.encoder, change, &self.copy)
    }

    /// The rewritten `format=wal2json-v1` frame.
    pub fn render_v1(&mut self, change: &Change<'_>) -> String {
        self.out.render_v1(&mut self.encoder, change, &self.copy)
    }
}
