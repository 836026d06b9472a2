//! Rate limits: keyed token buckets (GCRA, from `governor`) per user and
//! per client IP address.
//!
//! * Per user: every authenticated request of a session except heartbeats,
//!   delivery ACKs and typing (sends and v2 sync requests get no reply, so
//!   the client resends them; other requests get ERR_SEND_TOO_FAST on their
//!   response command: `session::answer_transient`), and every
//!   authenticated HTTP call (429).
//! * Per IP: new WebSocket/TCP connections and the unauthenticated HTTP
//!   account calls (register, login, refresh), so neither a connection
//!   flood nor a password-guessing loop from one address gets far.
//!
//! Limits are counted by each node for the traffic it serves (no round trip
//! to Redis per request); a user connected to two nodes can send at up to
//! twice the rate. Idle keys are dropped by [`Limits::purge`].

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use im_core::UserId;

/// A sustained rate with a burst allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests per second, sustained.
    pub per_second: u32,
    /// Requests allowed at once after a quiet period.
    pub burst: u32,
}

impl Rate {
    fn quota(self) -> Option<Quota> {
        let per_second = NonZeroU32::new(self.per_second)?;
        let burst = NonZeroU32::new(self.burst.max(1))?;
        Some(Quota::per_second(per_second).allow_burst(burst))
    }
}

/// Which limits apply; `None` switches one off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitsConfig {
    pub per_user: Option<Rate>,
    pub per_ip: Option<Rate>,
}

/// The limiters of one node. Cheap to share (`Arc` inside).
#[derive(Clone, Default)]
pub struct Limits {
    users: Option<Arc<DefaultKeyedRateLimiter<UserId>>>,
    ips: Option<Arc<DefaultKeyedRateLimiter<IpAddr>>>,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("per_user", &self.users.is_some())
            .field("per_ip", &self.ips.is_some())
            .finish()
    }
}

impl Limits {
    /// No limits at all (the default; what embedding code gets unless it
    /// asks for limits).
    pub fn unlimited() -> Self {
        Self::default()
    }

    /// The limiters `cfg` asks for. A rate of 0 per second means "off".
    pub fn new(cfg: LimitsConfig) -> Self {
        Self {
            users: keyed(cfg.per_user),
            ips: keyed(cfg.per_ip),
        }
    }

    /// Counts one request of `user`; false when it is over its rate.
    pub fn user(&self, user: &UserId) -> bool {
        self.users
            .as_ref()
            .is_none_or(|l| l.check_key(user).is_ok())
    }

    /// Counts one connection or account call from `ip`; false when over.
    pub fn ip(&self, ip: IpAddr) -> bool {
        self.ips.as_ref().is_none_or(|l| l.check_key(&ip).is_ok())
    }

    /// Forgets keys whose bucket is full again (they would pass anyway), so
    /// memory follows the active users and addresses. Call periodically.
    pub fn purge(&self) {
        if let Some(l) = &self.users {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.ips {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }

    /// Keys currently tracked (users + addresses).
    pub fn tracked(&self) -> usize {
        self.users.as_ref().map_or(0, |l| l.len()) + self.ips.as_ref().map_or(0, |l| l.len())
    }
}

fn keyed<K>(rate: Option<Rate>) -> Option<Arc<DefaultKeyedRateLimiter<K>>>
where
    K: Clone + Eq + std::hash::Hash,
{
    rate.and_then(Rate::quota)
        .map(|q| Arc::new(RateLimiter::keyed(q)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    #[test]
    fn a_user_gets_its_burst_then_is_refused_and_others_are_not_affected() {
        let limits = Limits::new(LimitsConfig {
            per_user: Some(Rate {
                per_second: 1,
                burst: 5,
            }),
            per_ip: None,
        });
        let alice = user("alice");
        let passed = (0..20).filter(|_| limits.user(&alice)).count();
        assert_eq!(passed, 5);
        assert!(limits.user(&user("bob")));
        // No IP limit configured.
        assert!((0..1000).all(|_| limits.ip(IpAddr::from([10, 0, 0, 1]))));
    }

    #[test]
    fn per_ip_limit_counts_addresses_separately() {
        let limits = Limits::new(LimitsConfig {
            per_user: None,
            per_ip: Some(Rate {
                per_second: 1,
                burst: 3,
            }),
        });
        let a = IpAddr::from([192, 0, 2, 1]);
        assert_eq!((0..10).filter(|_| limits.ip(a)).count(), 3);
        assert!(limits.ip(IpAddr::from([192, 0, 2, 2])));
        assert!((0..1000).all(|_| limits.user(&user("carol"))));
        assert_eq!(limits.tracked(), 2);
    }

    #[test]
    fn unlimited_and_zero_rates_never_refuse() {
        for limits in [
            Limits::unlimited(),
            Limits::new(LimitsConfig {
                per_user: Some(Rate {
                    per_second: 0,
                    burst: 1,
                }),
                per_ip: Some(Rate {
                    per_second: 0,
                    burst: 1,
                }),
            }),
        ] {
            assert!((0..1000).all(|_| limits.user(&user("dave"))));
            assert!((0..1000).all(|_| limits.ip(IpAddr::from([127, 0, 0, 1]))));
            limits.purge();
            assert_eq!(limits.tracked(), 0);
        }
    }
}
