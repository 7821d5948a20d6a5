//! Applies runtime metadata changes: validates the next snapshot, has the store apply DDL and
//! metadata rows in one transaction, then rebuilds the data schema and swaps both atomically,
//! so a request sees either the old or the new API, never a half-built one.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tessera_metadata::{
    AccessProfile, FieldDefinition, FieldType, IndexDefinition, MetadataError, ObjectDefinition, PicklistOption,
    Registry, ScriptDefinition, TypeChange,
};
use tokio::sync::Mutex;

use crate::graphql::data_schema::{self, Limits};
use crate::graphql::schema_cache::SchemaCache;
use crate::store::{MetadataChange, Store, StoreError};

/// One consistent version of metadata and the API generated from it: the full schema (what an
/// admin sees) and, built on first use, the narrower schema of each other view.
pub struct Snapshot {
    pub registry: Arc<Registry>,
    pub data_schema: async_graphql::dynamic::Schema,
    limits: Limits,
    views: SchemaCache,
}

impl Snapshot {
    /// The data schema as a caller with `access` sees it.
    pub fn schema_for(&self, access: &Arc<AccessProfile>) -> Result<async_graphql::dynamic::Schema, ChangeError> {
        if access.is_admin() {
            return Ok(self.data_schema.clone());
        }
        self.views
            .get_or_build(access, || data_schema::build(self.registry.clone(), self.limits.clone(), access))
            .map_err(|e| {
                tracing::error!(error = %e, "generated schema of a restricted view is invalid");
                ChangeError::Internal
            })
    }

    /// How many restricted views have a schema built.
    pub fn cached_views(&self) -> usize {
        self.views.len()
    }
}

/// Failures of a metadata change, each meant for the admin.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error(transparent)]
    Invalid(#[from] MetadataError),
    #[error("{0}")]
    Refused(String),
    #[error("internal error")]
    Internal,
}

impl From<StoreError> for ChangeError {
    fn from(e: StoreError) -> ChangeError {
        match e {
            StoreError::Refused(m) => ChangeError::Refused(m),
            other => {
                tracing::error!(error = %other, "metadata change failed");
                ChangeError::Internal
            }
        }
    }
}

/// Why a formula may not read a sensitive field, for the refusals that say so.
const WHY_NO_SENSITIVE_FORMULAS: &str = "a formula's value is stored and shown without the encryption, masking and \
     access log that protect sensitive fields; compute it from fields that are not sensitive";

/// The metadata service: the current snapshot and the one path that changes it.
pub struct MetadataService {
    store: Store,
    limits: Limits,
    current: ArcSwap<Snapshot>,
    /// Metadata changes are rare and must not interleave.
    changes: Mutex<()>,
}

fn build_snapshot(registry: Registry, limits: &Limits) -> Result<Snapshot, ChangeError> {
    let registry = Arc::new(registry);
    let data_schema = data_schema::build(registry.clone(), limits.clone(), &AccessProfile::Admin).map_err(|e| {
        tracing::error!(error = %e, "generated schema is invalid");
        ChangeError::Refused(format!("the change would produce an invalid API: {e}"))
    })?;
    Ok(Snapshot { registry, data_schema, limits: limits.clone(), views: SchemaCache::default() })
}

impl MetadataService {
    /// Loads the stored metadata and builds the first snapshot.
    pub async fn load(store: Store, limits: Limits) -> Result<MetadataService, ChangeError> {
        let (version, objects) = store.load_metadata().await?;
        let registry = Registry::new(version, objects)?;
        let snapshot = build_snapshot(registry, &limits)?;
        Ok(MetadataService { store, limits, current: ArcSwap::from_pointee(snapshot), changes: Mutex::new(()) })
    }

