//! The metadata API (`POST /graphql/metadata`, admins only): objects, fields and the audit log,
//! merged with users, roles and permissions (`identity_schema`).

use std::sync::Arc;

use async_graphql::{Context, EmptySubscription, Enum, InputObject, Json, MergedObject, Object, Schema, SimpleObject};
use tessera_metadata::{
    FieldDefinition, FieldName, FieldType, IndexDefinition, MetadataError, ObjectDefinition, ObjectName, PicklistOption,
};

use super::identity_schema::{IdentityMutation, IdentityQuery, access_error};
use super::privacy_schema::{PrivacyMutation, PrivacyQuery, SensitiveGql, SensitiveInput};
use super::{Caller, gql_error};
use crate::access::AccessService;
use crate::metadata_service::{ChangeError, MetadataService};
use crate::store::{AuditEntry, AuditQuery, Store};

pub type MetadataSchema = Schema<MetaQuery, MetaMutation, EmptySubscription>;

#[derive(MergedObject, Default)]
pub struct MetaQuery(CatalogQuery, IdentityQuery, PrivacyQuery, super::keys_schema::KeysQuery);

#[derive(MergedObject, Default)]
pub struct MetaMutation(CatalogMutation, IdentityMutation, PrivacyMutation, super::scripts_schema::ScriptsMutation);

pub fn build(service: Arc<MetadataService>, access: Arc<AccessService>, store: Store) -> MetadataSchema {
    Schema::build(MetaQuery::default(), MetaMutation::default(), EmptySubscription)
        .data(service)
        .data(access)
        .data(store)
        .limit_depth(10)
        .limit_complexity(1_000)
        .finish()
}

pub(super) fn change_error(e: ChangeError) -> async_graphql::Error {
    match e {
        ChangeError::Invalid(MetadataError::UnknownObject(_) | MetadataError::UnknownField { .. }) => {
            gql_error("NOT_FOUND", e.to_string())
        }
        ChangeError::Invalid(MetadataError::Conflict(_)) => gql_error("CONFLICT", e.to_string()),
        ChangeError::Invalid(_) | ChangeError::Refused(_) => gql_error("BAD_USER_INPUT", e.to_string()),
        ChangeError::Internal => gql_error("INTERNAL_SERVER_ERROR", "internal error"),
    }
}

fn invalid(e: MetadataError) -> async_graphql::Error {
    change_error(ChangeError::Invalid(e))
}

/// Field types as the API names them.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(name = "FieldType", rename_items = "SCREAMING_SNAKE_CASE")]
pub enum FieldTypeGql {
    Text,
    LongText,
    Integer,
    Decimal,
    Currency,
    Percent,
    Boolean,
    Date,
    Datetime,
    Email,
    Phone,
    Url,
    Picklist,
    MultiPicklist,
    Lookup,
    AutoNumber,
    Json,
    /// Computed by a Rhai `expression` over `record`; stored as its `resultType`.
    Formula,
}

impl FieldTypeGql {
    /// The stored type; `None` for `FORMULA`, whose stored type is its `resultType`.
    fn model(self) -> Option<FieldType> {
        use FieldTypeGql as G;
        Some(match self {
            G::Text => FieldType::Text,
            G::LongText => FieldType::LongText,
            G::Integer => FieldType::Integer,
            G::Decimal => FieldType::Decimal,
            G::Currency => FieldType::Currency,
            G::Percent => FieldType::Percent,
            G::Boolean => FieldType::Boolean,
            G::Date => FieldType::Date,
            G::Datetime => FieldType::Datetime,
            G::Email => FieldType::Email,
            G::Phone => FieldType::Phone,
            G::Url => FieldType::Url,
            G::Picklist => FieldType::Picklist,
            G::MultiPicklist => FieldType::MultiPicklist,
            G::Lookup => FieldType::Lookup,
            G::AutoNumber => FieldType::AutoNumber,
            G::Json => FieldType::Json,
            G::Formula => return None,
        })
    }

