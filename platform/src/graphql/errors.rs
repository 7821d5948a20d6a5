//! Translation of errors into GraphQL errors with `extensions.code` (and `fieldErrors`).

use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextResolve, ResolveInfo};
use async_graphql::{Error, ErrorExtensions, PathSegment, QueryPathNode, QueryPathSegment, ServerResult, Value};

use super::DataError;

/// A GraphQL error with a stable code.
pub fn gql_error(code: &str, message: impl Into<String>) -> Error {
    let code = code.to_string();
    Error::new(message).extend_with(|_, e| e.set("code", code.clone()))
}

/// The GraphQL form of a data error.
pub fn data_error(e: DataError) -> Error {
    let (code, fields) = match &e {
        DataError::BadInput { field_errors, .. } => ("BAD_USER_INPUT", field_errors.as_slice()),
        DataError::NotFound(_) => ("NOT_FOUND", &[][..]),
        DataError::Conflict { field_errors, .. } => ("CONFLICT", field_errors.as_slice()),
        DataError::Forbidden(_) => ("FORBIDDEN", &[][..]),
        DataError::Timeout => ("TIMEOUT", &[][..]),
        DataError::RateLimited(_) => ("RATE_LIMITED", &[][..]),
        DataError::Unavailable(_) => ("UNAVAILABLE", &[][..]),
        DataError::Internal => ("INTERNAL_SERVER_ERROR", &[][..]),
    };
    let field_errors: Vec<async_graphql::Value> = fields
        .iter()
        .map(|i| {
            let mut m = async_graphql::indexmap::IndexMap::new();
            m.insert(async_graphql::Name::new("index"), async_graphql::Value::from(i.index as i64));
            // A record-level error (a script's `reject`) names no field.
            let field = if i.field.is_empty() { async_graphql::Value::Null } else { i.field.clone().into() };
            m.insert(async_graphql::Name::new("field"), field);
            m.insert(async_graphql::Name::new("code"), async_graphql::Value::from(i.code.as_str()));
            m.insert(async_graphql::Name::new("message"), async_graphql::Value::from(i.message.clone()));
            async_graphql::Value::Object(m)
        })
        .collect();
    let message = match (&e, fields.first()) {
        (DataError::BadInput { .. } | DataError::Conflict { .. }, Some(first)) if fields.len() == 1 => {
            if first.field.is_empty() { first.message.clone() } else { format!("{}: {}", first.field, first.message) }
        }
        _ => e.to_string(),
    };
    Error::new(message).extend_with(|_, ext| {
        ext.set("code", code);
        if !field_errors.is_empty() {
            ext.set("fieldErrors", async_graphql::Value::List(field_errors.clone()));
        }
    })
}

/// Gives a resolver's error the `path` of the field that raised it. async-graphql's dynamic
/// schema reports a resolver's error with its location only, where the GraphQL specification
/// (and a client matching errors to aliased mutations, say) expects the response path too.
pub struct ErrorPaths;

impl ExtensionFactory for ErrorPaths {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ErrorPaths)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for ErrorPaths {
    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        let node = info.path_node;
        next.run(ctx, info).await.map_err(|mut e| {
            // The innermost field names the path; the fields around it pass it on unchanged.
            if e.path.is_empty() {
                e.path = path_of(node);
            }
            e
        })
    }
}

/// The response path of a field, outermost first.
fn path_of(node: &QueryPathNode<'_>) -> Vec<PathSegment> {
    let mut path: Vec<PathSegment> = std::iter::once(node)
        .chain(node.parents())
        .map(|n| match n.segment {
            QueryPathSegment::Name(name) => PathSegment::Field(name.to_string()),
            QueryPathSegment::Index(i) => PathSegment::Index(i),
        })
        .collect();
    path.reverse();
    path
}
