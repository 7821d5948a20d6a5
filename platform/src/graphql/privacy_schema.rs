//! Privacy on the metadata API (admins only): sensitive field settings, the sensitive access
//! log, and data-subject export and erasure. Resolvers are thin: the store does the work.

use async_graphql::{Context, Enum, InputObject, Json, Object, SimpleObject};
use tessera_metadata::{FieldType, Mask, Sensitivity};

use super::{Caller, data_error, gql_error};
use crate::metadata_service::MetadataService;
use crate::store::{Erasure, SensitiveRead, SensitiveReadQuery, Store};

/// How a sensitive value is shown to readers without `UNMASKED_READ`.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(name = "Mask", rename_items = "SCREAMING_SNAKE_CASE")]
pub enum MaskGql {
    None,
    Phone,
    Email,
    Name,
    IdNumber,
    Last4,
    Full,
}

impl From<MaskGql> for Mask {
    fn from(m: MaskGql) -> Mask {
        match m {
            MaskGql::None => Mask::None,
            MaskGql::Phone => Mask::Phone,
            MaskGql::Email => Mask::Email,
            MaskGql::Name => Mask::Name,
            MaskGql::IdNumber => Mask::IdNumber,
            MaskGql::Last4 => Mask::Last4,
            MaskGql::Full => Mask::Full,
        }
    }
}

impl From<Mask> for MaskGql {
    fn from(m: Mask) -> MaskGql {
        match m {
            Mask::None => MaskGql::None,
            Mask::Phone => MaskGql::Phone,
            Mask::Email => MaskGql::Email,
            Mask::Name => MaskGql::Name,
            Mask::IdNumber => MaskGql::IdNumber,
            Mask::Last4 => MaskGql::Last4,
            Mask::Full => MaskGql::Full,
        }
    }
}

/// `sensitive: {encrypted, searchable, mask}` of a field input.
#[derive(InputObject)]
#[graphql(name = "SensitiveInput")]
pub struct SensitiveInput {
    /// Store values as AES-256-GCM ciphertext.
    #[graphql(default)]
    encrypted: bool,
    /// Keep a keyed blind index for `eq`/`in` filters, uniqueness and duplicate matching.
    #[graphql(default)]
    searchable: bool,
    /// Defaults to `PHONE` for phone fields, `EMAIL` for email fields, `FULL` otherwise.
    mask: Option<MaskGql>,
}

impl SensitiveInput {
    /// The field's protection; an omitted mask keeps `current`'s, or the type's default.
    pub fn model(&self, t: FieldType, current: Option<Sensitivity>) -> Sensitivity {
        let mask = match (self.mask, current) {
            (Some(m), _) => m.into(),
            (None, Some(c)) => c.mask,
            (None, None) => Mask::default_for(t),
        };
        Sensitivity { encrypted: self.encrypted, searchable: self.searchable, mask }
    }
}

/// A field's protection as the metadata API shows it.
#[derive(SimpleObject)]
#[graphql(name = "Sensitive")]
pub struct SensitiveGql {
    encrypted: bool,
    searchable: bool,
    mask: MaskGql,
}

