//! Access control: casbin as the engine for role → object → action decisions and role
//! inheritance, with its rules kept in Tessera's own `sys_policy_rules` table.

mod casbin_adapter;
pub mod policy;
