//! Password hashing, and the bounded pool in which sign-ins check passwords: each check holds
//! Argon2's whole memory, so the number at once is what bounds a login flood's memory.

use std::sync::mpsc;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{Output, ParamsString, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::AuthError;

/// Argon2id with 7 MiB and 5 passes: one of OWASP's equivalent recommended settings, chosen
/// over 19 MiB × 2 because each concurrent login holds that memory, and a server that must run
/// in 100 MB should not spend a fifth of it on two sign-ins.
fn params() -> Result<argon2::Params, AuthError> {
    argon2::Params::new(7 * 1024, 5, 1, None).map_err(|_| AuthError::Internal)
}

fn hasher() -> Result<Argon2<'static>, AuthError> {
    Ok(Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params()?))
}

/// Hashes a password off the async runtime (it takes tens of milliseconds by design).
pub async fn hash_password_async(password: String) -> Result<String, AuthError> {
    tokio::task::spawn_blocking(move || hash_password(&password)).await.map_err(|_| AuthError::Internal)?
}

pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    let salt = SaltString::encode_b64(&bytes).map_err(|_| AuthError::Internal)?;
    hasher()?.hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|_| AuthError::Internal)
}

/// Verifies with the parameters stored in the hash.
fn matches(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// A hash with this server's parameters that no password is known to match: checking a
/// password against it costs what checking a real account's does, so that sign-ins for
/// unknown, inactive or locked accounts take as long as wrong passwords. Built rather than
/// computed (its output is zeros), so it costs nothing at start-up.
fn dummy_hash() -> Result<String, AuthError> {
    let salt = SaltString::encode_b64(b"tessera-no-user!").map_err(|_| AuthError::Internal)?;
    let params = params()?;
    let output = Output::new(&vec![0u8; params.output_len().unwrap_or(argon2::Params::DEFAULT_OUTPUT_LEN)])
        .map_err(|_| AuthError::Internal)?;
    let hash = PasswordHash {
        algorithm: argon2::Algorithm::Argon2id.ident(),
        version: Some(argon2::Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|_| AuthError::Internal)?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(hash.to_string())
}

/// The pool in which sign-ins check passwords: at most `permits` at once, each holding Argon2's
/// memory; a sign-in waits at most `queue_wait` for its turn. The checks run on as many threads
/// of their own: an allocator keeps what a thread frees for that thread's next use, so checks
/// spread over a growing set of blocking threads would leave 7 MiB resident on each of them.
pub(super) struct Verifier {
    permits: Arc<Semaphore>,
    checkers: Checkers,
    queue_wait: Duration,
    dummy: String,
    checks: AtomicU64,
}

/// A turn in the pool; held until the check ends, even if the request is dropped meanwhile.
pub(super) struct Turn {
    _permit: OwnedSemaphorePermit,
}

impl Verifier {
    pub(super) fn new(permits: usize, queue_wait: Duration) -> Result<Verifier, AuthError> {
        let permits = permits.clamp(1, Semaphore::MAX_PERMITS);
        Ok(Verifier {
            permits: Arc::new(Semaphore::new(permits)),
            checkers: Checkers::start(permits)?,
            queue_wait,
            dummy: dummy_hash()?,
            checks: AtomicU64::new(0),
        })
    }

    /// Waits for a turn, at most `queue_wait`.
    pub(super) async fn turn(&self) -> Result<Turn, AuthError> {
        let busy = AuthError::Busy { retry_after: self.queue_wait.max(Duration::from_secs(1)) };
        match tokio::time::timeout(self.queue_wait, self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Turn { _permit: permit }),
            // The semaphore is never closed.
            Ok(Err(_)) => Err(AuthError::Internal),
            Err(_) => Err(busy),
        }
    }

    /// Checks `password` against `hash`, or against the dummy hash when there is no account to
    /// check (the answer is then `false`). The turn moves into the check, so a dropped request
    /// cannot free its slot while its hash still runs.
    pub(super) async fn check(&self, turn: Turn, password: &str, hash: Option<&str>) -> bool {
        let real = hash.is_some();
        let hash = hash.unwrap_or(&self.dummy).to_string();
        let password = password.to_string();
        self.checks.fetch_add(1, Ordering::Relaxed);
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let ok = matches(&password, &hash);
            drop(turn);
            let _ = answer.send(ok);
        });
        if self.checkers.jobs.send(job).is_err() {
            return false;
        }
        answered.await.unwrap_or(false) && real
    }

    /// Password checks made so far (real and dummy alike).
    pub(super) fn checks(&self) -> u64 {
        self.checks.load(Ordering::Relaxed)
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// The threads that run the checks; they end when the pool is dropped.
struct Checkers {
    jobs: mpsc::Sender<Job>,
}

impl Checkers {
    fn start(threads: usize) -> Result<Checkers, AuthError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(parking_lot::Mutex::new(queue));
        for _ in 0..threads {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name("password-check".into())
                .spawn(move || {
                    loop {
                        // The lock is released before the job runs.
                        let job = queue.lock().recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|e| {
                    tracing::error!(error = %e, "cannot start a password check thread");
                    AuthError::Internal
                })?;
        }
        Ok(Checkers { jobs })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_dummy_hash_has_the_parameters_of_real_hashes() {
        let real = hash_password("a long enough password").unwrap();
        let real = PasswordHash::new(&real).unwrap();
        let dummy = dummy_hash().unwrap();
        let dummy = PasswordHash::new(&dummy).unwrap();
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.version, real.version);
        assert_eq!(dummy.params, real.params);
        assert_eq!(dummy.hash.map(|h| h.len()), real.hash.map(|h| h.len()));
        assert_eq!(dummy.salt.map(|s| s.len()), real.salt.map(|s| s.len()));
        assert!(!matches("", &dummy.to_string()));
    }
}
