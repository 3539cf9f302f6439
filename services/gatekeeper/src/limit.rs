//! Per-key rate limiting (`governor`'s GCRA): a key over its rate gets 429 with Retry-After.

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sqlgate::{ApiError, ErrorCode};
use std::num::NonZeroU32;
use std::sync::Arc;

pub struct Limiter {
    /// Keyed by the key id the keys file's entry holds, so a check copies nothing.
    inner: Option<DefaultKeyedRateLimiter<Arc<str>>>,
}

impl Limiter {
    /// `rps` requests per second per key with bursts of `burst`; `rps = 0` disables limiting.
    pub fn new(rps: u32, burst: u32) -> Limiter {
        let inner = NonZeroU32::new(rps).map(|rps| {
            let burst = NonZeroU32::new(burst).unwrap_or(rps);
            RateLimiter::keyed(Quota::per_second(rps).allow_burst(burst))
        });
        Limiter { inner }
    }

    pub fn check(&self, key_id: &Arc<str>) -> Result<(), ApiError> {
        match &self.inner {
            Some(l) if l.check_key(key_id).is_err() => Err(ApiError::new(
                ErrorCode::RateLimited,
                "rate limit exceeded for this key",
            )
            .with_retry_after(1)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refuse_per_key() {
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let l = Limiter::new(1, 3);
        for i in 0..3 {
            assert!(l.check(&a).is_ok(), "request {i} within the burst");
        }
        assert_eq!(l.check(&a).unwrap_err().code(), ErrorCode::RateLimited);
        assert!(l.check(&b).is_ok(), "another key has its own budget");
        assert!(Limiter::new(0, 0).check(&a).is_ok(), "0 disables");
    }
}
