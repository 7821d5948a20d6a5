//! The access service: resolves a caller's effective access from their roles (casbin for role
//! → object → action and inheritance, the field permission table for fields), caches it per
//! (metadata version, roles), and is the one path that changes users, roles, permissions and
//! API tokens, each change audited and followed by dropping every cached session and profile.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use tessera_metadata::{ADMIN_ROLE, AccessProfile, Action, FieldAccess, ObjectPermission, Registry, RoleRules};
use tokio::sync::RwLock;

use super::policy::{PolicyEngine, PolicyError};
use crate::auth::{self, TokenCache};
use crate::store::{AuditEntry, NewUser, RoleRow, Store, StoreError, TokenKind, TokenRow, UserChange, UserRow};

/// Failures of access management, each meant for the admin unless `Internal`.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("internal error")]
    Internal,
}

impl From<StoreError> for AccessError {
    fn from(e: StoreError) -> AccessError {
        match e {
            StoreError::Refused(m) => AccessError::Invalid(m),
            other => {
                tracing::error!(error = %other, "access store failure");
                AccessError::Internal
            }
        }
    }
}

impl From<PolicyError> for AccessError {
    fn from(e: PolicyError) -> AccessError {
        if e.is_user_error() {
            AccessError::Invalid(e.to_string())
        } else {
            tracing::error!(error = %e, "policy engine failure");
            AccessError::Internal
        }
    }
}

impl From<auth::AuthError> for AccessError {
    fn from(_: auth::AuthError) -> AccessError {
        AccessError::Internal
    }
}

/// Profiles kept at once; each is small, and a change of access clears them all.
const PROFILE_CACHE_MAX: usize = 1_024;

type FieldRules = BTreeMap<String, BTreeMap<(String, String), FieldAccess>>;

/// Profiles by (metadata version, roles as the caller holds them), computed from the rules of
/// one generation: every reload of rules starts a new one and empties the map.
#[derive(Default)]
struct ProfileCache {
    generation: u64,
    profiles: HashMap<(i64, Vec<String>), Arc<AccessProfile>>,
}

/// How many times `profile` computes again when the rules change while it computes.
const PROFILE_ATTEMPTS: usize = 3;

/// A profile as computed from the rules of one generation of the cache; `remember` keeps it
/// only while that generation is current.
pub struct ComputedProfile {
    generation: u64,
    key: (i64, Vec<String>),
    pub profile: Arc<AccessProfile>,
}

/// Identity and access: effective permissions, and the management operations behind the
/// metadata API.
pub struct AccessService {
    store: Store,
    policy: PolicyEngine,
    /// Explicit field permissions by role.
    fields: RwLock<FieldRules>,
    /// The access version these rules were loaded at.
    version: AtomicI64,
    profiles: Mutex<ProfileCache>,
    /// Resolved bearer tokens; dropped with every change so roles and revocations apply at once.
    pub tokens: TokenCache,
}

fn valid_role_name(name: &str) -> Result<(), AccessError> {
    let ok = name.len() <= 48
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(AccessError::Invalid(format!(
            "`{name}` is not a valid role name: use snake_case ASCII, starting with a letter, at most 48 characters"
        )))
    }
}

async fn load_fields(store: &Store) -> Result<FieldRules, AccessError> {
    let mut out = FieldRules::new();
    for (role, object, field, access) in store.field_permissions().await? {
        out.entry(role).or_default().insert((object, field), access);
    }
    Ok(out)
}

impl AccessService {
    pub async fn load(store: Store) -> Result<AccessService, AccessError> {
        let version = store.stored_access_version().await?;
        let policy = PolicyEngine::load(store.clone()).await?;
        let fields = load_fields(&store).await?;
        Ok(AccessService {
            store,
            policy,
            fields: RwLock::new(fields),
            version: AtomicI64::new(version),
            profiles: Mutex::new(ProfileCache::default()),
            tokens: TokenCache::default(),
        })
    }

