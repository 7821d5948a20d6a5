//! Field encryption's key ring (data keys and the blind-index key, each wrapped by the master
//! key, which never enters the database), the jobs that bring stored values to the current key
//! or to a field's new definition, and the key ring version that tells other nodes to reload.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("sys_key_ring")
                    // `data` or `blind_index`.
                    .col(ColumnDef::new("purpose").string_len(16).not_null())
                    .col(ColumnDef::new("version").integer().not_null())
                    .col(ColumnDef::new("wrapped").text().not_null())
                    .col(ColumnDef::new("created_at").timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new("retired_at").timestamp_with_time_zone().null())
                    // Two nodes creating the first ring, or two rotations at once, collide here
                    // instead of leaving two keys of one version.
                    .primary_key(Index::create().col("purpose").col("version"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("sys_key_jobs")
                    .col(ColumnDef::new("id").string_len(36).not_null().primary_key())
                    // `rotate` or `convert_field`.
                    .col(ColumnDef::new("kind").string_len(16).not_null())
                    .col(ColumnDef::new("object").string_len(48).not_null())
                    .col(ColumnDef::new("field").string_len(48).null())
                    .col(ColumnDef::new("target_version").integer().not_null())
                    // `records` (the object's table), then `audit` (its audit images).
                    .col(ColumnDef::new("phase").string_len(16).not_null())
                    // The last id done in the current phase.
                    .col(ColumnDef::new("cursor").string_len(36).null())
                    .col(ColumnDef::new("done").big_integer().not_null().default(0))
                    .col(ColumnDef::new("total").big_integer().not_null().default(0))
                    // `pending`, `running`, `done` or `failed`.
                    .col(ColumnDef::new("state").string_len(16).not_null())
                    .col(ColumnDef::new("error").text().null())
                    // Who runs the job and until when (unix milliseconds), so that two nodes
                    // never run one job and a job whose runner died is taken over.
                    .col(ColumnDef::new("lease_owner").string_len(36).null())
                    .col(ColumnDef::new("lease_until").big_integer().null())
                    .col(ColumnDef::new("created_at").timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new("finished_at").timestamp_with_time_zone().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(Index::create().name("ix_sys_key_jobs_state").table("sys_key_jobs").col("state").to_owned())
            .await?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table("sys_metadata")
                    .columns(["key", "value"])
                    .values(["key_ring_version".into(), 0i64.into()])
                    .map_err(|e| DbErr::Custom(e.to_string()))?
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .exec_stmt(
                Query::delete()
                    .from_table("sys_metadata")
                    .and_where(Expr::col("key").eq("key_ring_version"))
                    .to_owned(),
            )
            .await?;
        for table in ["sys_key_jobs", "sys_key_ring"] {
            manager.drop_table(Table::drop().table(table).if_exists().to_owned()).await?;
        }
        Ok(())
    }
}