impl From<Sensitivity> for SensitiveGql {
    fn from(s: Sensitivity) -> SensitiveGql {
        SensitiveGql { encrypted: s.encrypted, searchable: s.searchable, mask: s.mask.into() }
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(name = "ErasureMode", rename_items = "SCREAMING_SNAKE_CASE")]
pub enum ErasureGql {
    /// Keep the record; empty its sensitive fields everywhere.
    Anonymize,
    /// Destroy the record and empty every stored image of it.
    Delete,
}

/// One unmasked read of sensitive fields, or one search of a field shown masked.
#[derive(SimpleObject)]
#[graphql(name = "SensitiveAccess")]
pub struct SensitiveAccessGql {
    id: String,
    at: String,
    user_id: String,
    object: String,
    /// Null for a search that matched no record.
    record_id: Option<String>,
    fields: Vec<String>,
    /// `list`, `get`, `lookup`, `write`, `export`, `audit` or `search` (an equality search of a
    /// field the user sees masked: the records it matched, without the value searched for).
    via: String,
    request_id: Option<String>,
}

impl From<SensitiveRead> for SensitiveAccessGql {
    fn from(r: SensitiveRead) -> SensitiveAccessGql {
        SensitiveAccessGql {
            id: r.id,
            at: r.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            user_id: r.user_id,
            object: r.object,
            record_id: r.record_id,
            fields: r.fields,
            via: r.via,
            request_id: r.request_id,
        }
    }
}

fn internal(e: impl std::fmt::Display) -> async_graphql::Error {
    tracing::error!(error = %e, "privacy request failed");
    gql_error("INTERNAL_SERVER_ERROR", "internal error")
}

#[derive(Default)]
pub struct PrivacyQuery;

#[Object]
impl PrivacyQuery {
    /// Who read which sensitive fields unmasked, newest first; pass the last entry's id as
    /// `after` for the next page.
    #[allow(clippy::too_many_arguments)]
    async fn sensitive_access_log(
        &self,
        ctx: &Context<'_>,
        object: Option<String>,
        record_id: Option<String>,
        user: Option<String>,
        #[graphql(default = 50)] first: u64,
        after: Option<String>,
    ) -> async_graphql::Result<Vec<SensitiveAccessGql>> {
        if first == 0 || first > 500 {
            return Err(gql_error("BAD_USER_INPUT", "first must be between 1 and 500"));
        }
        let q = SensitiveReadQuery { object, record_id, user_id: user, after, limit: first };
        let rows = ctx.data::<Store>()?.sensitive_reads(&q).await.map_err(|e| match e {
            crate::store::StoreError::Refused(m) => gql_error("BAD_USER_INPUT", m),
            crate::store::StoreError::Unavailable(m) => gql_error("UNAVAILABLE", m),
            other => internal(other),
        })?;
        Ok(rows.into_iter().map(SensitiveAccessGql::from).collect())
    }
}

#[derive(Default)]
pub struct PrivacyMutation;

#[Object]
impl PrivacyMutation {
    /// Everything held about a record for a data-subject access request: the record with its
    /// values unmasked, the records that refer to it, and its history. Audited.
    async fn export_personal_data(
        &self,
        ctx: &Context<'_>,
        object: String,
        id: String,
    ) -> async_graphql::Result<Json<serde_json::Value>> {
        let caller = ctx.data::<Caller>()?;
        let registry = ctx.data::<std::sync::Arc<MetadataService>>()?.current().registry.clone();
        let def = registry.object(&object).ok_or_else(|| gql_error("NOT_FOUND", format!("no object `{object}`")))?;
        let store = ctx.data::<Store>()?;
        let export = store.export_personal_data(caller, &registry, def, &id).await.map_err(data_error)?;
        Ok(Json(export))
    }

    /// Right to erasure: removes (`DELETE`) or anonymises (`ANONYMIZE`: empties the sensitive
    /// fields) a record's personal data everywhere it is stored, audit images included, and
    /// audits that the erasure happened. Returns the mode and the fields erased.
    async fn erase_personal_data(
        &self,
        ctx: &Context<'_>,
        object: String,
        id: String,
        mode: ErasureGql,
    ) -> async_graphql::Result<Json<serde_json::Value>> {
        let caller = ctx.data::<Caller>()?;
        let registry = ctx.data::<std::sync::Arc<MetadataService>>()?.current().registry.clone();
        let def = registry.object(&object).ok_or_else(|| gql_error("NOT_FOUND", format!("no object `{object}`")))?;
        let mode = match mode {
            ErasureGql::Anonymize => Erasure::Anonymize,
            ErasureGql::Delete => Erasure::Delete,
        };
        let store = ctx.data::<Store>()?;
        let fields = store.erase_personal_data(caller, &registry, def, &id, mode).await.map_err(data_error)?;
        Ok(Json(serde_json::json!({ "mode": mode.as_str(), "fields": fields })))
    }
}
