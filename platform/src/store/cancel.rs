//! Stopping a request's SQLite statements when the request ends unfinished (its timeout, or a
//! client gone). Dropping a request's future does not stop the statement an SQLite worker thread
//! is running, which would keep its connection busy (and, after a few such requests, every
//! reader) until the statement ends by itself. So each connection, when a task takes it from a
//! pool, is given a progress handler that interrupts its statements once that task's request
//! is abandoned; a task outside any request gets the handler removed. (PostgreSQL cancels
//! statements itself, after `statement_timeout`.)

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sea_orm::sqlx;
use sea_orm::sqlx::sqlite::SqliteConnection;

tokio::task_local! {
    static ABANDONED: Arc<AtomicBool>;
}

/// SQLite virtual machine instructions between two looks at the request's flag. SQLite looks
/// only at loop jumps, once per row or so, and one row can be slow (a `like` over a long text):
/// so the check is frequent, and cheap (one atomic load).
const CHECK_EVERY_OPS: i32 = 32;

/// Marks the request abandoned when its future is dropped before it finished.
struct AbandonOnDrop {
    flag: Arc<AtomicBool>,
    finished: bool,
}

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        if !self.finished {
            self.flag.store(true, Ordering::Relaxed);
        }
    }
}

/// Runs a request's `work` so that, if its future is dropped before it finishes (a timeout, a
/// client gone), the SQLite statements it started are interrupted at once.
pub async fn interruptible<F: Future>(work: F) -> F::Output {
    let mut guard = AbandonOnDrop { flag: Arc::new(AtomicBool::new(false)), finished: false };
    let output = ABANDONED.scope(guard.flag.clone(), work).await;
    guard.finished = true;
    output
}

/// Binds a connection to the request of the task taking it from its pool, or to none.
pub(super) async fn bind(connection: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    let flag = ABANDONED.try_with(Arc::clone).ok();
    let mut handle = connection.lock_handle().await?;
    match flag {
        Some(flag) => handle.set_progress_handler(CHECK_EVERY_OPS, move || !flag.load(Ordering::Relaxed)),
        None => handle.remove_progress_handler(),
    }
    Ok(())
}
