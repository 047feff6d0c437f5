//! What a client sends on its socket: JSON text frames, parsed by the session's reader task into
//! `Control` for the writer. Today that is `{"type":"ack","pos":"..."}`; anything else is answered
//! with a `bad_message` error frame and the socket stays open. Does not act on acks (the session
//! does, knowing what it sent) and does not write to the socket.

use axum::extract::ws::Message;
use serde::Deserialize;

use crate::hub::Frame;
use crate::journal::Pos;

/// What the reader task hands the writer.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Control {
    /// The client acknowledged every change up to this position.
    Ack(Pos),
    /// A frame to send back as it is (an error about the client's message).
    Reply(Frame),
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientMessage {
    Ack { pos: String },
}

/// The writer's answer to one client frame; `None` for frames that need none (pings, pongs).
pub(super) fn parse(msg: &Message) -> Option<Control> {
    let text = match msg {
        Message::Text(text) => text.as_str(),
        Message::Binary(_) => {
            return Some(error(
                "bad_message",
                "binary frames are not part of the protocol: send JSON text frames",
            ))
        }
        Message::Ping(_) | Message::Pong(_) | Message::Close(_) => return None,
    };
    match serde_json::from_str::<ClientMessage>(text) {
        Ok(ClientMessage::Ack { pos }) => match pos.parse() {
            Ok(pos) => Some(Control::Ack(pos)),
            Err(e) => Some(error("bad_ack", &e.to_string())),
        },
        Err(e) => Some(error(
            "bad_message",
            &format!(
                "cannot read this message ({e}); the client messages are \
                 {{\"type\":\"ack\",\"pos\":\"<pos>\"}}"
            ),
        )),
    }
}

/// `{"type":"error","error":code,"message":...}`.
pub(super) fn error(code: &str, message: &str) -> Control {
    let mut text = String::with_capacity(48 + message.len());
    text.push_str(r#"{"type":"error","error":"#);
    crate::decode::put_str(&mut text, code);
    text.push_str(r#","message":"#);
    crate::decode::put_str(&mut text, message);
    text.push('}');
    Control::Reply(Frame::from(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Lsn;

    fn reply(c: Option<Control>) -> serde_json::Value {
        match c {
            Some(Control::Reply(frame)) => serde_json::from_str(frame.as_str()).unwrap(),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn an_ack_carries_its_position() {
        let msg = Message::Text(r#"{"type":"ack","pos":"000000000152A058-00000003"}"#.into());
        assert_eq!(
            parse(&msg),
            Some(Control::Ack(Pos::new(Lsn(0x152A058), 3)))
        );
    }

    #[test]
    fn anything_else_gets_an_error_frame() {
        for (text, code) in [
            ("not json", "bad_message"),
            (r#"{"type":"hello"}"#, "bad_message"),
            (r#"{"pos":"000000000152A058-00000003"}"#, "bad_message"),
            (r#"{"type":"ack"}"#, "bad_message"),
            (r#"{"type":"ack","pos":7}"#, "bad_message"),
            (r#"{"type":"ack","pos":"0/1526A58"}"#, "bad_ack"),
            ("", "bad_message"),
        ] {
            let v = reply(parse(&Message::Text(text.into())));
            assert_eq!(v["type"], "error", "{text}");
            assert_eq!(v["error"], code, "{text}");
            assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
        let v = reply(parse(&Message::Binary(vec![1, 2].into())));
        assert_eq!(v["error"], "bad_message");
        assert_eq!(parse(&Message::Ping(vec![].into())), None);
    }
}
