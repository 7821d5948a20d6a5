//! Identity and access: casbin as the engine for role → object → action decisions and role
//! inheritance, with its rules kept in Tessera's own `sys_policy_rules` table, and the access
//! service that resolves callers' effective access and manages users, roles, permissions and
//! API tokens.

mod casbin_adapter;
pub mod policy;
mod service;

pub use service::{AccessError, AccessService, ComputedProfile};
