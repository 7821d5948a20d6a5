//! Identity and access: roles, per-role field permissions, the manager hierarchy as a closure
//! table (so the `TEAM` scope is one indexed subquery however deep the hierarchy), and the
//! per-account login lockout.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn name(column: &'static str) -> ColumnDef {
    ColumnDef::new(column).string_len(48).not_null().to_owned()
}

fn id(column: &'static str) -> ColumnDef {
    ColumnDef::new(column).string_len(36).not_null().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("sys_roles")
                    .col(name("name").primary_key())
                    .col(ColumnDef::new("label").text().not_null())
                    .col(ColumnDef::new("description").text().null())
                    .col(ColumnDef::new("created_at").timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new("updated_at").timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        let now = chrono::Utc::now();
        manager
            .exec_stmt(
                Query::insert()
                    .into_table("sys_roles")
                    .columns(["name", "label", "description", "created_at", "updated_at"])
                    .values([
                        "admin".into(),
                        "Administrator".into(),
                        "Built in: every object, field and record.".into(),
                        now.into(),
                        now.into(),
                    ])
                    .map_err(|e| DbErr::Custom(e.to_string()))?
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("sys_field_permissions")
                    .col(name("role"))
                    .col(name("object"))
                    .col(name("field"))
                    .col(ColumnDef::new("access").string_len(16).not_null())
                    .primary_key(Index::create().col("role").col("object").col("field"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("sys_user_closure")
                    .col(id("ancestor_id"))
                    .col(id("descendant_id"))
                    .col(ColumnDef::new("depth").integer().not_null())
                    .primary_key(Index::create().col("ancestor_id").col("descendant_id"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_sys_user_closure_descendant")
                    .table("sys_user_closure")
                    .col("descendant_id")
                    .to_owned(),
            )
            .await?;
        // Every existing user is their own team of one (managers did not exist before).
        manager
            .get_connection()
            .execute_unprepared(
                "INSERT INTO sys_user_closure (ancestor_id, descendant_id, depth) SELECT id, id, 0 FROM sys_users",
            )
            .await?;
        // SQLite takes one column per ALTER TABLE.
        manager
            .alter_table(
                Table::alter()
                    .table("sys_users")
                    .add_column(ColumnDef::new("failed_logins").integer().not_null().default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("sys_users")
                    .add_column(ColumnDef::new("locked_until").timestamp_with_time_zone().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(Index::create().name("ix_sys_users_manager").table("sys_users").col("manager_id").to_owned())
            .await?;
        manager
            .create_index(Index::create().name("ix_sys_tokens_user").table("sys_tokens").col("user_id").to_owned())
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name("ix_sys_tokens_user").table("sys_tokens").to_owned()).await?;
        manager.drop_index(Index::drop().name("ix_sys_users_manager").table("sys_users").to_owned()).await?;
        for column in ["locked_until", "failed_logins"] {
            manager.alter_table(Table::alter().table("sys_users").drop_column(column).to_owned()).await?;
        }
        for table in ["sys_user_closure", "sys_field_permissions", "sys_roles"] {
            manager.drop_table(Table::drop().table(table).if_exists().to_owned()).await?;
        }
        Ok(())
    }
}