    /// The effective access of a holder of `roles` over the objects of `registry`. A profile
    /// computed while the rules changed is computed again, so that one computed from rules
    /// already replaced is neither served nor cached.
    pub async fn profile(&self, roles: &[String], registry: &Registry) -> Arc<AccessProfile> {
        if roles.iter().any(|r| r == ADMIN_ROLE) {
            return Arc::new(AccessProfile::Admin);
        }
        let key = (registry.version, roles.to_vec());
        if let Some(p) = self.profiles.lock().ok().and_then(|m| m.profiles.get(&key).cloned()) {
            return p;
        }
        let mut computed = self.compute_profile(roles, registry).await;
        for _ in 1..PROFILE_ATTEMPTS {
            match self.remember(computed) {
                Ok(profile) => return profile,
                Err(stale) => {
                    tracing::debug!(generation = stale.generation, "access rules changed while a profile was computed");
                    computed = self.compute_profile(roles, registry).await;
                }
            }
        }
        // The rules keep changing: this profile is at least as new as the request, unlike
        // what a cache would keep serving, so it is answered but not kept.
        self.remember(computed).unwrap_or_else(|stale| stale.profile)
    }

    /// Computes a profile from the rules in force now, tagged with their generation.
    pub async fn compute_profile(&self, roles: &[String], registry: &Registry) -> ComputedProfile {
        let key = (registry.version, roles.to_vec());
        // Read before the rules: a reload that lands while they are read moves the generation
        // on, and `remember` then refuses what was computed from a mix of old and new.
        let generation = self.profiles.lock().map(|m| m.generation).unwrap_or_default();
        let expanded = self.policy.expand_roles(roles).await;
        let mut rules = Vec::with_capacity(expanded.len());
        for role in &expanded {
            rules.push(self.role_rules(role).await);
        }
        let objects: Vec<&tessera_metadata::ObjectDefinition> = registry.objects().map(|o| &**o).collect();
        let mut profile = AccessProfile::from_roles(rules.iter(), objects.iter().copied());
        // casbin decides what a role may do; the rules above add scopes and fields. Anything
        // casbin denies is taken away, so the two can never disagree in the caller's favour.
        if let AccessProfile::Restricted(map) = &mut profile {
            for (object, access) in map.iter_mut() {
                let decide = |action| self.policy.allows(roles, object, action);
                if !decide(Action::Read).await {
                    access.read = None;
                }
                if !decide(Action::Create).await {
                    access.create = false;
                }
                if !decide(Action::Update).await {
                    access.update = None;
                }
                if !decide(Action::Delete).await {
                    access.delete = None;
                }
            }
            map.retain(|_, a| a.read.is_some() || a.create);
        }
        ComputedProfile { generation, key, profile: Arc::new(profile) }
    }

    /// Caches a computed profile and returns it, unless the rules were reloaded since it was
    /// computed: then it is handed back unchanged as `Err`.
    pub fn remember(&self, computed: ComputedProfile) -> Result<Arc<AccessProfile>, ComputedProfile> {
        let Ok(mut m) = self.profiles.lock() else { return Ok(computed.profile) };
        if m.generation != computed.generation {
            return Err(computed);
        }
        if m.profiles.len() >= PROFILE_CACHE_MAX {
            m.profiles.clear();
        }
        m.profiles.insert(computed.key, computed.profile.clone());
        Ok(computed.profile)
    }

    /// One role's own rules (not inherited).
    pub async fn role_rules(&self, role: &str) -> RoleRules {
        RoleRules {
            objects: self.policy.object_permissions(role).await,
            fields: self.fields.read().await.get(role).cloned().unwrap_or_default(),
        }
    }

    /// Drops everything cached that a change of access may have made stale.
    async fn invalidate(&self) -> Result<(), AccessError> {
        *self.fields.write().await = load_fields(&self.store).await?;
        if let Ok(mut m) = self.profiles.lock() {
            m.generation += 1;
            m.profiles.clear();
        }
        self.tokens.clear();
        Ok(())
    }

    /// Follows changes made by another node sharing the database. Returns whether it reloaded.
    pub async fn refresh(&self) -> Result<bool, AccessError> {
        if self.store.stored_access_version().await? == self.version.load(Ordering::Acquire) {
            return Ok(false);
        }
        self.reload().await?;
        Ok(true)
    }

    /// Reloads every rule and drops every cache. The version is read first, so what is loaded
    /// is at least that version even when another node changes rules meanwhile.
    async fn reload(&self) -> Result<(), AccessError> {
        let stored = self.store.stored_access_version().await?;
        self.policy.reload().await?;
        self.invalidate().await?;
        self.version.store(stored, Ordering::Release);
        Ok(())
    }

    async fn changed(&self) -> Result<(), AccessError> {
        self.reload().await
    }

    fn audit(actor: &str, action: &str, after: serde_json::Value) -> AuditEntry {
        AuditEntry::new("access", action, Some(actor)).images(None, Some(after))
    }

    // ---- roles -------------------------------------------------------------------------

