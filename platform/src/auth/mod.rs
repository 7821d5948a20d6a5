//! Authentication: argon2 password hashes, random bearer tokens stored as SHA-256 hashes,
//! sign-in (address throttling, account lockout, a bounded pool of password checks), and the
//! first admin account.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::graphql::Caller;
use crate::store::{NewUser, Store, StoreError};

mod login;
mod password;
mod throttle;

pub use login::{LOGIN_MAX_BODY_BYTES, LoginLimits, LoginService, MAX_EMAIL_BYTES, MAX_PASSWORD_CHARS};
pub use password::{hash_password, hash_password_async};
pub use throttle::AddressBucket;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Every refused sign-in that depends on the account (unknown, inactive, locked, wrong
    /// password) is this one error, so that the answer tells nothing about the account.
    #[error("wrong email or password")]
    BadCredentials,
    #[error("missing or invalid bearer token")]
    Unauthenticated,
    /// The client address failed too often; `retry_after` is when its oldest failure ages out.
    #[error("too many failed sign-ins from this address; try again later")]
    Throttled { retry_after: Duration },
    /// Every password check slot stayed taken for as long as a sign-in may wait.
    #[error("too many sign-ins at once; try again shortly")]
    Busy { retry_after: Duration },
    #[error("{0}")]
    Invalid(String),
    #[error("internal error")]
    Internal,
}

impl From<StoreError> for AuthError {
    fn from(e: StoreError) -> AuthError {
        tracing::error!(error = %e, "auth store failure");
        AuthError::Internal
    }
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
