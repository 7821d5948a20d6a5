//! The model of Tessera's metadata as plain data: object and field definitions, field types,
//! name rules, access rules (roles' object and field permissions, a caller's effective access), sensitive
//! fields (masks, normalisation for blind indexes), the immutable `Registry` snapshot, typed record values with their coercion and
//! validation rules, and the filter/sort model of record queries. No I/O, no async, no SQL.

mod access;
mod error;
mod field;
mod index;
mod names;
mod object;
mod query;
mod registry;
mod script;
mod sensitive;
mod value;

pub use access::{
    ADMIN_ROLE, AccessProfile, Action, FieldAccess, ObjectAccess, ObjectGrant, ObjectPermission, RoleRules, Scope,
};
pub use error::{FieldIssue, IssueCode, MetadataError};
pub use field::{
    BLIND_INDEX_SUFFIX, FORMULA_RESULT_TYPES, FieldDefinition, FieldType, MAX_FORMULA_BYTES, PicklistOption, TypeChange,
};
pub use index::{IndexDefinition, MAX_INDEX_FIELDS, MAX_INDEXES};
pub use names::{FieldName, OBJECT_TABLE_PREFIX, ObjectName, SYSTEM_FIELDS, camel_case, pascal_case};
pub use object::ObjectDefinition;
pub use query::{Filter, FilterOp, NullsOrder, OrderKey, SortDirection};
pub use registry::{Registry, ReverseRelation};
pub use script::{MAX_SCRIPT_BYTES, MAX_SCRIPTS, ScriptDefinition, ScriptHook};
pub use sensitive::{DEFAULT_COUNTRY_CODE, Mask, Sensitivity, blind_index_domain, normalise};
pub use value::{AsJson, Value, Values, format_decimal, parse_decimal, valid_email};
