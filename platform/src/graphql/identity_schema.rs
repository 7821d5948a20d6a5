//! Users, roles, permissions and API tokens on the metadata API (admins only). Resolvers are
//! thin: they call `AccessService`, which audits every change and applies it at once.

use std::sync::Arc;

use async_graphql::{Context, Enum, InputObject, MaybeUndefined, Object, SimpleObject};
use tessera_metadata::{FieldAccess, ObjectPermission, Scope};

use super::{Caller, gql_error};
use crate::access::{AccessError, AccessService};
use crate::metadata_service::MetadataService;
use crate::store::{RoleRow, TokenRow, UserChange, UserRow};

pub(super) fn access_error(e: AccessError) -> async_graphql::Error {
    match e {
        AccessError::Invalid(m) => gql_error("BAD_USER_INPUT", m),
        AccessError::NotFound(m) => gql_error("NOT_FOUND", m),
        AccessError::Internal => gql_error("INTERNAL_SERVER_ERROR", "internal error"),
    }
}

fn access<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Arc<AccessService>> {
    ctx.data::<Arc<AccessService>>()
}

fn actor(ctx: &Context<'_>) -> async_graphql::Result<String> {
    Ok(ctx.data::<Caller>()?.user_id.clone())
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(name = "Scope", rename_items = "SCREAMING_SNAKE_CASE")]
pub enum ScopeGql {
    Own,
    Team,
    All,
}

impl From<ScopeGql> for Scope {
    fn from(s: ScopeGql) -> Scope {
        match s {
            ScopeGql::Own => Scope::Own,
            ScopeGql::Team => Scope::Team,
            ScopeGql::All => Scope::All,
        }
    }
}

