//! In-memory rate limits for one node.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use im_core::cluster::RateLimiter;
use im_core::ports::{Clock, StoreResult, SystemClock};
use parking_lot::Mutex;

/// Below this many keys, finished windows are not swept.
const MIN_SWEEP: usize = 1024;

#[derive(Debug)]
struct Window {
    window_ms: u64,
    index: u64,
    /// Hits counted in the window (refused ones are not).
    count: u32,
}

#[derive(Debug)]
struct State {
    windows: HashMap<String, Window>,
    /// Sweep finished windows when this many keys are held.
    sweep_at: usize,
}

/// A [`RateLimiter`] for one node: fixed windows (`now / window_ms`), like
/// [`crate::RedisRateLimiter`]. Keys whose window has ended are swept once
/// the map doubles since the last sweep, so it holds about the keys hit in
/// their current window.
pub struct MemoryRateLimiter {
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

impl fmt::Debug for MemoryRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryRateLimiter")
            .field("keys", &self.state.lock().windows.len())
            .finish()
    }
}

impl Default for MemoryRateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryRateLimiter {
    /// On the system clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// On `clock` (tests use a fake one).
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            state: Mutex::new(State {
                windows: HashMap::new(),
                sweep_at: MIN_SWEEP,
            }),
        }
    }

    /// How many keys are held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.state.lock().windows.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn hit_at(&self, key: &str, limit: u32, window_ms: u64, now_ms: u64) -> bool {
        let window_ms = window_ms.max(1);
        let index = now_ms / window_ms;
        let mut state = self.state.lock();
        if state.windows.len() >= state.sweep_at {
            state.windows.retain(|_, w| w.index >= now_ms / w.window_ms);
            state.sweep_at = (state.windows.len() * 2).max(MIN_SWEEP);
        }
        let w = state.windows.entry(key.to_owned()).or_insert(Window {
            window_ms,
            index,
            count: 0,
        });
        if w.window_ms != window_ms || w.index != index {
            *w = Window {
                window_ms,
                index,
                count: 0,
            };
        }
        if w.count >= limit {
            return false;
        }
        w.count += 1;
        true
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn hit(&self, key: &str, limit: u32, window_ms: u64) -> StoreResult<bool> {
        let now = u64::try_from(self.clock.now_ms()).unwrap_or(0);
        Ok(self.hit_at(key, limit, window_ms, now))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;

    struct FakeClock(AtomicI64);

    impl Clock for FakeClock {
        fn now_ms(&self) -> i64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    fn limiter(at: i64) -> (Arc<FakeClock>, MemoryRateLimiter) {
        let clock = Arc::new(FakeClock(AtomicI64::new(at)));
        let l = MemoryRateLimiter::with_clock(clock.clone());
        (clock, l)
    }

    #[tokio::test]
    async fn counts_within_a_fixed_window() {
        let (clock, l) = limiter(10_000);
        for _ in 0..3 {
            assert!(l.hit("k", 3, 1000).await.unwrap());
        }
        assert!(!l.hit("k", 3, 1000).await.unwrap());
        // Other keys have their own counters.
        assert!(l.hit("other", 3, 1000).await.unwrap());
        // Still the same window (10_000..11_000).
        clock.0.store(10_999, Ordering::SeqCst);
        assert!(!l.hit("k", 3, 1000).await.unwrap());
        // The next window starts afresh.
        clock.0.store(11_000, Ordering::SeqCst);
        for _ in 0..3 {
            assert!(l.hit("k", 3, 1000).await.unwrap());
        }
        assert!(!l.hit("k", 3, 1000).await.unwrap());
    }

    #[tokio::test]
    async fn zero_limit_refuses_and_zero_window_is_one_ms() {
        let (clock, l) = limiter(5);
        assert!(!l.hit("k", 0, 1000).await.unwrap());
        assert!(l.hit("z", 1, 0).await.unwrap());
        assert!(!l.hit("z", 1, 0).await.unwrap());
        clock.0.store(6, Ordering::SeqCst);
        assert!(l.hit("z", 1, 0).await.unwrap());
    }

    #[tokio::test]
    async fn finished_windows_are_swept() {
        let (clock, l) = limiter(0);
        for i in 0..MIN_SWEEP {
            assert!(l.hit(&format!("k{i}"), 1, 100).await.unwrap());
        }
        assert_eq!(l.len(), MIN_SWEEP);
        clock.0.store(100, Ordering::SeqCst);
        // The next hit sweeps the finished windows first.
        assert!(l.hit("fresh", 1, 100).await.unwrap());
        assert_eq!(l.len(), 1);
        // Keys in their current window are kept.
        for i in 0..MIN_SWEEP * 3 {
            assert!(l.hit(&format!("live{i}"), 1, 1_000_000).await.unwrap());
        }
        assert_eq!(l.len(), MIN_SWEEP * 3 + 1);
    }
}
