//! Migrations of Tessera's own system tables (`sys_*`): the metadata store, users, sessions and
//! API tokens, roles, role policies (casbin's rules) and field permissions, the manager
//! hierarchy, the audit log, auto-number sequences, and field encryption's key ring and jobs.
//! Admin-defined objects are never migrated here; the platform derives their DDL from metadata
//! at run time.

pub use sea_orm_migration::prelude::*;

mod m20261124_000001_create_system_tables;
mod m20261125_000001_create_policy_rules;
mod m20261125_000002_create_access_tables;
mod m20261125_000003_create_key_ring;
mod m20261125_000004_create_sensitive_access;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_create_system_tables::Migration),
            Box::new(m20261125_000001_create_policy_rules::Migration),
            Box::new(m20261125_000002_create_access_tables::Migration),
            Box::new(m20261125_000003_create_key_ring::Migration),
            Box::new(m20261125_000004_create_sensitive_access::Migration),
        ]
    }
}