    /// The stored type of a field of this type: a formula's is its `resultType`.
    fn stored(self, result_type: Option<FieldTypeGql>) -> async_graphql::Result<FieldType> {
        match (self, result_type) {
            (FieldTypeGql::Formula, Some(r)) => r.model().ok_or_else(|| {
                gql_error("BAD_USER_INPUT", "a formula's resultType is the type it computes, not FORMULA")
            }),
            (FieldTypeGql::Formula, None) => Err(gql_error("BAD_USER_INPUT", "a FORMULA field needs a resultType")),
            (t, Some(_)) => {
                Err(gql_error("BAD_USER_INPUT", format!("resultType applies only to FORMULA fields, not {}", t.name())))
            }
            (t, None) => t.model().ok_or_else(|| gql_error("INTERNAL_SERVER_ERROR", "internal error")),
        }
    }

    fn name(self) -> &'static str {
        match self.model() {
            Some(t) => t.as_str(),
            None => "FORMULA",
        }
    }

    fn of(t: FieldType) -> FieldTypeGql {
        use FieldTypeGql as G;
        match t {
            FieldType::Text => G::Text,
            FieldType::LongText => G::LongText,
            FieldType::Integer => G::Integer,
            FieldType::Decimal => G::Decimal,
            FieldType::Currency => G::Currency,
            FieldType::Percent => G::Percent,
            FieldType::Boolean => G::Boolean,
            FieldType::Date => G::Date,
            FieldType::Datetime => G::Datetime,
            FieldType::Email => G::Email,
            FieldType::Phone => G::Phone,
            FieldType::Url => G::Url,
            FieldType::Picklist => G::Picklist,
            FieldType::MultiPicklist => G::MultiPicklist,
            FieldType::Lookup => G::Lookup,
            FieldType::AutoNumber => G::AutoNumber,
            FieldType::Json => G::Json,
        }
    }
}

#[derive(SimpleObject, InputObject, Clone)]
#[graphql(input_name = "PicklistOptionInput", name = "PicklistOption")]
pub struct OptionGql {
    pub value: String,
    pub label: String,
    #[graphql(default = true)]
    pub active: bool,
}

/// A field definition as the metadata API shows it.
pub struct FieldGql(FieldDefinition);

#[Object(name = "Field")]
impl FieldGql {
    async fn name(&self) -> &str {
        self.0.name.as_str()
    }
    async fn label(&self) -> &str {
        &self.0.label
    }
    #[graphql(name = "type")]
    async fn field_type(&self) -> FieldTypeGql {
        if self.0.is_formula() { FieldTypeGql::Formula } else { FieldTypeGql::of(self.0.field_type) }
    }
    /// A formula's Rhai expression over `record`.
    async fn expression(&self) -> Option<&str> {
        self.0.formula.as_deref()
    }
    /// The type a formula computes (and stores).
    async fn result_type(&self) -> Option<FieldTypeGql> {
        self.0.is_formula().then(|| FieldTypeGql::of(self.0.field_type))
    }
    async fn required(&self) -> bool {
        self.0.required
    }
    async fn unique(&self) -> bool {
        self.0.unique
    }
    async fn indexed(&self) -> bool {
        self.0.indexed
    }
    async fn default_value(&self) -> Option<Json<serde_json::Value>> {
        self.0.default_value.clone().map(Json)
    }
    async fn max_length(&self) -> Option<u32> {
        self.0.effective_max_length()
    }
    async fn help_text(&self) -> Option<&str> {
        self.0.help_text.as_deref()
    }
    async fn scale(&self) -> Option<u8> {
        self.0.field_type.is_decimal().then(|| self.0.effective_scale())
    }
    async fn options(&self) -> Vec<OptionGql> {
        self.0
            .options
            .iter()
            .map(|o| OptionGql { value: o.value.clone(), label: o.label.clone(), active: o.active })
            .collect()
    }
    async fn target(&self) -> Option<&str> {
        self.0.target.as_ref().map(|t| t.as_str())
    }
    async fn format(&self) -> Option<&str> {
        self.0.format.as_deref()
    }
    /// How the field's personal data is protected, if it is sensitive.
    async fn sensitive(&self) -> Option<SensitiveGql> {
        self.0.sensitive.map(SensitiveGql::from)
    }
}

