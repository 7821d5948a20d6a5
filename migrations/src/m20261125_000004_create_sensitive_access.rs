//! The sensitive access log: who saw which sensitive fields of which records unmasked, when, how
//! and in which request. One row per read (a list page is one read of many records), and an
//! index by record: per record, the ids of the reads of it that one flush of the log wrote. So
//! "who read this record" is an index lookup, and logging a page of fifty records that people
//! keep reading costs one row per read plus one per record per flush, not fifty per read.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("sys_sensitive_reads")
                    .col(ColumnDef::new("id").big_integer().not_null().auto_increment().primary_key())
                    .col(ColumnDef::new("at").timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new("user_id").string_len(36).not_null())
                    .col(ColumnDef::new("object").string_len(64).not_null())
                    // Comma-separated api names of the fields shown unmasked.
                    .col(ColumnDef::new("fields").text().not_null())
                    .col(ColumnDef::new("via").string_len(16).not_null())
                    .col(ColumnDef::new("request_id").string_len(64).null())
                    // Comma-separated ids of the records read.
                    .col(ColumnDef::new("record_ids").text().not_null())
                    .to_owned(),
            )
            .await?;
        for (name, column) in [("ix_sys_sensitive_reads_user", "user_id"), ("ix_sys_sensitive_reads_object", "object")]
        {
            manager
                .create_index(Index::create().name(name).table("sys_sensitive_reads").col(column).col("id").to_owned())
                .await?;
        }
        let mut records = Table::create();
        records
            .table("sys_sensitive_read_records")
            .col(ColumnDef::new("record_id").string_len(36).not_null())
            // The first of the reads below: the key's second half, and where paging starts.
            .col(ColumnDef::new("read_id").big_integer().not_null())
            // The ids of the reads of this record written in one flush, comma-separated (since
            // 2026-12-01 as runs of consecutive ids where they are: `4-9,12`).
            .col(ColumnDef::new("read_ids").text().not_null())
            .primary_key(Index::create().col("record_id").col("read_id"));
        if manager.get_database_backend() == sea_orm_migration::sea_orm::DatabaseBackend::Sqlite {
            // Stored in its key's order: no separate rowid B-tree.
            records.extra("WITHOUT ROWID");
        }
        manager.create_table(records.to_owned()).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table("sys_sensitive_read_records").if_exists().to_owned()).await?;
        manager.drop_table(Table::drop().table("sys_sensitive_reads").if_exists().to_owned()).await
    }
}
