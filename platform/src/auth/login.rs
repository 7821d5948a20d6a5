//! Sign-in with a password. Every attempt reserves its place before any password is checked, so
//! parallel guesses cannot outrun the limits: one place in its client address's count (this
//! node) and, for an account that may sign in, one in the account's count of failures in a row
//! (in the database, so every node sees it). A success hands both back. Unknown, inactive,
//! locked and wrong-password attempts get one answer and cost one password check each.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::password::Verifier;
use super::throttle::{AddressBucket, AddressThrottle, Admission, Refusals};
use super::{AuthError, new_token};
use crate::store::{AuditEntry, LoginReservation, Store, TokenKind};

/// Sessions from `POST /auth/login` last this long.
const SESSION_HOURS: i64 = 12;

/// The longest email a sign-in accepts, as user accounts accept (RFC 5321's path limit).
pub const MAX_EMAIL_BYTES: usize = 254;
/// The longest password a sign-in accepts, as user accounts accept.
pub const MAX_PASSWORD_CHARS: usize = 256;
/// The largest sign-in request body: the longest email and password, each character escaped.
pub const LOGIN_MAX_BODY_BYTES: usize = 8 * 1024;

/// Client addresses tracked by default: about 40 MB at worst with the default window.
const TRACKED_ADDRESSES: usize = 100_000;
/// How long a sign-in waits by default for a password check slot.
const HASH_QUEUE_WAIT: Duration = Duration::from_secs(2);

/// Sign-in limits. An account is locked after `account_failures` failed attempts in a row
/// (persisted, so every node and a restart see it); a client address (IPv4, or IPv6 /64) may
/// make `address_failures` failed attempts within `window` (this node's count).
#[derive(Debug, Clone)]
pub struct LoginLimits {
    pub account_failures: i32,
    pub lock_for: chrono::Duration,
    pub address_failures: usize,
    pub window: Duration,
    /// Client addresses tracked at most; the least recently seen is forgotten first.
    pub tracked_addresses: usize,
    /// Password checks at once. Each holds Argon2's 7 MiB on a blocking thread, so this bounds
    /// the memory a flood of sign-ins can take. Default: the CPUs available.
    pub hash_concurrency: usize,
    /// How long a sign-in waits for its turn before it is answered 503.
    pub hash_queue_wait: Duration,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            account_failures: 5,
            lock_for: chrono::Duration::minutes(15),
            address_failures: 20,
            window: Duration::from_secs(15 * 60),
            tracked_addresses: TRACKED_ADDRESSES,
            hash_concurrency: std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
            hash_queue_wait: HASH_QUEUE_WAIT,
        }
    }
}

/// Signs users in (one per server).
pub struct LoginService {
    store: Store,
    limits: LoginLimits,
    addresses: AddressThrottle,
    verifier: Verifier,
}

/// Why an attempt failed, for the audit log only (the client is told none of this).
enum Failure {
    /// The account was reserved and the password was wrong; `locked` when this attempt was the
    /// one that locked the account.
    WrongPassword {
        id: String,
        locked: Option<chrono::DateTime<chrono::Utc>>,
    },
    NoSuchUser,
    Inactive(String),
    LockedOut(String),
}

impl LoginService {
    pub fn new(store: Store, limits: LoginLimits) -> Result<LoginService, AuthError> {
        Ok(LoginService {
            addresses: AddressThrottle::new(limits.address_failures, limits.window, limits.tracked_addresses),
            verifier: Verifier::new(limits.hash_concurrency, limits.hash_queue_wait)?,
            store,
            limits,
        })
    }