/// An object definition as the metadata API shows it.
pub struct ObjectGql(Arc<ObjectDefinition>);

#[Object(name = "Object")]
impl ObjectGql {
    async fn name(&self) -> &str {
        self.0.name.as_str()
    }
    async fn plural_name(&self) -> &str {
        self.0.plural_name.as_str()
    }
    async fn label(&self) -> &str {
        &self.0.label
    }
    async fn plural_label(&self) -> &str {
        &self.0.plural_label
    }
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }
    /// The GraphQL type generated for the object in the data API.
    async fn type_name(&self) -> String {
        self.0.type_name()
    }
    async fn fields(&self) -> Vec<FieldGql> {
        self.0.fields.iter().cloned().map(FieldGql).collect()
    }
    /// Indexes over several fields, declared by an admin.
    async fn indexes(&self) -> Vec<IndexGql> {
        self.0
            .indexes
            .iter()
            .map(|ix| IndexGql {
                name: ix.name.to_string(),
                fields: ix.fields.iter().map(|f| f.to_string()).collect(),
                unique: ix.unique,
            })
            .collect()
    }
    /// Validation rules, triggers and actions, in the order each hook runs them.
    async fn scripts(&self) -> Vec<super::scripts_schema::ScriptGql> {
        let mut all: Vec<_> = self.0.scripts.clone();
        all.sort_by(|a, b| (a.hook, a.order, a.name.as_str()).cmp(&(b.hook, b.order, b.name.as_str())));
        all.into_iter().map(super::scripts_schema::ScriptGql).collect()
    }
}

/// An index over fields of an object, in order.
#[derive(SimpleObject)]
#[graphql(name = "Index")]
pub struct IndexGql {
    name: String,
    /// Field api names.
    fields: Vec<String>,
    unique: bool,
}

#[derive(InputObject)]
pub struct IndexInput {
    name: String,
    /// Field api names, most selective filter first, then the fields to sort by.
    fields: Vec<String>,
    #[graphql(default)]
    unique: bool,
}

#[derive(SimpleObject)]
#[graphql(name = "AuditEntry")]
pub struct AuditEntryGql {
    id: String,
    at: String,
    actor_id: Option<String>,
    category: String,
    action: String,
    object: Option<String>,
    record_id: Option<String>,
    before: Option<Json<serde_json::Value>>,
    after: Option<Json<serde_json::Value>>,
}

