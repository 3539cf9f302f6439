//! Per-key rate limiting (`governor`'s GCRA): a key over its rate gets 429 with Retry-After.

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sqlgate::{ApiError, ErrorCode};
use std::num::NonZeroU32;

pub struct Limiter {
    inner: Option<DefaultKeyedRateLimiter<String>>,
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

    pub fn check(&self, key_id: &str) -> Result<(), ApiError> {
        match &self.inner {
            Some(l) if l.check_key(&key_id.to_string()).is_err() => Err(ApiError::new(
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
        let l = Limiter::new(1, 3);
        for i in 0..3 {
            assert!(l.check("a").is_ok(), "request {i} within the burst");
        }
        assert_eq!(l.check("a").unwrap_err().code(), ErrorCode::RateLimited);
        assert!(l.check("b").is_ok(), "another key has its own budget");
        assert!(Limiter::new(0, 0).check("a").is_ok(), "0 disables");
    }
}
