//! The WebSocket close codes walcast sends, and the standard reason each close frame carries when
//! whoever closed the socket gave none. One table for `/ws` and `/listen` sockets; documented with
//! the error codes in the reference. Decides no close: the hub, the relay, the named store, the
//! session loop and its timeouts do, each giving a code from here.

/// The server is shutting down.
pub const GOING_AWAY: u16 = 1001;
/// The server failed under the session: the journal or the named subscriptions' store cannot be
/// used (`/ws`).
pub const INTERNAL_ERROR: u16 = 1011;
/// Postgres refused LISTEN on the socket's channel after a reconnect (`/listen`); the same code as
/// `INTERNAL_ERROR`, with Postgres's message as the reason.
pub const LISTEN_REFUSED: u16 = 1011;
/// The socket's token expired and no fresh one came (`{"type":"access_token"}`).
pub const TOKEN_EXPIRED: u16 = 4001;
/// The session fell so far behind that journal retention (or, on `/listen`, its queue of
/// notifications) overtook it, or its writes made no progress for `sessions.write_timeout`:
/// the client did not read fast enough.
pub const SLOW_CONSUMER: u16 = 4008;
/// Nothing (no pong, no message) came from the client for `sessions.idle_timeout`.
pub const IDLE_TIMEOUT: u16 = 4009;
/// The subscription's filter plugin failed repeatedly.
pub const PLUGIN_FAILING: u16 = 4010;
/// The subscription ended for good: its named subscription was deleted through the admin API
/// (`subscription_deleted`), or a schema event left its request unbound (`schema_changed`, the
/// reason starting `schema changed:`).
pub const SUBSCRIPTION_ENDED: u16 = 4011;

/// The reason a close frame carries: the one given with the close (the failing plugin and its
/// cause for 4010, Postgres's refusal for a LISTEN), else the code's standard text (empty for a
/// code that has none).
pub fn reason(code: u16, given: Option<&str>) -> String {
    if let Some(reason) = given {
        return reason.to_owned();
    }
    let standard = match code {
        SLOW_CONSUMER => "slow consumer: fell behind the journal's retention",
        GOING_AWAY => "server shutting down",
        PLUGIN_FAILING => "filter plugin failing",
        TOKEN_EXPIRED => "token expired",
        SUBSCRIPTION_ENDED => "subscription ended",
        _ => "",
    };
    standard.to_owned()
}

/// The most bytes a close frame's reason may hold (a control frame carries at most 125 bytes,
/// two of them the code).
pub const MAX_REASON_BYTES: usize = 123;

/// `reason` cut to fit a close frame: at most `MAX_REASON_BYTES`, at a character boundary, with
/// `...` where it was cut. (The whole text goes out in the error frame or the log before it.)
pub fn fit(reason: &str) -> String {
    if reason.len() <= MAX_REASON_BYTES {
        return reason.to_owned();
    }
    let mut end = MAX_REASON_BYTES - 3;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &reason[..end])
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_long_reason_is_cut_to_fit_a_close_frame() {
        let long = "schema changed: ".to_owned() + &"é".repeat(100);
        let fitted = super::fit(&long);
        assert!(fitted.len() <= super::MAX_REASON_BYTES, "{}", fitted.len());
        assert!(fitted.ends_with("...") && long.starts_with(&fitted[..fitted.len() - 3]));
        assert_eq!(super::fit("short"), "short");
    }

    use super::*;

    #[test]
    fn a_given_reason_wins_over_the_standard_one() {
        assert_eq!(reason(GOING_AWAY, None), "server shutting down");
        assert_eq!(
            reason(PLUGIN_FAILING, Some("plugin \"p\" trapped")),
            "plugin \"p\" trapped"
        );
        assert_eq!(reason(INTERNAL_ERROR, None), "");
    }
}