impl From<AuditEntry> for AuditEntryGql {
    fn from(e: AuditEntry) -> Self {
        AuditEntryGql {
            id: e.id,
            at: e.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            actor_id: e.actor_id,
            category: e.category,
            action: e.action,
            object: e.object,
            record_id: e.record_id,
            before: e.before.map(Json),
            after: e.after.map(Json),
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "Me")]
pub struct MeGql {
    id: String,
    email: String,
    roles: Vec<String>,
}

fn service<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Arc<MetadataService>> {
    ctx.data::<Arc<MetadataService>>()
}

fn actor(ctx: &Context<'_>) -> async_graphql::Result<String> {
    Ok(ctx.data::<Caller>()?.user_id.clone())
}

#[derive(Default)]
pub struct CatalogQuery;

#[Object]
impl CatalogQuery {
    async fn objects(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ObjectGql>> {
        Ok(service(ctx)?.current().registry.objects().cloned().map(ObjectGql).collect())
    }

    async fn object(&self, ctx: &Context<'_>, name: String) -> async_graphql::Result<Option<ObjectGql>> {
        Ok(service(ctx)?.current().registry.object(&name).cloned().map(ObjectGql))
    }

    /// The metadata version currently served.
    async fn metadata_version(&self, ctx: &Context<'_>) -> async_graphql::Result<i64> {
        Ok(service(ctx)?.current().registry.version)
    }

    /// The audit log, newest first; pass the last entry's id as `after` for the next page.
    #[allow(clippy::too_many_arguments)]
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        category: Option<String>,
        object: Option<String>,
        record_id: Option<String>,
        actor: Option<String>,
        #[graphql(default = 50)] first: u64,
        after: Option<String>,
    ) -> async_graphql::Result<Vec<AuditEntryGql>> {
        if first == 0 || first > 500 {
            return Err(gql_error("BAD_USER_INPUT", "first must be between 1 and 500"));
        }
        let q = AuditQuery { category, object, record_id, actor_id: actor, before_id: after, limit: first };
        let store = ctx.data::<Store>()?;
        let mut entries = store.audit_log(&q).await.map_err(|e| {
            tracing::error!(error = %e, "audit query failed");
            gql_error("INTERNAL_SERVER_ERROR", "internal error")
        })?;
        let registry = service(ctx)?.current().registry.clone();
        store.reveal_audit(ctx.data::<Caller>()?, &registry, &mut entries).await;
        Ok(entries.into_iter().map(AuditEntryGql::from).collect())
    }

    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<MeGql> {
        let c = ctx.data::<Caller>()?;
        Ok(MeGql { id: c.user_id.clone(), email: c.email.clone(), roles: c.roles.clone() })
    }
}

#[derive(InputObject)]
pub struct CreateObjectInput {
    name: String,
    plural_name: String,
    label: String,
    plural_label: String,
    description: Option<String>,
}

#[derive(InputObject)]
pub struct UpdateObjectInput {
    label: Option<String>,
    plural_label: Option<String>,
    description: Option<String>,
}

#[derive(InputObject)]
pub struct FieldInput {
    name: String,
    label: String,
    #[graphql(name = "type")]
    field_type: FieldTypeGql,
    #[graphql(default)]
    required: bool,
    #[graphql(default)]
    unique: bool,
    #[graphql(default)]
    indexed: bool,
    default_value: Option<Json<serde_json::Value>>,
    max_length: Option<u32>,
    help_text: Option<String>,
    scale: Option<u8>,
    options: Option<Vec<OptionGql>>,
    target: Option<String>,
    format: Option<String>,
    /// Personal data: encrypted at rest, searchable through a blind index, masked.
    sensitive: Option<SensitiveInput>,
    /// A `FORMULA` field's Rhai expression over `record`.
    expression: Option<String>,
    /// The type a `FORMULA` field computes.
    result_type: Option<FieldTypeGql>,
}

#[derive(InputObject)]
pub struct UpdateFieldInput {
    label: Option<String>,
    #[graphql(name = "type")]
    field_type: Option<FieldTypeGql>,
    required: Option<bool>,
    unique: Option<bool>,
    indexed: Option<bool>,
    default_value: Option<Json<serde_json::Value>>,
    max_length: Option<u32>,
    help_text: Option<String>,
    scale: Option<u8>,
    /// The full list of options; options left out are kept, retired.
    options: Option<Vec<OptionGql>>,
    format: Option<String>,
    /// Protection of personal data; `null` makes the field an ordinary one again (its values
    /// are decrypted).
    sensitive: async_graphql::MaybeUndefined<SensitiveInput>,
    /// A new expression for a `FORMULA` field (every record's value is recomputed).
    expression: Option<String>,
    /// A new result type for a `FORMULA` field.
    result_type: Option<FieldTypeGql>,
}

fn options(list: Option<Vec<OptionGql>>) -> Vec<PicklistOption> {
    list.unwrap_or_default()
        .into_iter()
        .map(|o| PicklistOption { value: o.value, label: o.label, active: o.active })
        .collect()
}

#[derive(Default)]
pub struct CatalogMutation;

#[Object]
impl CatalogMutation {
    async fn create_object(&self, ctx: &Context<'_>, input: CreateObjectInput) -> async_graphql::Result<ObjectGql> {
        let object = ObjectDefinition {
            name: ObjectName::new(&input.name).map_err(invalid)?,
            plural_name: ObjectName::new(&input.plural_name).map_err(invalid)?,
            label: input.label,
            plural_label: input.plural_label,
            description: input.description,
            fields: Vec::new(),
            scripts: Vec::new(),
            indexes: Vec::new(),
        };
        let created = service(ctx)?.create_object(&actor(ctx)?, object).await.map_err(change_error)?;
        Ok(ObjectGql(Arc::new(created)))
    }

