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

#[cfg(test)]
mod tests {
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
