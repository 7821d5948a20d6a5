//! The first system tables: metadata, identity, audit, sequences.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn text(name: &'static str) -> ColumnDef {
    ColumnDef::new(name).text().not_null().to_owned()
}

fn id(name: &'static str) -> ColumnDef {
    ColumnDef::new(name).string_len(36).not_null().to_owned()
}

fn timestamp(name: &'static str) -> ColumnDef {
    ColumnDef::new(name).timestamp_with_time_zone().not_null().to_owned()
}

fn timestamp_null(name: &'static str) -> ColumnDef {
    ColumnDef::new(name).timestamp_with_time_zone().null().to_owned()
}

const TABLES: [&str; 7] =
    ["sys_audit", "sys_sequences", "sys_tokens", "sys_user_roles", "sys_users", "sys_objects", "sys_metadata"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("sys_metadata")
                    .col(ColumnDef::new("key").string_len(64).not_null().primary_key())
                    .col(ColumnDef::new("value").big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table("sys_metadata")
                    .columns(["key", "value"])
                    .values(["version".into(), 0i64.into()])
                    .map_err(|e| DbErr::Custom(e.to_string()))?
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("sys_objects")
                    .col(ColumnDef::new("name").string_len(48).not_null().primary_key())
                    .col(text("definition"))
                    .col(timestamp("created_at"))
                    .col(timestamp("updated_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("sys_users")
                    .col(id("id").primary_key())
                    .col(ColumnDef::new("email").string_len(254).not_null().unique_key())
                    .col(text("password_hash"))
                    .col(text("display_name"))
                    .col(ColumnDef::new("active").boolean().not_null().default(true))
                    .col(ColumnDef::new("manager_id").string_len(36).null())
                    .col(timestamp("created_at"))
                    .col(timestamp("updated_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("sys_user_roles")
                    .col(id("user_id"))
                    .col(ColumnDef::new("role").string_len(48).not_null())
                    .primary_key(Index::create().col("user_id").col("role"))
                    .foreign_key(
                        ForeignKey::create()
                            .from("sys_user_roles", "user_id")
                            .to("sys_users", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("sys_tokens")
                    .col(id("id").primary_key())
                    .col(id("user_id"))
                    .col(ColumnDef::new("kind").string_len(16).not_null())
                    .col(text("name"))
                    .col(ColumnDef::new("token_hash").string_len(64).not_null().unique_key())
                    .col(timestamp("created_at"))
                    .col(timestamp_null("expires_at"))
                    .col(timestamp_null("revoked_at"))
                    .foreign_key(
                        ForeignKey::create()
                            .from("sys_tokens", "user_id")
                            .to("sys_users", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("sys_sequences")
                    .col(ColumnDef::new("object").string_len(48).not_null())
                    .col(ColumnDef::new("field").string_len(48).not_null())
                    .col(ColumnDef::new("next_value").big_integer().not_null())
                    .primary_key(Index::create().col("object").col("field"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("sys_audit")
                    .col(id("id").primary_key())
                    .col(timestamp("at"))
                    .col(ColumnDef::new("actor_id").string_len(36).null())
                    .col(ColumnDef::new("category").string_len(16).not_null())
                    .col(ColumnDef::new("action").string_len(32).not_null())
                    .col(ColumnDef::new("object").string_len(48).null())
                    .col(ColumnDef::new("record_id").string_len(36).null())
                    .col(ColumnDef::new("before_image").text().null())
                    .col(ColumnDef::new("after_image").text().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_sys_audit_record")
                    .table("sys_audit")
                    // Record ids are UUIDs, unique across objects: the id alone finds a record's
                    // history, and the index stays half the size of one led by the object name.
                    .col("record_id")
                    .to_owned(),
            )
            .await?;
        // No index on `at`: ids are UUID v7, so the primary key is already in time order.
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in TABLES {
            manager.drop_table(Table::drop().table(table).if_exists().to_owned()).await?;
        }
        Ok(())
    }
}
