//! The policy rules of the access engine (casbin's `p` and `g` lines) and the access version
//! that every change of access rules bumps, so other nodes know to reload.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// casbin rules have up to six values; unused ones are stored as '' rather than NULL so the
/// unique index treats them as equal on both engines (NULLs are distinct in a unique index).
const VALUES: [&str; 6] = ["v0", "v1", "v2", "v3", "v4", "v5"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut table = Table::create();
        table
            .table("sys_policy_rules")
            .col(ColumnDef::new("id").string_len(36).not_null().primary_key())
            .col(ColumnDef::new("ptype").string_len(8).not_null());
        for v in VALUES {
            table.col(ColumnDef::new(v).string_len(64).not_null().default(""));
        }
        manager.create_table(table.to_owned()).await?;
        let mut index = Index::create();
        index.name("ux_sys_policy_rules_rule").table("sys_policy_rules").unique().col("ptype");
        for v in VALUES {
            index.col(v);
        }
        manager.create_index(index.to_owned()).await?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table("sys_metadata")
                    .columns(["key", "value"])
                    .values(["access_version".into(), 0i64.into()])
                    .map_err(|e| DbErr::Custom(e.to_string()))?
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .exec_stmt(
                Query::delete().from_table("sys_metadata").and_where(Expr::col("key").eq("access_version")).to_owned(),
            )
            .await?;
        manager.drop_table(Table::drop().table("sys_policy_rules").if_exists().to_owned()).await?;
        Ok(())
    }
}
