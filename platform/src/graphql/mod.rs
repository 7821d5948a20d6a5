//! The GraphQL surfaces: the data API generated from metadata (`data_schema`) and the admin
//! metadata API (`metadata_schema`). The builder never runs SQL; it calls `RecordStore`.

mod access_errors;
mod contract;
mod data_mutations;
pub mod data_schema;
mod errors;
pub(crate) mod filter_input;
mod identity_schema;
mod keys_schema;
pub mod metadata_schema;
mod prefetch;
mod privacy_schema;
mod request_budget;
pub mod schema_cache;
mod scripts_schema;
mod values;

pub use access_errors::explain_forbidden;
pub use contract::*;
pub use errors::{data_error, gql_error};