impl From<Scope> for ScopeGql {
    fn from(s: Scope) -> ScopeGql {
        match s {
            Scope::Own => ScopeGql::Own,
            Scope::Team => ScopeGql::Team,
            Scope::All => ScopeGql::All,
        }
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(name = "FieldAccess", rename_items = "SCREAMING_SNAKE_CASE")]
pub enum FieldAccessGql {
    Hidden,
    Read,
    UnmaskedRead,
    Edit,
}

impl From<FieldAccessGql> for FieldAccess {
    fn from(a: FieldAccessGql) -> FieldAccess {
        match a {
            FieldAccessGql::Hidden => FieldAccess::Hidden,
            FieldAccessGql::Read => FieldAccess::Read,
            FieldAccessGql::UnmaskedRead => FieldAccess::UnmaskedRead,
            FieldAccessGql::Edit => FieldAccess::Edit,
        }
    }
}

impl From<FieldAccess> for FieldAccessGql {
    fn from(a: FieldAccess) -> FieldAccessGql {
        match a {
            FieldAccess::Hidden => FieldAccessGql::Hidden,
            FieldAccess::Read => FieldAccessGql::Read,
            FieldAccess::UnmaskedRead => FieldAccessGql::UnmaskedRead,
            FieldAccess::Edit => FieldAccessGql::Edit,
        }
    }
}

/// What a role may do with an object.
#[derive(InputObject)]
#[graphql(name = "ObjectPermissionInput")]
pub struct ObjectPermissionInput {
    #[graphql(default)]
    read: bool,
    #[graphql(default)]
    create: bool,
    #[graphql(default)]
    update: bool,
    #[graphql(default)]
    delete: bool,
    #[graphql(default_with = "ScopeGql::Own")]
    scope: ScopeGql,
}

#[derive(SimpleObject)]
#[graphql(name = "ObjectPermission")]
pub struct ObjectPermissionGql {
    object: String,
    read: bool,
    create: bool,
    update: bool,
    delete: bool,
    scope: ScopeGql,
}

#[derive(SimpleObject)]
#[graphql(name = "FieldPermission")]
pub struct FieldPermissionGql {
    object: String,
    field: String,
    access: FieldAccessGql,
}

pub struct RoleGql(RoleRow);

#[Object(name = "Role")]
impl RoleGql {
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn label(&self) -> &str {
        &self.0.label
    }
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }
    /// Roles this role inherits every permission from.
    async fn inherits(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<String>> {
        Ok(access(ctx)?.parents(&self.0.name).await)
    }
    /// The role's own object permissions (not inherited ones).
    async fn permissions(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ObjectPermissionGql>> {
        let rules = access(ctx)?.role_rules(&self.0.name).await;
        Ok(rules
            .objects
            .into_iter()
            .map(|(object, p)| ObjectPermissionGql {
                object,
                read: p.read,
                create: p.create,
                update: p.update,
                delete: p.delete,
                scope: p.scope.into(),
            })
            .collect())
    }
    /// The role's explicit field permissions; other fields follow the object permission.
    async fn field_permissions(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<FieldPermissionGql>> {
        let rules = access(ctx)?.role_rules(&self.0.name).await;
        Ok(rules
            .fields
            .into_iter()
            .map(|((object, field), a)| FieldPermissionGql { object, field, access: a.into() })
            .collect())
    }
}

pub struct UserGql(UserRow);

#[Object(name = "User")]
impl UserGql {
    async fn id(&self) -> &str {
        &self.0.id
    }
    async fn email(&self) -> &str {
        &self.0.email
    }
    async fn display_name(&self) -> &str {
        &self.0.display_name
    }
    async fn active(&self) -> bool {
        self.0.active
    }
    async fn roles(&self) -> &[String] {
        &self.0.roles
    }
    /// The id of the user's manager.
    async fn manager(&self) -> Option<&str> {
        self.0.manager_id.as_deref()
    }
    /// Set while the account is locked after repeated failed sign-ins.
    async fn locked_until(&self) -> Option<String> {
        self.0.locked_until.filter(|t| *t > chrono::Utc::now()).map(|t| t.to_rfc3339())
    }
}

#[derive(SimpleObject)]
#[graphql(name = "ApiToken")]
pub struct ApiTokenGql {
    id: String,
    name: String,
    created_at: String,
    revoked_at: Option<String>,
}

impl From<TokenRow> for ApiTokenGql {
    fn from(t: TokenRow) -> Self {
        ApiTokenGql {
            id: t.id,
            name: t.name,
            created_at: t.created_at.to_rfc3339(),
            revoked_at: t.revoked_at.map(|r| r.to_rfc3339()),
        }
    }
}

/// A new API token: the secret is shown this once and stored only as a hash.
#[derive(SimpleObject)]
#[graphql(name = "CreatedApiToken")]
pub struct CreatedApiTokenGql {
    id: String,
    token: String,
}

#[derive(InputObject)]
pub struct CreateRoleInput {
    name: String,
    label: String,
    description: Option<String>,
    #[graphql(default)]
    inherits: Vec<String>,
}

#[derive(InputObject)]
pub struct UpdateRoleInput {
    label: Option<String>,
    description: MaybeUndefined<String>,
    inherits: Option<Vec<String>>,
}

#[derive(InputObject)]
pub struct CreateUserInput {
    email: String,
    password: String,
    display_name: Option<String>,
    #[graphql(default)]
    roles: Vec<String>,
    manager: Option<String>,
}

#[derive(InputObject)]
pub struct UpdateUserInput {
    email: Option<String>,
    password: Option<String>,
    display_name: Option<String>,
    roles: Option<Vec<String>>,
    /// A user id, or null to remove the manager.
    manager: MaybeUndefined<String>,
    active: Option<bool>,
}

fn maybe<T>(m: MaybeUndefined<T>) -> Option<Option<T>> {
    match m {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(v) => Some(Some(v)),
    }
}

#[derive(Default)]
pub struct IdentityQuery;

#[Object]
impl IdentityQuery {
    async fn roles(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<RoleGql>> {
        Ok(access(ctx)?.roles().await.map_err(access_error)?.into_iter().map(RoleGql).collect())
    }

    async fn role(&self, ctx: &Context<'_>, name: String) -> async_graphql::Result<Option<RoleGql>> {
        let roles = access(ctx)?.roles().await.map_err(access_error)?;
        Ok(roles.into_iter().find(|r| r.name == name).map(RoleGql))
    }

    async fn users(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<UserGql>> {
        Ok(access(ctx)?.users().await.map_err(access_error)?.into_iter().map(UserGql).collect())
    }

    async fn user(&self, ctx: &Context<'_>, id: String) -> async_graphql::Result<Option<UserGql>> {
        Ok(access(ctx)?.user(&id).await.map_err(access_error)?.map(UserGql))
    }

    /// A user's API tokens (never their secrets), newest first.
    async fn api_tokens(&self, ctx: &Context<'_>, user: String) -> async_graphql::Result<Vec<ApiTokenGql>> {
        Ok(access(ctx)?.api_tokens(&user).await.map_err(access_error)?.into_iter().map(ApiTokenGql::from).collect())
    }
}

#[derive(Default)]
pub struct IdentityMutation;

#[Object]
impl IdentityMutation {
    async fn create_role(&self, ctx: &Context<'_>, input: CreateRoleInput) -> async_graphql::Result<RoleGql> {
        let role = RoleRow { name: input.name, label: input.label, description: input.description };
        let role = access(ctx)?.create_role(&actor(ctx)?, role, &input.inherits).await.map_err(access_error)?;
        Ok(RoleGql(role))
    }

    async fn update_role(
        &self,
        ctx: &Context<'_>,
        name: String,
        input: UpdateRoleInput,
    ) -> async_graphql::Result<RoleGql> {
        let role = access(ctx)?
            .update_role(&actor(ctx)?, &name, input.label, maybe(input.description), input.inherits)
            .await
            .map_err(access_error)?;
        Ok(RoleGql(role))
    }

    /// Deletes a role: users lose it, and its permissions are forgotten.
    async fn delete_role(&self, ctx: &Context<'_>, name: String) -> async_graphql::Result<bool> {
        access(ctx)?.delete_role(&actor(ctx)?, &name).await.map_err(access_error)?;
        Ok(true)
    }

    /// Replaces what a role may do with an object (all false removes its access).
    async fn set_object_permission(
        &self,
        ctx: &Context<'_>,
        role: String,
        object: String,
        input: ObjectPermissionInput,
    ) -> async_graphql::Result<bool> {
        let perm = ObjectPermission {
            read: input.read,
            create: input.create,
            update: input.update,
            delete: input.delete,
            scope: input.scope.into(),
        };
        let registry = ctx.data::<Arc<MetadataService>>()?.current().registry.clone();
        access(ctx)?
            .set_object_permission(&actor(ctx)?, &registry, &role, &object, perm)
            .await
            .map_err(access_error)?;
        Ok(true)
    }

    /// Sets a role's access to one field; null removes the explicit permission, so the field
    /// follows the object permission again.
    async fn set_field_permission(
        &self,
        ctx: &Context<'_>,
        role: String,
        object: String,
        field: String,
        access: Option<FieldAccessGql>,
    ) -> async_graphql::Result<bool> {
        let registry = ctx.data::<Arc<MetadataService>>()?.current().registry.clone();
        ctx.data::<Arc<AccessService>>()?
            .set_field_permission(&actor(ctx)?, &registry, &role, &object, &field, access.map(Into::into))
            .await
            .map_err(access_error)?;
        Ok(true)
    }

    async fn create_user(&self, ctx: &Context<'_>, input: CreateUserInput) -> async_graphql::Result<UserGql> {
        let display_name = input.display_name.unwrap_or_else(|| input.email.clone());
        let user = access(ctx)?
            .create_user(&actor(ctx)?, input.email, input.password, display_name, input.roles, input.manager)
            .await
            .map_err(access_error)?;
        Ok(UserGql(user))
    }

    /// Changes a user. Deactivating signs them out everywhere and revokes their API tokens at
    /// once; a new password signs them out.
    async fn update_user(
        &self,
        ctx: &Context<'_>,
        id: String,
        input: UpdateUserInput,
    ) -> async_graphql::Result<UserGql> {
        let change = UserChange {
            email: input.email,
            display_name: input.display_name,
            password_hash: None,
            active: input.active,
            roles: input.roles,
            manager_id: maybe(input.manager),
        };
        let user = access(ctx)?.update_user(&actor(ctx)?, &id, change, input.password).await.map_err(access_error)?;
        Ok(UserGql(user))
    }

    /// Issues a named API token for a user; the token is shown only in this response.
    async fn create_api_token(
        &self,
        ctx: &Context<'_>,
        user: String,
        name: String,
    ) -> async_graphql::Result<CreatedApiTokenGql> {
        let (id, token) = access(ctx)?.create_api_token(&actor(ctx)?, &user, &name).await.map_err(access_error)?;
        Ok(CreatedApiTokenGql { id, token })
    }

    async fn revoke_api_token(&self, ctx: &Context<'_>, id: String) -> async_graphql::Result<bool> {
        access(ctx)?.revoke_api_token(&actor(ctx)?, &id).await.map_err(access_error)?;
        Ok(true)
    }
}
