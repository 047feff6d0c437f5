//! What a client sends on its socket: JSON text frames, parsed by the session's reader task into
//! `Control` for the writer: `subscribe` (turned into the same parameter list as a `/ws` URL, so
//! both are validated by one path), `unsubscribe` and `ack`. Anything else is answered with a
//! `bad_message` error frame and the socket stays open. Does not validate subscriptions or act on
//! acks (the session does, knowing what it sent) and does not write to the socket.

use axum::extract::ws::Message;
use serde::Deserialize;
use serde_json::Value;

use crate::vocab::{Frame, Pos};

/// The longest subscription id a client may choose.
pub(crate) const MAX_ID: usize = 128;

/// What the reader task hands the writer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Control {
    /// Open a subscription: its id and its request as `/ws` query parameters.
    Subscribe {
        id: String,
        params: Vec<(String, String)>,
    },
    Unsubscribe {
        id: String,
    },
    /// The client acknowledged every change up to this position (of subscription `id`, or of the
    /// socket's only named subscription).
    Ack {
        pos: Pos,
        id: Option<String>,
    },
    /// A fresh token for the socket (`auth.mode = "jwt"`): checked, then it moves the socket's
    /// expiry.
    AccessToken {
        token: String,
    },
    /// A frame to send back as it is (an error about the client's message).
    Reply(Frame),
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientMessage {
    Subscribe {
        id: String,
        query: String,
        #[serde(default)]
        filter: Vec<String>,
        select: Option<String>,
        format: Option<String>,
        plugin: Option<String>,
        #[serde(default)]
        params: serde_json::Map<String, Value>,
        #[serde(default)]
        snapshot: bool,
        from: Option<String>,
        sub: Option<String>,
    },
    Unsubscribe {
        id: String,
    },
    Ack {
        pos: String,
        id: Option<String>,
    },
    AccessToken {
        token: String,
    },
}

const KNOWN: &str = r#"the client messages are {"type":"subscribe","id":..,"query":..}, {"type":"unsubscribe","id":..}, {"type":"ack","pos":..} and {"type":"access_token","token":..}"#;

/// The writer's answer to one client frame; `None` for frames that need none (pings, pongs).
pub(crate) fn parse(msg: &Message) -> Option<Control> {
    let text = match msg {
        Message::Text(text) => text.as_str(),
        Message::Binary(_) => {
            return Some(error(
                None,
                "bad_message",
                "binary frames are not part of the protocol: send JSON text frames",
            ))
        }
        Message::Ping(_) | Message::Pong(_) | Message::Close(_) => return None,
    };
    // serde would also read a struct from a JSON array (`["unsubscribe","a"]`): only an object
    // is a message.
    if !text
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('{')
    {
        return Some(error(
            None,
            "bad_message",
            &format!("a message is a JSON object; {KNOWN}"),
        ));
    }
    let parsed = match serde_json::from_str::<ClientMessage>(text) {
        Ok(parsed) => parsed,
        Err(e) => {
            // Say which subscription a broken message was about when that much can be read.
            let id = serde_json::from_str::<Value>(text)
                .ok()
                .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_owned));
            return Some(error(
                id.as_deref(),
                "bad_message",
                &format!("cannot read this message ({e}); {KNOWN}"),
            ));
        }
    };
    Some(match parsed {
        ClientMessage::Ack { pos, id } => match pos.parse() {
            Ok(pos) => Control::Ack { pos, id },
            Err(e) => error(id.as_deref(), "bad_ack", &e.to_string()),
        },
        ClientMessage::Unsubscribe { id } => Control::Unsubscribe { id },
        ClientMessage::AccessToken { token } => Control::AccessToken { token },
        ClientMessage::Subscribe {
            id,
            query,
            filter,
            select,
            format,
            plugin,
            params,
            snapshot,
            from,
            sub,
        } => {
            if id.is_empty() || id.len() > MAX_ID {
                return Some(error(
                    None,
                    "bad_message",
                    &format!("a subscription id is 1 to {MAX_ID} bytes"),
                ));
            }
            let mut list = vec![("query".to_owned(), query)];
            list.extend(filter.into_iter().map(|f| ("filter".to_owned(), f)));
            list.extend(select.map(|s| ("select".to_owned(), s)));
            list.extend(format.map(|f| ("format".to_owned(), f)));
            if !params.is_empty() && plugin.is_none() {
                return Some(error(
                    Some(&id),
                    "bad_message",
                    "params are the plugin's: give plugin too",
                ));
            }
            list.extend(plugin.map(|p| ("plugin".to_owned(), p)));
            for (key, value) in params {
                let value = match value {
                    Value::String(s) => s,
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    other => {
                        return Some(error(
                            Some(&id),
                            "bad_message",
                            &format!(
                                "plugin param {key:?} is {other}: give a string, number or boolean"
                            ),
                        ))
                    }
                };
                list.push((format!("plugin.{key}"), value));
            }
            if snapshot {
                list.push(("snapshot".to_owned(), "true".to_owned()));
            }
            list.extend(from.map(|f| ("from".to_owned(), f)));
            list.extend(sub.map(|s| ("sub".to_owned(), s)));
            Control::Subscribe { id, params: list }
        }
    })
}

