//! Gives the allocator's freed memory back to the system when the server falls idle.
//!
//! The allocator keeps pages freed by a request for a second before it returns them, so that
//! the next request reuses them instead of faulting fresh ones in (see `tessera_alloc`). Once
//! the last request in flight has finished, that memory only inflates the server's footprint,
//! so it is released then: at most once per `GAP`, and always after the last request of a burst.
//!
//! Memory that is still in use but only as a cache (SQLite's page caches) goes back once no
//! request has come for `SETTLED`: a client sending one request after another leaves the
//! server idle for moments between them, and emptying the caches in those moments would only
//! make its next request read every page again.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

/// The least time between two releases: a client sending one request after another makes the
/// server idle between them, and releasing after each would fault the same pages in again.
const GAP: Duration = Duration::from_millis(100);

/// How long no request must have come before the caches are emptied (`IdleRelease::settled`).
pub const SETTLED: Duration = Duration::from_millis(500);

/// What runs once the server has settled, before the memory is released: empties caches.
pub type Settle = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Counts requests in flight and releases memory when the count falls to zero.
pub struct IdleRelease {
    in_flight: AtomicUsize,
    /// A release is waiting for the end of the gap.
    pending: AtomicBool,
    /// Milliseconds after `started` of the last release (`u64::MAX`: none yet).
    last: AtomicU64,
    started: Instant,
    release: fn(),
    /// Requests begun so far: tells a quiet spell from one that a request came and went in.
    begun: AtomicU64,
    /// A task is waiting for the server to settle.
    settling: AtomicBool,
    settled: Duration,
    settle: Settle,
}

impl IdleRelease {
    /// `release` hands the memory back (`tessera_alloc::release`); it runs on the blocking pool.
    /// Once no request has come for `settled`, `settle` runs and then `release` again, for what
    /// `settle` freed.
    pub fn new(release: fn(), settled: Duration, settle: Settle) -> Arc<IdleRelease> {
        Arc::new(IdleRelease {
            in_flight: AtomicUsize::new(0),
            pending: AtomicBool::new(false),
            last: AtomicU64::new(u64::MAX),
            started: Instant::now(),
            release,
            begun: AtomicU64::new(0),
            settling: AtomicBool::new(false),
            settled,
            settle,
        })
    }

    /// Marks a request in flight until the returned guard drops.
    pub fn enter(self: &Arc<Self>) -> Busy {
        self.begun.fetch_add(1, Ordering::AcqRel);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    fn leave(self: &Arc<Self>) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        // Dropped outside a runtime (at shutdown) there is nothing left to release for.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if !self.settling.swap(true, Ordering::AcqRel) {
            runtime.spawn(self.clone().settle_when_quiet());
        }
        if self.pending.swap(true, Ordering::AcqRel) {
            return;
        }
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

    /// Waits until no request has come for `settled`, then runs `settle` and `release`.
    async fn settle_when_quiet(self: Arc<Self>) {
        loop {
            let seen = self.begun.load(Ordering::Acquire);
            tokio::time::sleep(self.settled).await;
            let quiet = self.begun.load(Ordering::Acquire) == seen && self.in_flight.load(Ordering::Acquire) == 0;
            self.settling.store(false, Ordering::Release);
            if quiet {
                (self.settle)().await;
                let _ = tokio::task::spawn_blocking(self.release).await;
                return;
            }
            // A request came meanwhile. If one is still in flight, the last to end starts the
            // wait again; if all have ended, this task waits again, unless one of their ends
            // has already started its own.
            if self.in_flight.load(Ordering::Acquire) > 0 || self.settling.swap(true, Ordering::AcqRel) {
                return;
            }
        }
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

    /// Waits (up to five seconds) until `done` holds.
    async fn until(done: impl Fn() -> bool) {
        for _ in 0..500 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn nothing() -> Settle {
        Arc::new(|| Box::pin(async {}))
    }

    #[tokio::test]
    async fn releases_once_the_last_request_ends_and_at_most_once_per_gap() {
        let idle = IdleRelease::new(record, Duration::from_secs(3600), nothing());
        let (a, b) = (idle.enter(), idle.enter());
        drop(a);
        tokio::time::sleep(GAP * 3).await;
        assert!(releases().is_empty(), "a request is still in flight");
        drop(b);
        until(|| !releases().is_empty()).await;
        assert_eq!(releases().len(), 1, "the last request ended");
        // Requests one after another, each leaving the server idle: the idle moments within
        // the gap after the first release share one release, at the gap's end.
        for _ in 0..50 {
            drop(idle.enter());
            tokio::task::yield_now().await;
        }
        until(|| releases().len() >= 2).await;
        tokio::time::sleep(GAP * 3).await;
        let at = releases();
        assert_eq!(at.len(), 2, "one release for the fifty idle moments");
        // The gap runs from when the first release started, a little before it was recorded.
        assert!(at[1] - at[0] >= GAP / 2, "released again {:?} after the last release", at[1] - at[0]);
    }

    /// Times the server settled (this test's own counter).
    static SETTLED_TIMES: AtomicUsize = AtomicUsize::new(0);

    fn settled_times() -> usize {
        SETTLED_TIMES.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn settles_once_no_request_has_come_for_the_quiet_spell() {
        // A long spell, so that a test machine pausing this task between two requests below
        // would have to stall for half a second to settle the server early.
        let spell = Duration::from_millis(500);
        let settle: Settle = Arc::new(|| {
            Box::pin(async {
                SETTLED_TIMES.fetch_add(1, Ordering::SeqCst);
            })
        });
        let idle = IdleRelease::new(|| {}, spell, settle);
        let (a, b) = (idle.enter(), idle.enter());
        drop(a);
        tokio::time::sleep(spell * 2).await;
        assert_eq!(settled_times(), 0, "a request is still in flight");
        drop(b);
        until(|| settled_times() >= 1).await;
        assert_eq!(settled_times(), 1, "the last request ended");
        // Requests one after another, each leaving the server idle for a moment: it does not
        // settle while they come, and settles once after the last.
        for _ in 0..100 {
            drop(idle.enter());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(settled_times(), 1, "settled between requests a client sent one after another");
        until(|| settled_times() >= 2).await;
        tokio::time::sleep(spell * 2).await;
        assert_eq!(settled_times(), 2, "settled once after the last of them");
    }
}
