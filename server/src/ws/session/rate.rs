//! The client's message budget: `sessions.max_messages_per_second` a second, bursts of twice
//! that. Messages beyond it are dropped, and the client hears so from one `rate_limited` error
//! frame a second at most. Reads no socket (the reader task asks it about each message).

use std::sync::Arc;
use std::time::Duration;

use crate::metrics::Metrics;

use super::super::client::{self, Control};

/// The client's message budget: `max` per second, bursts of `2 * max`. Messages beyond it are
/// dropped; the client learns so from one `rate_limited` error frame per second at most.
pub(super) struct MessageRate {
    limiter: governor::DefaultDirectRateLimiter,
    max: u32,
    told: Option<std::time::Instant>,
    metrics: Arc<Metrics>,
}

impl MessageRate {
    pub(super) fn new(max: u32, metrics: Arc<Metrics>) -> MessageRate {
        let per_second = std::num::NonZeroU32::new(max.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
        let burst = per_second.saturating_mul(std::num::NonZeroU32::new(2).unwrap_or(per_second));
        MessageRate {
            limiter: governor::RateLimiter::direct(
                governor::Quota::per_second(per_second).allow_burst(burst),
            ),
            max,
            told: None,
            metrics,
        }
    }

    /// `Ok` when the message may be handled; otherwise the error frame to send, if one is due.
    pub(super) fn admit(&mut self) -> Result<(), Option<Control>> {
        if self.limiter.check().is_ok() {
            return Ok(());
        }
        self.metrics.limit_refused("rate_limited");
        if self
            .told
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return Err(None);
        }
        self.told = Some(std::time::Instant::now());
        Err(Some(client::error(
            None,
            "rate_limited",
            &format!(
                "more than {} messages per second (sessions.max_messages_per_second): messages \
                 are dropped until the rate falls",
                self.max
            ),
        )))
    }
}
