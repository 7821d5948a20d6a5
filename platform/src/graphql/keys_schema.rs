//! Field encryption on the metadata API (admins only): key versions and the progress of the
//! jobs that convert fields and rotate keys. Nothing here reveals a key.

use async_graphql::{Context, Object, SimpleObject};

use super::gql_error;
use crate::store::{KeyJob, Store, StoreError};

fn internal(e: StoreError) -> async_graphql::Error {
    tracing::error!(error = %e, "reading key status failed");
    gql_error("INTERNAL_SERVER_ERROR", "internal error")
}

#[derive(SimpleObject)]
#[graphql(name = "KeyJob")]
pub struct KeyJobGql {
    id: String,
    /// `rotate` or `convert_field`.
    kind: String,
    object: String,
    field: Option<String>,
    /// `pending`, `running`, `done` or `failed`.
    state: String,
    done: i64,
    total: i64,
    error: Option<String>,
}

impl From<KeyJob> for KeyJobGql {
    fn from(j: KeyJob) -> KeyJobGql {
        KeyJobGql {
            id: j.id,
            kind: j.kind.as_str().into(),
            object: j.object,
            field: j.field,
            state: j.state.as_str().into(),
            done: j.done,
            total: j.total,
            error: j.error,
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "KeyVersion")]
pub struct KeyVersionGql {
    version: u32,
    /// RFC 3339.
    created_at: String,
    retired_at: Option<String>,
}

#[derive(SimpleObject)]
#[graphql(name = "KeyStatus")]
pub struct KeyStatusGql {
    /// The data key version new values are encrypted with.
    active_version: Option<u32>,
    versions: Vec<KeyVersionGql>,
    /// Blind-index key versions; lookups match every one not retired (more than one only
    /// while a rotation rewrites the indexes).
    blind_index_versions: Vec<KeyVersionGql>,
}

#[derive(Default)]
pub struct KeysQuery;

#[Object]
impl KeysQuery {
    /// Jobs that convert fields and rotate keys, oldest first (only unfinished ones unless
    /// `all`).
    async fn key_jobs(
        &self,
        ctx: &Context<'_>,
        #[graphql(default)] all: bool,
    ) -> async_graphql::Result<Vec<KeyJobGql>> {
        let store = ctx.data::<Store>()?;
        Ok(store.key_jobs(!all).await.map_err(internal)?.into_iter().map(KeyJobGql::from).collect())
    }

    async fn key_status(&self, ctx: &Context<'_>) -> async_graphql::Result<KeyStatusGql> {
        let store = ctx.data::<Store>()?;
        let rows = store.key_ring_rows().await.map_err(internal)?;
        let of = |purpose: &str| -> Vec<KeyVersionGql> {
            rows.iter()
                .filter(|r| r.purpose == purpose)
                .map(|r| KeyVersionGql {
                    version: r.version,
                    created_at: r.created_at.to_rfc3339(),
                    retired_at: r.retired_at.map(|t| t.to_rfc3339()),
                })
                .collect()
        };
        let (versions, blind_index_versions) = (of(crate::store::PURPOSE_DATA), of(crate::store::PURPOSE_BLIND_INDEX));
        Ok(KeyStatusGql { active_version: versions.iter().map(|v| v.version).max(), versions, blind_index_versions })
    }
}
