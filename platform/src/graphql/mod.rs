//! The GraphQL surfaces: the data API generated from metadata (`data_schema`) and the admin
//! metadata API (`metadata_schema`). The builder never runs SQL; it calls `RecordStore`.

mod contract;
mod data_mutations;
pub mod data_schema;
mod errors;
mod filter_input;
pub mod metadata_schema;
mod prefetch;
mod values;

pub use contract::*;
pub use errors::{data_error, gql_error};
