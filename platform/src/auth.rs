//! Authentication: argon2 password hashes, random bearer tokens stored as SHA-256 hashes,
//! sign-in throttling and account lockout, and the first admin account.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::graphql::Caller;
use crate::store::{AuditEntry, NewUser, Store, StoreError, TokenKind};

/// Sessions from `POST /auth/login` last this long.
const SESSION_HOURS: i64 = 12;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("wrong email or password")]
    BadCredentials,
    #[error("missing or invalid bearer token")]
    Unauthenticated,
    #[error("too many failed sign-ins; try again later")]
    Throttled,
    #[error("internal error")]
    Internal,
}

impl From<StoreError> for AuthError {
    fn from(e: StoreError) -> AuthError {
        tracing::error!(error = %e, "auth store failure");
        AuthError::Internal
    }
}

/// Argon2id with 7 MiB and 5 passes: one of OWASP's equivalent recommended settings, chosen
/// over 19 MiB × 2 because each concurrent login holds that memory, and a server that must run
/// in 100 MB should not spend a fifth of it on two sign-ins.
fn hasher() -> Result<Argon2<'static>, AuthError> {
    let params = argon2::Params::new(7 * 1024, 5, 1, None).map_err(|_| AuthError::Internal)?;
    Ok(Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params))
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

/// Verifies with the parameters stored in the hash, off the async runtime.
async fn verify_password(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
    })
    .await
    .unwrap_or(false)
}

/// A new random token (256 bits) and the hash under which it is stored.
pub fn new_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = format!("tsr_{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash = token_hash(&token);
    (token, hash)
}

/// Tokens are high-entropy, so a plain SHA-256 is enough to make a stolen table useless.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Sign-in throttling: an account is locked after `account_failures` failed attempts in a row
/// (persisted, so every node and a restart see it), and an address that failed
/// `address_failures` times within `window` is refused until its failures age out.
#[derive(Debug, Clone)]
pub struct LoginLimits {
    pub account_failures: i32,
    pub lock_for: chrono::Duration,
    pub address_failures: usize,
    pub window: Duration,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            account_failures: 5,
            lock_for: chrono::Duration::minutes(15),
            address_failures: 20,
            window: Duration::from_secs(15 * 60),
        }
    }
}

/// Recent failed sign-ins per client address (this node's view).
pub struct LoginThrottle {
    limits: LoginLimits,
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

/// Addresses tracked at most; the oldest entries go first when an attack spreads over many.
const THROTTLE_MAX_ADDRESSES: usize = 100_000;

impl LoginThrottle {
    pub fn new(limits: LoginLimits) -> LoginThrottle {
        LoginThrottle { limits, failures: Mutex::new(HashMap::new()) }
    }

    fn blocked(&self, addr: IpAddr) -> bool {
        let Ok(mut map) = self.failures.lock() else { return false };
        let window = self.limits.window;
        match map.get_mut(&addr) {
            Some(q) => {
                while q.front().is_some_and(|t| t.elapsed() > window) {
                    q.pop_front();
                }
                q.len() >= self.limits.address_failures
            }
            None => false,
        }
    }