    async fn update_object(
        &self,
        ctx: &Context<'_>,
        name: String,
        input: UpdateObjectInput,
    ) -> async_graphql::Result<ObjectGql> {
        let updated = service(ctx)?
            .update_object(&actor(ctx)?, &name, |o| {
                if let Some(l) = input.label {
                    o.label = l;
                }
                if let Some(l) = input.plural_label {
                    o.plural_label = l;
                }
                if input.description.is_some() {
                    o.description = input.description;
                }
            })
            .await
            .map_err(change_error)?;
        Ok(ObjectGql(Arc::new(updated)))
    }

    /// Deletes an object with all its records.
    async fn delete_object(&self, ctx: &Context<'_>, name: String) -> async_graphql::Result<bool> {
        service(ctx)?.delete_object(&actor(ctx)?, &name).await.map_err(change_error)?;
        ctx.data::<Arc<AccessService>>()?.grants_removed().await.map_err(access_error)?;
        Ok(true)
    }

    async fn create_field(
        &self,
        ctx: &Context<'_>,
        object: String,
        input: FieldInput,
    ) -> async_graphql::Result<FieldGql> {
        let stored = input.field_type.stored(input.result_type)?;
        let mut field = FieldDefinition::new(FieldName::new(&input.name).map_err(invalid)?, input.label, stored);
        field.formula = match (input.field_type, input.expression) {
            (FieldTypeGql::Formula, Some(e)) => Some(e),
            (FieldTypeGql::Formula, None) => {
                return Err(gql_error("BAD_USER_INPUT", "a FORMULA field needs an expression"));
            }
            (_, Some(_)) => return Err(gql_error("BAD_USER_INPUT", "expression applies only to FORMULA fields")),
            (_, None) => None,
        };
        field.required = input.required;
        field.unique = input.unique;
        field.indexed = input.indexed;
        field.default_value = input.default_value.map(|j| j.0);
        field.max_length = input.max_length;
        field.help_text = input.help_text;
        field.scale = input.scale;
        field.options = options(input.options);
        field.target = input.target.map(|t| ObjectName::new(&t)).transpose().map_err(invalid)?;
        field.format = input.format;
        field.sensitive = input.sensitive.map(|s| s.model(field.field_type, None));
        let created = service(ctx)?.create_field(&actor(ctx)?, &object, field).await.map_err(change_error)?;
        Ok(FieldGql(created))
    }

