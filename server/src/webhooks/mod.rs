//! Webhook endpoints: the journal's changes delivered to HTTP receivers, each endpoint at its own
//! pace from its own durable position, signed the Standard Webhooks way. These are its first
//! parts: signing and message ids (`sign`), the outbound client with its guard against private
//! addresses (`outbound`), when to retry or disable (`schedule`), and the body and headers of
//! pgstream's format (`pgstream`). It does not yet read the journal, keep endpoint state or serve
//! the admin API, and decides nothing about who receives a change (`hub` does).

mod outbound;
pub mod pgstream;
mod schedule;
mod sign;

pub use outbound::{
    check_url, classify, parse_retry_after, refused_range, Outbound, OutboundConfig, OutboundError,
    Outcome, UrlError,
};
pub use schedule::{
    next_delay, should_disable, FailureKind, DEFAULT_DISABLE_AFTER, RETRY_AFTER_CAP,
};
pub use sign::{
    headers, message_id, sign, Secret, SecretError, WEBHOOK_ID, WEBHOOK_SIGNATURE,
    WEBHOOK_TIMESTAMP,
};