    pub async fn roles(&self) -> Result<Vec<RoleRow>, AccessError> {
        Ok(self.store.list_roles().await?)
    }

    async fn require_role(&self, name: &str) -> Result<RoleRow, AccessError> {
        self.roles()
            .await?
            .into_iter()
            .find(|r| r.name == name)
            .ok_or_else(|| AccessError::NotFound(format!("no role named `{name}`")))
    }

    pub async fn parents(&self, role: &str) -> Vec<String> {
        self.policy.parents(role).await
    }

    pub async fn create_role(&self, actor: &str, role: RoleRow, inherits: &[String]) -> Result<RoleRow, AccessError> {
        valid_role_name(&role.name)?;
        for parent in inherits {
            self.require_role(parent).await?;
        }
        let entry = Self::audit(actor, "create_role", serde_json::json!({ "name": role.name, "label": role.label }));
        self.store.create_role(&role, entry).await?;
        if !inherits.is_empty() {
            self.set_parents(actor, &role.name, inherits).await?;
        }
        self.changed().await?;
        Ok(role)
    }

    pub async fn update_role(
        &self,
        actor: &str,
        name: &str,
        label: Option<String>,
        description: Option<Option<String>>,
        inherits: Option<Vec<String>>,
    ) -> Result<RoleRow, AccessError> {
        let mut role = self.require_role(name).await?;
        if let Some(l) = label {
            role.label = l;
        }
        if let Some(d) = description {
            role.description = d;
        }
        let entry = Self::audit(actor, "update_role", serde_json::json!({ "name": role.name, "label": role.label }));
        self.store.update_role(&role, entry).await?;
        if let Some(parents) = inherits {
            self.set_parents(actor, name, &parents).await?;
        }
        self.changed().await?;
        Ok(role)
    }

    async fn set_parents(&self, actor: &str, role: &str, parents: &[String]) -> Result<(), AccessError> {
        if role == ADMIN_ROLE || parents.iter().any(|p| p == ADMIN_ROLE) {
            return Err(AccessError::Invalid(format!(
                "the `{ADMIN_ROLE}` role cannot inherit or be inherited: assign it to the user instead"
            )));
        }
        for parent in parents {
            self.require_role(parent).await?;
        }
        self.policy.set_parents(role, parents).await?;
        let entry =
            Self::audit(actor, "set_role_inheritance", serde_json::json!({ "role": role, "inherits": parents }));
        self.store.audit(&[entry]).await?;
        Ok(())
    }

    pub async fn delete_role(&self, actor: &str, name: &str) -> Result<(), AccessError> {
        if name == ADMIN_ROLE {
            return Err(AccessError::Invalid(format!("the built-in `{ADMIN_ROLE}` role cannot be deleted")));
        }
        self.require_role(name).await?;
        self.policy.remove_role(name).await?;
        self.store.delete_role(name, Self::audit(actor, "delete_role", serde_json::json!({ "name": name }))).await?;
        self.changed().await
    }

    // ---- permissions ----------------------------------------------------------------------

    pub async fn set_object_permission(
        &self,
        actor: &str,
        registry: &Registry,
        role: &str,
        object: &str,
        perm: ObjectPermission,
    ) -> Result<(), AccessError> {
        self.require_role(role).await?;
        registry.require(object).map_err(|e| AccessError::NotFound(e.to_string()))?;
        self.policy.set_object_permission(role, object, Some(perm)).await?;
        let entry = Self::audit(
            actor,
            "set_object_permission",
            serde_json::json!({ "role": role, "object": object, "permission": perm }),
        );
        self.store.audit(&[entry.on(object, None)]).await?;
        self.changed().await
    }

    pub async fn set_field_permission(
        &self,
        actor: &str,
        registry: &Registry,
        role: &str,
        object: &str,
        field: &str,
        access: Option<FieldAccess>,
    ) -> Result<(), AccessError> {
        if role == ADMIN_ROLE {
            return Err(AccessError::Invalid(format!("the `{ADMIN_ROLE}` role always has full access")));
        }
        self.require_role(role).await?;
        let def = registry.require(object).map_err(|e| AccessError::NotFound(e.to_string()))?;
        if def.field(field).is_none() {
            return Err(AccessError::NotFound(format!("`{object}` has no field `{field}`")));
        }
        let entry = Self::audit(
            actor,
            "set_field_permission",
            serde_json::json!({ "role": role, "object": object, "field": field, "access": access }),
        )
        .on(object, None);
        self.store.set_field_permission(role, object, field, access, entry).await?;
        self.changed().await
    }