    /// Checks credentials and issues a session token.
    pub async fn sign_in(&self, email: &str, password: &str, client: IpAddr) -> Result<String, AuthError> {
        if email.len() > MAX_EMAIL_BYTES || password.chars().count() > MAX_PASSWORD_CHARS {
            return Err(AuthError::Invalid(format!(
                "the email may have at most {MAX_EMAIL_BYTES} bytes and the password at most {MAX_PASSWORD_CHARS} characters"
            )));
        }
        let email = email.to_lowercase();
        let slot = match self.addresses.admit(client) {
            Admission::Admitted(slot) => slot,
            Admission::Refused { retry_after } => return Err(AuthError::Throttled { retry_after }),
        };
        let turn = match self.verifier.turn().await {
            Ok(turn) => turn,
            Err(e) => {
                self.addresses.give_back(slot);
                return Err(e);
            }
        };
        let reserved = match self.store.reserve_login(&email, self.limits.account_failures, self.limits.lock_for).await
        {
            Ok(r) => r,
            Err(e) => {
                self.addresses.give_back(slot);
                return Err(e.into());
            }
        };
        let ok = self.verifier.check(turn, password, reserved.as_ref().map(|r| r.password_hash.as_str())).await;
        match reserved {
            Some(account) if ok => {
                self.addresses.give_back(slot);
                self.signed_in(&account.id).await
            }
            Some(LoginReservation { id, locked_until, .. }) => {
                self.failed(&email, client, Failure::WrongPassword { id, locked: locked_until }).await
            }
            None => {
                let failure = match self.store.login_subject(&email).await? {
                    None => Failure::NoSuchUser,
                    Some(s) if !s.active => Failure::Inactive(s.id),
                    Some(s) => Failure::LockedOut(s.id),
                };
                self.failed(&email, client, failure).await
            }
        }
    }

    async fn signed_in(&self, id: &str) -> Result<String, AuthError> {
        self.store.clear_failed_logins(id).await?;
        let (token, hash) = new_token();
        let expires = chrono::Utc::now() + chrono::Duration::hours(SESSION_HOURS);
        self.store.insert_token(id, TokenKind::Session, "login", &hash, Some(expires)).await?;
        self.store.audit(&[AuditEntry::new("auth", "login", Some(id)).on("user", Some(id))]).await?;
        Ok(token)
    }

    /// Audits a failed attempt (its address's count already holds it) and answers it.
    async fn failed(&self, email: &str, client: IpAddr, failure: Failure) -> Result<String, AuthError> {
        let (action, reason, id) = match &failure {
            Failure::WrongPassword { id, .. } => ("login_failed", "wrong_password", Some(id.as_str())),
            Failure::NoSuchUser => ("login_failed", "unknown_email", None),
            Failure::Inactive(id) => ("login_failed", "inactive", Some(id.as_str())),
            Failure::LockedOut(id) => ("login_locked_out", "locked", Some(id.as_str())),
        };
        let image = serde_json::json!({ "email": email, "address": client.to_string(), "reason": reason });
        let mut entry = AuditEntry::new("auth", action, id).images(None, Some(image));
        if let Some(id) = id {
            entry = entry.on("user", Some(id));
        }
        let mut entries = vec![entry];
        if let Failure::WrongPassword { id, locked: Some(until) } = &failure {
            entries.push(
                AuditEntry::new("auth", "account_locked", Some(id))
                    .on("user", Some(id))
                    .images(None, Some(serde_json::json!({ "lockedUntil": until.to_rfc3339() }))),
            );
        }
        self.store.audit(&entries).await?;
        Err(AuthError::BadCredentials)
    }

    /// Password checks made so far, real and dummy alike (each sign-in that reaches the check
    /// makes exactly one).
    pub fn password_checks(&self) -> u64 {
        self.verifier.checks()
    }

    /// Writes one audit entry per address whose window of refusals has closed (every open one
    /// when `all`, at shutdown).
    pub async fn write_refusals(&self, all: bool) {
        let refusals = self.addresses.take_refusals(all);
        if refusals.is_empty() {
            return;
        }
        let entries: Vec<AuditEntry> = refusals.iter().map(|(bucket, r)| refusal_entry(*bucket, r)).collect();
        if let Err(e) = self.store.audit(&entries).await {
            tracing::error!(error = %e, count = entries.len(), "cannot audit refused sign-ins");
        }
    }

    /// Writes refusals as their windows close, until the task is aborted.
    pub fn spawn_refusal_writer(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let service = self.clone();
        // A window's entry is written at most a quarter of a window (and a minute) after it closes.
        let period = (self.limits.window / 4).clamp(Duration::from_millis(100), Duration::from_secs(60));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                service.write_refusals(false).await;
            }
        })
    }
}

fn refusal_entry(bucket: AddressBucket, r: &Refusals) -> AuditEntry {
    AuditEntry::new("auth", "login_throttled", None).images(
        None,
        Some(serde_json::json!({
            "address": bucket.to_string(),
            "refused": r.count,
            "from": r.first.to_rfc3339(),
            "to": r.last.to_rfc3339(),
        })),
    )
}