    async fn update_field(
        &self,
        ctx: &Context<'_>,
        object: String,
        field: String,
        input: UpdateFieldInput,
    ) -> async_graphql::Result<FieldGql> {
        let service = service(ctx)?;
        let current = service.current().registry.require(&object).map_err(invalid)?.field(&field).cloned();
        let was_formula = current.as_ref().is_some_and(FieldDefinition::is_formula);
        let becomes_formula = match input.field_type {
            Some(t) => t == FieldTypeGql::Formula,
            None => was_formula,
        };
        // The stored type after the change: a formula's result type, else the given type.
        let new_type = match (input.field_type, input.result_type) {
            (Some(FieldTypeGql::Formula), None) if was_formula => None,
            (None, Some(r)) if was_formula => Some(FieldTypeGql::Formula.stored(Some(r))?),
            (None, Some(_)) => return Err(gql_error("BAD_USER_INPUT", "resultType applies only to FORMULA fields")),
            (Some(t), r) => Some(t.stored(r)?),
            (None, None) => None,
        };
        let formula = match (becomes_formula, input.expression) {
            (true, Some(e)) => Some(e),
            (true, None) if was_formula => current.and_then(|c| c.formula),
            (true, None) => return Err(gql_error("BAD_USER_INPUT", "a FORMULA field needs an expression")),
            (false, Some(_)) => return Err(gql_error("BAD_USER_INPUT", "expression applies only to FORMULA fields")),
            (false, None) => None,
        };
        let updated = service
            .update_field(&actor(ctx)?, &object, &field, |f| {
                if let Some(v) = input.label {
                    f.label = v;
                }
                f.formula = formula;
                if let Some(t) = new_type {
                    f.field_type = t;
                    if !f.field_type.is_textual() {
                        f.max_length = None;
                    }
                    if !f.field_type.is_decimal() {
                        f.scale = None;
                    }
                }
                if let Some(v) = input.required {
                    f.required = v;
                }
                if let Some(v) = input.unique {
                    f.unique = v;
                }
                if let Some(v) = input.indexed {
                    f.indexed = v;
                }
                if let Some(v) = input.default_value {
                    f.default_value = (!v.0.is_null()).then_some(v.0);
                }
                if input.max_length.is_some() {
                    f.max_length = input.max_length;
                }
                if input.help_text.is_some() {
                    f.help_text = input.help_text;
                }
                if input.scale.is_some() {
                    f.scale = input.scale;
                }
                if input.options.is_some() {
                    f.options = options(input.options);
                }
                if input.format.is_some() {
                    f.format = input.format;
                }
                match &input.sensitive {
                    async_graphql::MaybeUndefined::Value(s) => f.sensitive = Some(s.model(f.field_type, f.sensitive)),
                    async_graphql::MaybeUndefined::Null => f.sensitive = None,
                    async_graphql::MaybeUndefined::Undefined => {}
                }
            })
            .await
            .map_err(change_error)?;
        Ok(FieldGql(updated))
    }

    /// Declares an index over fields of an object: a filter on its first fields sorted by the
    /// next ones is answered from the index; `unique` refuses records sharing all its values.
    async fn create_index(
        &self,
        ctx: &Context<'_>,
        object: String,
        input: IndexInput,
    ) -> async_graphql::Result<IndexGql> {
        let index = IndexDefinition {
            name: FieldName::new(&input.name).map_err(invalid)?,
            fields: input.fields.iter().map(|f| FieldName::new(f)).collect::<Result<_, _>>().map_err(invalid)?,
            unique: input.unique,
        };
        let created = service(ctx)?.create_index(&actor(ctx)?, &object, index).await.map_err(change_error)?;
        Ok(IndexGql {
            name: created.name.to_string(),
            fields: created.fields.iter().map(|f| f.to_string()).collect(),
            unique: created.unique,
        })
    }

    async fn delete_index(&self, ctx: &Context<'_>, object: String, name: String) -> async_graphql::Result<bool> {
        service(ctx)?.delete_index(&actor(ctx)?, &object, &name).await.map_err(change_error)?;
        Ok(true)
    }

    /// Deletes a field and its data.
    async fn delete_field(&self, ctx: &Context<'_>, object: String, field: String) -> async_graphql::Result<bool> {
        service(ctx)?.delete_field(&actor(ctx)?, &object, &field).await.map_err(change_error)?;
        ctx.data::<Arc<AccessService>>()?.grants_removed().await.map_err(access_error)?;
        Ok(true)
    }
}