    /// Follows a metadata change that removed grants (a deleted object or field): the change
    /// deleted them and bumped the access version in its own transaction; this node reloads
    /// now rather than at its next poll.
    pub async fn grants_removed(&self) -> Result<(), AccessError> {
        self.changed().await
    }

    // ---- users and tokens ------------------------------------------------------------------

    pub async fn users(&self) -> Result<Vec<UserRow>, AccessError> {
        Ok(self.store.list_users().await?)
    }

    pub async fn user(&self, id: &str) -> Result<Option<UserRow>, AccessError> {
        Ok(self.store.get_user(id).await?)
    }

    pub async fn create_user(
        &self,
        actor: &str,
        email: String,
        password: String,
        display_name: String,
        roles: Vec<String>,
        manager: Option<String>,
    ) -> Result<UserRow, AccessError> {
        check_email(&email)?;
        check_password(&password)?;
        let entry = Self::audit(
            actor,
            "create_user",
            serde_json::json!({ "email": email.to_lowercase(), "roles": roles, "manager": manager }),
        );
        let user = NewUser {
            email,
            password_hash: auth::hash_password_async(password).await?,
            display_name,
            roles,
            manager_id: manager,
        };
        let id = self.store.create_user(&user, Some(entry)).await?;
        self.changed().await?;
        self.store.get_user(&id).await?.ok_or(AccessError::Internal)
    }

    pub async fn update_user(
        &self,
        actor: &str,
        id: &str,
        mut change: UserChange,
        password: Option<String>,
    ) -> Result<UserRow, AccessError> {
        if let Some(e) = &change.email {
            check_email(e)?;
        }
        if let Some(p) = password {
            check_password(&p)?;
            change.password_hash = Some(auth::hash_password_async(p).await?);
        }
        if id == actor && change.active == Some(false) {
            return Err(AccessError::Invalid("you cannot deactivate yourself".into()));
        }
        let entry = Self::audit(
            actor,
            "update_user",
            serde_json::json!({
                "email": change.email,
                "displayName": change.display_name,
                "active": change.active,
                "roles": change.roles,
                "manager": change.manager_id,
                "passwordChanged": change.password_hash.is_some(),
            }),
        );
        let user = self.store.update_user(id, &change, Some(entry)).await?;
        self.changed().await?;
        Ok(user)
    }

    /// Issues an API token for a user; the secret is returned once and stored only hashed.
    pub async fn create_api_token(&self, actor: &str, user: &str, name: &str) -> Result<(String, String), AccessError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(AccessError::Invalid("a token needs a name of 1 to 100 characters".into()));
        }
        let owner = self.user(user).await?.ok_or_else(|| AccessError::NotFound(format!("no user with id `{user}`")))?;
        if !owner.active {
            return Err(AccessError::Invalid("inactive users cannot get tokens".into()));
        }
        let (token, hash) = auth::new_token();
        let id = self.store.insert_token(user, TokenKind::Api, name, &hash, None).await?;
        let entry = Self::audit(actor, "create_api_token", serde_json::json!({ "tokenId": id, "name": name }))
            .on("user", Some(user));
        self.store.audit(&[entry]).await?;
        Ok((id, token))
    }

    pub async fn api_tokens(&self, user: &str) -> Result<Vec<TokenRow>, AccessError> {
        Ok(self.store.api_tokens(user).await?)
    }

    pub async fn revoke_api_token(&self, actor: &str, token_id: &str) -> Result<(), AccessError> {
        let entry = Self::audit(actor, "revoke_api_token", serde_json::json!({ "tokenId": token_id }));
        match self.store.revoke_token(token_id, entry).await? {
            Some(_) => self.changed().await,
            None => Err(AccessError::NotFound(format!("no live token with id `{token_id}`"))),
        }
    }
}

fn check_email(email: &str) -> Result<(), AccessError> {
    if email.len() <= 254 && tessera_metadata::valid_email(email) {
        Ok(())
    } else {
        Err(AccessError::Invalid(format!("`{email}` is not an email address")))
    }
}

/// NIST SP 800-63B: length matters, composition rules do not.
fn check_password(password: &str) -> Result<(), AccessError> {
    let n = password.chars().count();
    if (12..=256).contains(&n) {
        Ok(())
    } else {
        Err(AccessError::Invalid("a password must have 12 to 256 characters".into()))
    }
}