/// `{"type":"error","id":..,"error":code,"message":...}` (`id` left out when there is none).
pub(super) fn error(id: Option<&str>, code: &str, message: &str) -> Control {
    Control::Reply(error_frame(id, code, message))
}

pub(super) fn error_frame(id: Option<&str>, code: &str, message: &str) -> Frame {
    let mut text = String::with_capacity(64 + message.len());
    text.push_str(r#"{"type":"error""#);
    if let Some(id) = id {
        text.push_str(r#","id":"#);
        crate::decode::put_str(&mut text, id);
    }
    text.push_str(r#","error":"#);
    crate::decode::put_str(&mut text, code);
    text.push_str(r#","message":"#);
    crate::decode::put_str(&mut text, message);
    text.push('}');
    Frame::from(text)
}

/// `frame` with `"id":<id>` after its `type` (every frame starts `{"type":"..."`), so that a
/// socket with several subscriptions can tell whose it is. One copy of the frame per
/// subscription that needs it; frames of the URL's single subscription are sent as they are.
pub(crate) fn tagged(frame: &Frame, id: &str) -> Frame {
    let text = frame.as_str();
    let at = text
        .strip_prefix(r#"{"type":""#)
        .and_then(|rest| rest.find('"'))
        .map_or(1, |end| r#"{"type":""#.len() + end + 1);
    let mut out = String::with_capacity(text.len() + id.len() + 8);
    out.push_str(&text[..at]);
    out.push_str(if at == 1 { r#""id":"# } else { r#","id":"# });
    crate::decode::put_str(&mut out, id);
    if at == 1 && text.len() > 2 {
        out.push(',');
    }
    out.push_str(&text[at..]);
    Frame::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::Lsn;

    fn reply(c: Option<Control>) -> Value {
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
            Some(Control::Ack {
                pos: Pos::new(Lsn(0x152A058), 3),
                id: None
            })
        );
    }

    #[test]
    fn only_a_json_object_is_a_message() {
        for text in [
            r#"["unsubscribe","a"]"#,
            "\n [\"ack\",\"000000000152A058-00000003\"]",
            "3",
        ] {
            let v = reply(parse(&Message::Text(text.into())));
            assert_eq!(v["error"], "bad_message", "{text}: {v}");
        }
        let ok = parse(&Message::Text(
            " \t{\"type\":\"unsubscribe\",\"id\":\"a\"}".into(),
        ));
        assert_eq!(ok, Some(Control::Unsubscribe { id: "a".into() }));
    }

    #[test]
    fn a_subscribe_becomes_the_url_parameters() {
        let msg = Message::Text(
            r#"{"type":"subscribe","id":"a","query":"insert:people:age.gt.30","filter":["name.eq.x"],
                "select":"id,name","plugin":"threshold","params":{"col":"age","min":30,"on":true},
                "snapshot":true,"from":"000000000152A058-00000003","sub":"view"}"#
                .into(),
        );
        let Some(Control::Subscribe { id, params }) = parse(&msg) else {
            panic!("a subscribe");
        };
        assert_eq!(id, "a");
        let pairs: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("query", "insert:people:age.gt.30"),
                ("filter", "name.eq.x"),
                ("select", "id,name"),
                ("plugin", "threshold"),
                ("plugin.col", "age"),
                ("plugin.min", "30"),
                ("plugin.on", "true"),
                ("snapshot", "true"),
                ("from", "000000000152A058-00000003"),
                ("sub", "view"),
            ]
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
            (r#"{"type":"subscribe","id":"a"}"#, "bad_message"),
            (
                r#"{"type":"subscribe","id":"","query":"*:t"}"#,
                "bad_message",
            ),
            (
                r#"{"type":"subscribe","id":"a","query":"*:t","params":{"x":1}}"#,
                "bad_message",
            ),
            (
                r#"{"type":"subscribe","id":"a","query":"*:t","plugin":"p","params":{"x":[1]}}"#,
                "bad_message",
            ),
            (r#"{"type":"unsubscribe"}"#, "bad_message"),
            ("", "bad_message"),
        ] {
            let v = reply(parse(&Message::Text(text.into())));
            assert_eq!(v["type"], "error", "{text}");
            assert_eq!(v["error"], code, "{text}");
            assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
        let v = reply(parse(&Message::Text(
            r#"{"type":"subscribe","id":"x7","query":5}"#.into(),
        )));
        assert_eq!(v["id"], "x7", "the id of a broken subscribe is named");
        let v = reply(parse(&Message::Binary(vec![1, 2].into())));
        assert_eq!(v["error"], "bad_message");
        assert_eq!(parse(&Message::Ping(vec![].into())), None);
    }

    #[test]
    fn tagging_puts_the_id_after_the_type() {
        let f = Frame::from(r#"{"type":"change","op":"insert"}"#.to_owned());
        assert_eq!(
            tagged(&f, "a\"b").as_str(),
            r#"{"type":"change","id":"a\"b","op":"insert"}"#
        );
        let odd = Frame::from(r#"{"x":1}"#.to_owned());
        assert_eq!(tagged(&odd, "a").as_str(), r#"{"id":"a","x":1}"#);
    }
}
