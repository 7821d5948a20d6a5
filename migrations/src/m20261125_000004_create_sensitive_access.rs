//! The sensitive access log: who saw which sensitive fields of which record unmasked, when,
//! how and in which request. One row per record per read; written in batches.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("sys_sensitive_access")
                    .col(ColumnDef::new("id").big_integer().not_null().auto_increment().primary_key())
                    .col(ColumnDef::new("at").timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new("user_id").string_len(36).not_null())
                    .col(ColumnDef::new("object").string_len(64).not_null())
                    .col(ColumnDef::new("record_id").string_len(36).not_null())
                    // Comma-separated api names of the fields shown unmasked.
                    .col(ColumnDef::new("fields").text().not_null())
                    .col(ColumnDef::new("via").string_len(16).not_null())
                    .col(ColumnDef::new("request_id").string_len(64).null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_sys_sensitive_access_record")
                    .table("sys_sensitive_access")
                    .col("object")
                    .col("record_id")
                    .col("id")
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_sys_sensitive_access_user")
                    .table("sys_sensitive_access")
                    .col("user_id")
                    .col("id")
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table("sys_sensitive_access").if_exists().to_owned()).await
    }
}
