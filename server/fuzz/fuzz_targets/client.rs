//! Client messages (`subscribe`, `unsubscribe`, `ack`, `access_token`): the session reader's
//! parser on the input as one WebSocket frame (text when UTF-8, binary otherwise), then the
//! request a `subscribe` becomes through `filter::parse_request`, as the session validates it.
//!
//! Checks: no panic; every frame gets an answer; an error frame is a JSON object of type `error`
//! with a known code, a message and the id as a string when it names one, and stays valid JSON
//! when tagged with an id; a `subscribe` keeps its id (1 to 128 bytes) and its query first; an
//! `unsubscribe` keeps its id and an `access_token` its token; an `ack` position prints back as the text given (hex case aside)
//! and parses back to itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use walcast::filter::parse_request;
use walcast::fuzzing::{client_message, tag_frame, ClientOutcome, CLIENT_MAX_ID};
use walcast::vocab::Pos;
use walcast_fuzz::{json, parse, show, J};

fuzz_target!(|data: &[u8]| {
    let outcome = client_message(data)
        .unwrap_or_else(|| panic!("no answer to a text or binary frame: {}", show(data)));
    // What a lenient reader sees in the message (the parser itself is stricter).
    let sent: Option<J> = std::str::from_utf8(data).ok().and_then(|t| parse(t).ok());
    let field = |key: &str| sent.as_ref().and_then(|v| v.text(key));
    match outcome {
        ClientOutcome::Reply(text) => {
            let v = json(&text, "error frame");
            assert_eq!(v.text("type"), Some("error"), "{text}");
            assert!(
                matches!(v.text("error"), Some("bad_message" | "bad_ack")),
                "{text}"
            );
            assert!(v.text("message").is_some_and(|m| !m.is_empty()), "{text}");
            match v.get("id") {
                Some(id) => assert!(id.str().is_some(), "{text}"),
                // The session tags frames that carry no id yet.
                None => {
                    let tagged = json(&tag_frame(&text, "fuzz\"id"), "tagged error frame");
                    assert_eq!(tagged.text("id"), Some("fuzz\"id"), "{text}");
                    assert_eq!(tagged.get("error"), v.get("error"), "{text}");
                }
            }
        }
        ClientOutcome::Subscribe { id, params } => {
            assert!((1..=CLIENT_MAX_ID).contains(&id.len()), "id {id:?}");
            assert_eq!(field("type"), Some("subscribe"), "input {}", show(data));
            assert_eq!(field("id"), Some(id.as_str()), "input {}", show(data));
            assert_eq!(params.first().map(|(k, _)| k.as_str()), Some("query"));
            assert_eq!(
                field("query"),
                Some(params[0].1.as_str()),
                "input {}",
                show(data)
            );
            if let Err(e) = parse_request(&params) {
                let _ = json(&e.json_body(), "error body");
            }
        }
        ClientOutcome::Unsubscribe { id } => {
            assert_eq!(field("type"), Some("unsubscribe"), "input {}", show(data));
            assert_eq!(field("id"), Some(id.as_str()), "input {}", show(data));
        }
        ClientOutcome::AccessToken { token } => {
            assert_eq!(field("type"), Some("access_token"), "input {}", show(data));
            assert_eq!(field("token"), Some(token.as_str()), "input {}", show(data));
        }
        ClientOutcome::Ack { pos, id } => {
            assert_eq!(field("type"), Some("ack"), "input {}", show(data));
            let text = pos.to_string();
            let given = field("pos").unwrap_or_else(|| panic!("ack without pos: {}", show(data)));
            assert!(text.eq_ignore_ascii_case(given), "{text} from {given:?}");
            assert_eq!(text.parse::<Pos>(), Ok(pos));
            assert_eq!(id.as_deref(), field("id"), "input {}", show(data));
        }
    }
});