    fn failed(&self, addr: IpAddr) {
        let Ok(mut map) = self.failures.lock() else { return };
        if map.len() >= THROTTLE_MAX_ADDRESSES {
            let window = self.limits.window;
            map.retain(|_, q| q.back().is_some_and(|t| t.elapsed() <= window));
            if map.len() >= THROTTLE_MAX_ADDRESSES {
                map.clear();
            }
        }
        let q = map.entry(addr).or_default();
        q.push_back(Instant::now());
        if q.len() > self.limits.address_failures {
            q.pop_front();
        }
    }
}

fn failure_entry(email: &str, addr: IpAddr, action: &str, user: Option<&str>) -> AuditEntry {
    let entry = AuditEntry::new("auth", action, user)
        .images(None, Some(serde_json::json!({ "email": email.to_lowercase(), "address": addr.to_string() })));
    match user {
        Some(u) => entry.on("user", Some(u)),
        None => entry,
    }
}

/// Checks credentials and issues a session token; every attempt is audited, and repeated
/// failures lock the account and throttle the address.
pub async fn login(
    store: &Store,
    throttle: &LoginThrottle,
    email: &str,
    password: &str,
    addr: IpAddr,
) -> Result<String, AuthError> {
    if throttle.blocked(addr) {
        store.audit(&[failure_entry(email, addr, "login_throttled", None)]).await?;
        return Err(AuthError::Throttled);
    }
    let user = store.find_user_by_email(email).await?;
    if let Some(u) = &user
        && u.locked_until.is_some_and(|t| t > chrono::Utc::now())
    {
        throttle.failed(addr);
        store.audit(&[failure_entry(email, addr, "login_locked_out", Some(&u.id))]).await?;
        return Err(AuthError::Throttled);
    }
    let ok = match &user {
        Some(u) => u.active && verify_password(password.to_string(), u.password_hash.clone()).await,
        None => {
            // Spend the same time as a real check, so timing does not reveal which emails exist.
            let _ = hash_password_async(password.to_string()).await;
            false
        }
    };
    let user = match user {
        Some(u) if ok => u,
        other => return Err(login_failed(store, throttle, email, addr, other.as_ref().map(|u| u.id.as_str())).await),
    };
    store.clear_failed_logins(&user.id).await?;
    let (token, hash) = new_token();
    let expires = chrono::Utc::now() + chrono::Duration::hours(SESSION_HOURS);
    store.insert_token(&user.id, TokenKind::Session, "login", &hash, Some(expires)).await?;
    store.audit(&[AuditEntry::new("auth", "login", Some(&user.id)).on("user", Some(&user.id))]).await?;
    Ok(token)
}

/// Records a failed sign-in: audited, counted against the address and the account (which it
/// may lock).
async fn login_failed(
    store: &Store,
    throttle: &LoginThrottle,
    email: &str,
    addr: IpAddr,
    id: Option<&str>,
) -> AuthError {
    throttle.failed(addr);
    let mut entries = vec![failure_entry(email, addr, "login_failed", id)];
    if let Some(id) = id {
        match store.record_failed_login(id, throttle.limits.account_failures, throttle.limits.lock_for).await {
            Ok(Some(until)) => entries.push(
                AuditEntry::new("auth", "account_locked", Some(id))
                    .on("user", Some(id))
                    .images(None, Some(serde_json::json!({ "lockedUntil": until.to_rfc3339() }))),
            ),
            Ok(None) => {}
            Err(e) => return e.into(),
        }
    }
    match store.audit(&entries).await {
        Ok(()) => AuthError::BadCredentials,
        Err(e) => e.into(),
    }
}

/// How long a resolved token is trusted without asking the database again.
const TOKEN_CACHE_TTL: Duration = Duration::from_secs(5);
const TOKEN_CACHE_MAX: usize = 10_000;

/// A short-lived cache of resolved tokens: keeps the token lookup off the hot path of every
/// request. Entries are keyed by token hash, so the cache holds no usable secret.
#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<String, (Caller, Instant)>>,
}

impl TokenCache {
    fn get(&self, hash: &str) -> Option<Caller> {
        let entries = self.entries.lock().ok()?;
        entries.get(hash).filter(|(_, at)| at.elapsed() < TOKEN_CACHE_TTL).map(|(c, _)| c.clone())
    }

    fn put(&self, hash: String, caller: Caller) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= TOKEN_CACHE_MAX {
                entries.retain(|_, (_, at)| at.elapsed() < TOKEN_CACHE_TTL);
                if entries.len() >= TOKEN_CACHE_MAX {
                    entries.clear();
                }
            }
            entries.insert(hash, (caller, Instant::now()));
        }
    }

    /// Forgets every cached token (after a revocation or a change of roles).
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}

/// Resolves a bearer token to its caller.
pub async fn authenticate(store: &Store, cache: &TokenCache, token: &str) -> Result<Caller, AuthError> {
    let hash = token_hash(token);
    if let Some(caller) = cache.get(&hash) {
        return Ok(caller);
    }
    let user = store.user_for_token(&hash).await?.ok_or(AuthError::Unauthenticated)?;
    let broad_team = store.team_is_broad(&user.id).await?;
    let caller = Caller { broad_team, ..Caller::new(user.id, user.email, user.roles) };
    cache.put(hash, caller.clone());
    Ok(caller)
}

/// Creates the first admin when there are no users. Returns the generated password, if one was.
pub async fn ensure_admin(
    store: &Store,
    email: Option<&str>,
    password: Option<&str>,
) -> Result<Option<(String, String)>, AuthError> {
    if store.count_users().await? > 0 {
        return Ok(None);
    }
    let email = email.unwrap_or("admin@localhost").to_string();
    let (password, generated) = match password {
        Some(p) => (p.to_string(), false),
        None => {
            let mut bytes = [0u8; 15];
            rand::rng().fill_bytes(&mut bytes);
            (URL_SAFE_NO_PAD.encode(bytes), true)
        }
    };
    let user = NewUser {
        email: email.clone(),
        password_hash: hash_password_async(password.clone()).await?,
        display_name: "Administrator".into(),
        roles: vec!["admin".into()],
        manager_id: None,
    };
    store.create_user(&user, None).await?;
    Ok(generated.then_some((email, password)))
}