    pub fn current(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Reloads the snapshot when the database holds a newer metadata version, which happens
    /// when another node sharing the database applied a change. Returns whether it reloaded.
    pub async fn refresh(&self) -> Result<bool, ChangeError> {
        if self.store.stored_metadata_version().await? <= self.current().registry.version {
            return Ok(false);
        }
        let _lock = self.changes.lock().await;
        let (version, objects) = self.store.load_metadata().await?;
        if version <= self.current().registry.version {
            return Ok(false);
        }
        let snapshot = build_snapshot(Registry::new(version, objects)?, &self.limits)?;
        // Another node changed tables: our pooled connections may hold stale prepared statements.
        self.store.schema_changed();
        self.current.store(Arc::new(snapshot));
        tracing::info!(version, "reloaded metadata changed by another node");
        Ok(true)
    }

    /// Validates the objects after a change, applies it, and swaps in the new snapshot.
    async fn apply(
        &self,
        actor: &str,
        next: Vec<ObjectDefinition>,
        change: MetadataChange,
    ) -> Result<Arc<Snapshot>, ChangeError> {
        let base = self.current();
        self.check_sources(&change)?;
        self.check_formula_reads(&change)?;
        let registry = Registry::new(base.registry.version + 1, next)?;
        // Build the schema before touching the database: a change that cannot be served is refused.
        let snapshot = build_snapshot(registry, &self.limits)?;
        let version = self.store.apply_metadata(base.registry.version, &change, actor).await?;
        debug_assert_eq!(version, snapshot.registry.version);
        let snapshot = Arc::new(snapshot);
        self.current.store(snapshot.clone());
        Ok(snapshot)
    }

    /// The script or formula a change saves must compile, even an inactive script (so turning
    /// it on cannot fail later); the error gives the line and column. Sources already saved
    /// are not checked again, so a script that stricter limits no longer let compile can still
    /// be fixed or deleted.
    fn check_sources(&self, change: &MetadataChange) -> Result<(), ChangeError> {
        let host = self.store.script_host();
        let (what, source) = match change {
            MetadataChange::SetScript { script, .. } => (format!("script `{}`", script.name), &script.source),
            MetadataChange::CreateField { field, .. } | MetadataChange::UpdateField { after: field, .. } => {
                match &field.formula {
                    Some(formula) => (format!("the formula of `{}`", field.name), formula),
                    None => return Ok(()),
                }
            }
            _ => return Ok(()),
        };
        host.compile(source)
            .map(|_| ())
            .map_err(|e| ChangeError::Invalid(MetadataError::Invalid(format!("{what} does not compile: {e}"))))
    }

    /// A formula's value is stored and shown without encryption, masking or access log, so no
    /// formula may read a sensitive field (masked-only ones included: they are masked for some
    /// readers). Refused both ways: saving a formula that reads one, and making a field that a
    /// formula reads sensitive. Formulas saved before this rule are suspended instead (see
    /// `Store::suspend_sensitive_formulas`); a change to their expression must satisfy it.
    fn check_formula_reads(&self, change: &MetadataChange) -> Result<(), ChangeError> {
        let (object, field, new_formula, now_sensitive) = match change {
            MetadataChange::CreateObject { object } => {
                return match self.store.script_host().sensitive_formulas(object).first() {
                    Some(found) => Err(ChangeError::Refused(format!(
                        "formula `{}` cannot read {}: {WHY_NO_SENSITIVE_FORMULAS}",
                        found.formula,
                        found.describe_reads()
                    ))),
                    None => Ok(()),
                };
            }
            MetadataChange::CreateField { object, field } => {
                (object, field, field.formula.is_some(), field.sensitive.is_some())
            }
            MetadataChange::UpdateField { object, before, after, .. } => (
                object,
                after,
                after.formula.is_some() && before.formula != after.formula,
                after.sensitive.is_some() && before.sensitive.is_none(),
            ),
            _ => return Ok(()),
        };
        if !new_formula && !now_sensitive {
            return Ok(());
        }
        let name = field.name.as_str();
        for found in self.store.script_host().sensitive_formulas(object) {
            if new_formula && found.formula == name {
                return Err(ChangeError::Refused(format!(
                    "formula `{name}` cannot read {}: {WHY_NO_SENSITIVE_FORMULAS}",
                    found.describe_reads()
                )));
            }
            if now_sensitive && found.reads.iter().any(|r| r == name) {
                let how = if found.whole_record { " (it reads the whole record)" } else { "" };
                return Err(ChangeError::Refused(format!(
                    "field `{name}` cannot be sensitive while formula `{}` reads it{how}: a formula's value is \
                     stored and shown without the encryption, masking and access log that protect sensitive \
                     fields; change or delete the formula first",
                    found.formula
                )));
            }
        }
        Ok(())
    }

    /// Changes one object: `edit` modifies a copy and returns how to describe the change given
    /// the object as it will be.
    async fn edit_object<F>(
        &self,
        actor: &str,
        object: &str,
        edit: impl FnOnce(&mut ObjectDefinition) -> Result<F, ChangeError>,
    ) -> Result<(), ChangeError>
    where
        F: FnOnce(ObjectDefinition) -> MetadataChange,
    {
        let _lock = self.changes.lock().await;
        let base = self.current();
        let mut def = (**base.registry.require(object)?).clone();
        let change = edit(&mut def)?;
        let next = Self::objects_with(&base.registry, def.clone());
        self.apply(actor, next, change(def)).await?;
        Ok(())
    }

    /// Adds a script to an object, or replaces the one of the same name.
    pub async fn set_script(
        &self,
        actor: &str,
        object: &str,
        script: ScriptDefinition,
    ) -> Result<ScriptDefinition, ChangeError> {
        let saved = script.clone();
        self.edit_object(actor, object, |def| {
            let before = def.script(script.name.as_str()).cloned();
            match def.scripts.iter_mut().find(|s| s.name == script.name) {
                Some(slot) => *slot = script.clone(),
                None => def.scripts.push(script.clone()),
            }
            Ok(move |object| MetadataChange::SetScript { object, before, script })
        })
        .await?;
        Ok(saved)
    }

    pub async fn delete_script(&self, actor: &str, object: &str, name: &str) -> Result<(), ChangeError> {
        self.edit_object(actor, object, |def| {
            let script = def
                .script(name)
                .cloned()
                .ok_or_else(|| ChangeError::Refused(format!("object `{object}` has no script `{name}`")))?;
            def.scripts.retain(|s| s.name.as_str() != name);
            Ok(move |object| MetadataChange::DeleteScript { object, script })
        })
        .await
    }

    /// Declares an index over fields of an object (built inside the change).
    pub async fn create_index(
        &self,
        actor: &str,
        object: &str,
        index: IndexDefinition,
    ) -> Result<IndexDefinition, ChangeError> {
        let created = index.clone();
        self.edit_object(actor, object, |def| {
            def.indexes.push(index.clone());
            Ok(move |object| MetadataChange::CreateIndex { object, index })
        })
        .await?;
        Ok(created)
    }

    pub async fn delete_index(&self, actor: &str, object: &str, name: &str) -> Result<(), ChangeError> {
        self.edit_object(actor, object, |def| {
            let index = def
                .indexes
                .iter()
                .find(|ix| ix.name.as_str() == name)
                .cloned()
                .ok_or_else(|| ChangeError::Refused(format!("object `{object}` has no index `{name}`")))?;
            def.indexes.retain(|ix| ix.name.as_str() != name);
            Ok(move |object| MetadataChange::DeleteIndex { object, index })
        })
        .await
    }

    fn objects_with(base: &Registry, object: ObjectDefinition) -> Vec<ObjectDefinition> {
        let mut all: Vec<ObjectDefinition> = base.definitions().into_iter().filter(|o| o.name != object.name).collect();
        all.push(object);
        all
    }

    pub async fn create_object(&self, actor: &str, object: ObjectDefinition) -> Result<ObjectDefinition, ChangeError> {
        let _lock = self.changes.lock().await;
        let base = self.current();
        if base.registry.object(object.name.as_str()).is_some() {
            return Err(MetadataError::Conflict(format!("object `{}` already exists", object.name)).into());
        }
        let next = Self::objects_with(&base.registry, object.clone());
        self.apply(actor, next, MetadataChange::CreateObject { object: object.clone() }).await?;
        Ok(object)
    }

    pub async fn update_object(
        &self,
        actor: &str,
        name: &str,
        edit: impl FnOnce(&mut ObjectDefinition),
    ) -> Result<ObjectDefinition, ChangeError> {
        let _lock = self.changes.lock().await;
        let base = self.current();
        let before = (**base.registry.require(name)?).clone();
        let mut object = before.clone();
        edit(&mut object);
        let next = Self::objects_with(&base.registry, object.clone());
        self.apply(actor, next, MetadataChange::UpdateObject { before, object: object.clone() }).await?;
        Ok(object)
    }

    pub async fn delete_object(&self, actor: &str, name: &str) -> Result<(), ChangeError> {
        let _lock = self.changes.lock().await;
        let base = self.current();
        let object = (**base.registry.require(name)?).clone();
        if let Some(r) = base.registry.reverse_relations(name).iter().find(|r| r.source != object.name) {
            return Err(ChangeError::Refused(format!(
                "object `{name}` is the target of lookup `{}.{}`; delete that field first",
                r.source, r.field
            )));
        }
        let next: Vec<ObjectDefinition> =
            base.registry.definitions().into_iter().filter(|o| o.name.as_str() != name).collect();
        self.apply(actor, next, MetadataChange::DeleteObject { object }).await?;
        Ok(())
    }

    pub async fn create_field(
        &self,
        actor: &str,
        object: &str,
        field: FieldDefinition,
    ) -> Result<FieldDefinition, ChangeError> {
        let _lock = self.changes.lock().await;
        let base = self.current();
        let mut def = (**base.registry.require(object)?).clone();
        if def.field(field.name.as_str()).is_some() {
            return Err(MetadataError::Conflict(format!("field `{}` already exists on `{object}`", field.name)).into());
        }
        if field.required && field.default_value.is_none() && field.field_type != FieldType::AutoNumber {
            // Existing records would have no value; as in Salesforce, such a field needs a default.
            if self.store.has_records(&def).await? {
                return Err(ChangeError::Refused(format!(
                    "field `{}` is required but `{object}` already has records: give it a defaultValue",
                    field.name
                )));
            }
        }
        def.fields.push(field.clone());
        let next = Self::objects_with(&base.registry, def.clone());
        self.apply(actor, next, MetadataChange::CreateField { object: def, field: field.clone() }).await?;
        Ok(field)
    }

    /// Changes a field; `edit` gets a copy to modify. Type changes convert data or are refused.
    pub async fn update_field(
        &self,
        actor: &str,
        object: &str,
        field: &str,
        edit: impl FnOnce(&mut FieldDefinition),
    ) -> Result<FieldDefinition, ChangeError> {
        let _lock = self.changes.lock().await;
        let base = self.current();
        let mut def = (**base.registry.require(object)?).clone();
        let before = def
            .field(field)
            .cloned()
            .ok_or_else(|| MetadataError::UnknownField { object: object.into(), field: field.into() })?;
        let mut after = before.clone();
        edit(&mut after);
        after.name = before.name.clone();
        after.options = merge_options(&before.options, &after.options);
        let plan = TypeChange::plan(&before, &after)?;
        if after.required && !before.required && self.store.has_nulls(&def, &after.column()).await? {
            return Err(ChangeError::Refused(format!(
                "field `{field}` cannot become required: some records have no value"
            )));
        }
        if let Some(slot) = def.field_mut(field) {
            *slot = after.clone();
        }
        let next = Self::objects_with(&base.registry, def.clone());
        self.apply(actor, next, MetadataChange::UpdateField { object: def, before, after: after.clone(), plan })
            .await?;
        Ok(after)
    }

    pub async fn delete_field(&self, actor: &str, object: &str, field: &str) -> Result<(), ChangeError> {
        let _lock = self.changes.lock().await;
        let base = self.current();
        let mut def = (**base.registry.require(object)?).clone();
        let removed = def
            .field(field)
            .cloned()
            .ok_or_else(|| MetadataError::UnknownField { object: object.into(), field: field.into() })?;
        if let Some(ix) = def.indexes.iter().find(|ix| ix.covers(field)) {
            return Err(ChangeError::Refused(format!(
                "field `{field}` is part of index `{}`; delete the index first",
                ix.name
            )));
        }
        let uses = def.uses_of(field);
        if !uses.is_empty() {
            return Err(ChangeError::Refused(format!(
                "field `{field}` is read by {}; change or delete them first",
                uses.join(", ")
            )));
        }
        def.fields.retain(|f| f.name.as_str() != field);
        let next = Self::objects_with(&base.registry, def.clone());
        self.apply(actor, next, MetadataChange::DeleteField { object: def, field: removed }).await?;
        Ok(())
    }
}

/// Options given in an update replace labels and activity of the listed ones and add new ones;
/// options left out are kept as retired so stored values keep their meaning.
fn merge_options(before: &[PicklistOption], given: &[PicklistOption]) -> Vec<PicklistOption> {
    if given.is_empty() {
        return before.to_vec();
    }
    let mut out: Vec<PicklistOption> = given.to_vec();
    for old in before {
        if !out.iter().any(|o| o.value == old.value) {
            out.push(PicklistOption { active: false, ..old.clone() });
        }
    }
    out
}
