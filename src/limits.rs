//! Limits that protect the coordinator from callers that send too much: the transport's (the
//! largest message decoded, the metadata a request may carry, the streams one connection may
//! open at once), and a per-caller rate limit — a token bucket per client address — answered
//! with `RESOURCE_EXHAUSTED` and a `retry-after-ms` hint. A refused request changes nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::{Request, Status};

/// Response metadata on a refused request: how long to wait before the next, in ms.
pub use crate::proto::RETRY_AFTER_METADATA as RETRY_AFTER;

/// Above this many callers remembered, those whose buckets have refilled are forgotten.
const REMEMBERED: usize = 4096;

/// What the coordinator's gRPC port accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest request decoded, in bytes.
    pub max_message_bytes: usize,
    /// The most metadata (HTTP/2 headers) one request may carry, in bytes.
    pub max_metadata_bytes: u32,
    /// The most requests one connection may have open at once.
    pub max_streams_per_connection: u32,
    /// Requests per second per caller; none for unlimited.
    pub rate: Option<Rate>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 4 << 20,
            max_metadata_bytes: 16 << 10,
            max_streams_per_connection: 1024,
            rate: None,
        }
    }
}

/// A token bucket's size: `per_second` tokens a second, at most `burst` saved up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// One token bucket per caller address.
pub struct RateLimiter {
    rate: Rate,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl RateLimiter {
    pub fn new(rate: Rate) -> Self {
        RateLimiter {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn refilled(&self, bucket: Bucket, now: Instant) -> f64 {
        let earned =
            now.saturating_duration_since(bucket.at).as_secs_f64() * self.rate.per_second as f64;
        (bucket.tokens + earned).min(self.rate.burst as f64)
    }

    /// Takes a token from `caller`'s bucket at `now`; without one, how long until there is.
    pub fn admit(&self, caller: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().expect("lock");
        if buckets.len() > REMEMBERED {
            let full = self.rate.burst as f64;
            buckets.retain(|_, bucket| self.refilled(*bucket, now) < full);
        }
        let full = Bucket {
            tokens: self.rate.burst as f64,
            at: now,
        };
        let bucket = buckets.entry(caller).or_insert(full);
        let tokens = self.refilled(*bucket, now);
        if tokens < 1.0 {
            let missing = (1.0 - tokens) / self.rate.per_second as f64;
            return Err(Duration::from_secs_f64(missing));
        }
        *bucket = Bucket {
            tokens: tokens - 1.0,
            at: now,
        };
        Ok(())
    }

    /// A gRPC interceptor applying the limit to each request by the address it came from.
    pub fn interceptor(
        self: Arc<Self>,
    ) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
        move |request: Request<()>| {
            let Some(caller) = request.remote_addr().map(|addr| addr.ip()) else {
                return Ok(request);
            };
            match self.admit(caller, Instant::now()) {
                Ok(()) => Ok(request),
                Err(wait) => Err(self.refusal(caller, wait)),
            }
        }
    }

    fn refusal(&self, caller: IpAddr, wait: Duration) -> Status {
        metrics::counter!(crate::metrics::REJECTED, "reason" => "rate_limited").increment(1);
        let status = Status::resource_exhausted(format!(
            "{caller} sent more than {} requests a second (burst {}), the --rate-limit of this \
             coordinator; retry after {} ms",
            self.rate.per_second,
            self.rate.burst,
            wait.as_millis().max(1)
        ));
        retry_after(status, wait)
    }
}

/// `status` with the hint of how long to wait before trying again ([`RETRY_AFTER`]).
pub fn retry_after(mut status: Status, wait: Duration) -> Status {
    if let Ok(value) = wait.as_millis().max(1).to_string().parse() {
        status.metadata_mut().insert(RETRY_AFTER, value);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALLER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 7));
    const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 8));

    fn limiter() -> RateLimiter {
        RateLimiter::new(Rate {
            per_second: 10,
            burst: 3,
        })
    }

    #[test]
    fn a_burst_is_admitted_then_the_caller_waits_for_the_refill() {
        let limiter = limiter();
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.admit(CALLER, start), Ok(()));
        }
        let wait = limiter.admit(CALLER, start).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100));
        assert!(limiter
            .admit(CALLER, start + Duration::from_millis(99))
            .is_err());
        assert_eq!(
            limiter.admit(CALLER, start + Duration::from_millis(100)),
            Ok(())
        );
    }

    #[test]
    fn each_caller_has_a_bucket_of_its_own() {
        let limiter = limiter();
        let now = Instant::now();
        for _ in 0..3 {
            limiter.admit(CALLER, now).unwrap();
        }
        assert!(limiter.admit(CALLER, now).is_err());
        assert_eq!(limiter.admit(OTHER, now), Ok(()));
    }

    #[test]
    fn an_idle_caller_saves_up_no_more_than_the_burst() {
        let limiter = limiter();
        let start = Instant::now();
        limiter.admit(CALLER, start).unwrap();
        let later = start + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(limiter.admit(CALLER, later), Ok(()));
        }
        assert!(limiter.admit(CALLER, later).is_err());
    }
}
