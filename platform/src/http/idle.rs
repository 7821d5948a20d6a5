//! Gives the allocator's freed memory back to the system when the server falls idle.
//!
//! The allocator keeps pages freed by a request for a second before it returns them, so that
//! the next request reuses them instead of faulting fresh ones in (see `tessera_alloc`). Once
//! the last request in flight has finished, that memory only inflates the server's footprint,
//! so it is released then: at most once per `GAP`, and always after the last request of a burst.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

/// The least time between two releases: a client sending one request after another makes the
/// server idle between them, and releasing after each would fault the same pages in again.
const GAP: Duration = Duration::from_millis(100);

/// Counts requests in flight and releases memory when the count falls to zero.
pub struct IdleRelease {
    in_flight: AtomicUsize,
    /// A release is waiting for the end of the gap.
    pending: AtomicBool,
    /// Milliseconds after `started` of the last release (`u64::MAX`: none yet).
    last: AtomicU64,
    started: Instant,
    release: fn(),
}

impl IdleRelease {
    /// `release` hands the memory back (`tessera_alloc::release`); it runs on the blocking pool.
    pub fn new(release: fn()) -> Arc<IdleRelease> {
        Arc::new(IdleRelease {
            in_flight: AtomicUsize::new(0),
            pending: AtomicBool::new(false),
            last: AtomicU64::new(u64::MAX),
            started: Instant::now(),
            release,
        })
    }

    /// Marks a request in flight until the returned guard drops.
    pub fn enter(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    fn leave(self: &Arc<Self>) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) != 1 || self.pending.swap(true, Ordering::AcqRel) {
            return;
        }
        // Dropped outside a runtime (at shutdown) there is nothing left to release for.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.pending.store(false, Ordering::Release);
            return;
        };
        let me = self.clone();
        runtime.spawn(async move {
            let wait = match me.last.load(Ordering::Acquire) {
                u64::MAX => Duration::ZERO,
                last => GAP.saturating_sub(me.started.elapsed().saturating_sub(Duration::from_millis(last))),
            };
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            me.pending.store(false, Ordering::Release);
            // A request that arrived meanwhile releases when it ends.
            if me.in_flight.load(Ordering::Acquire) == 0 {
                let now = u64::try_from(me.started.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
                me.last.store(now, Ordering::Release);
                let _ = tokio::task::spawn_blocking(me.release).await;
            }
        });
    }
}

/// A request in flight (`IdleRelease::enter`).
pub struct Busy(Arc<IdleRelease>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.leave();
    }
}

/// The middleware: every request counts as in flight until its response is made.
pub async fn track(State(idle): State<Arc<IdleRelease>>, request: Request, next: Next) -> Response {
    let _busy = idle.enter();
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// When each release ran.
    static RELEASES: Mutex<Vec<Instant>> = Mutex::new(Vec::new());

    fn record() {
        RELEASES.lock().unwrap().push(Instant::now());
    }

    fn releases() -> Vec<Instant> {
        RELEASES.lock().unwrap().clone()
    }

    /// Waits (up to five seconds) until `n` releases have run.
    async fn until_released(n: usize) {
        for _ in 0..500 {
            if releases().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn releases_once_the_last_request_ends_and_at_most_once_per_gap() {
        let idle = IdleRelease::new(record);
        let (a, b) = (idle.enter(), idle.enter());
        drop(a);
        tokio::time::sleep(GAP * 3).await;
        assert!(releases().is_empty(), "a request is still in flight");
        drop(b);
        until_released(1).await;
        assert_eq!(releases().len(), 1, "the last request ended");
        // Requests one after another, each leaving the server idle: the idle moments within
        // the gap after the first release share one release, at the gap's end.
        for _ in 0..50 {
            drop(idle.enter());
            tokio::task::yield_now().await;
        }
        until_released(2).await;
        tokio::time::sleep(GAP * 3).await;
        let at = releases();
        assert_eq!(at.len(), 2, "one release for the fifty idle moments");
        // The gap runs from when the first release started, a little before it was recorded.
        assert!(at[1] - at[0] >= GAP / 2, "released again {:?} after the last release", at[1] - at[0]);
    }
}
