//! DDL derived from object definitions: tables, columns, indexes and foreign keys.
//!
//! Lookups are real foreign keys on PostgreSQL (`ON DELETE SET NULL`). SQLite cannot drop or
//! retype a column that takes part in a foreign key without rebuilding the table with
//! enforcement switched off outside any transaction, which would break the rule that a
//! metadata change is one transaction; there the store enforces lookup integrity itself (writes
//! are serialised, ids are checked in the writing transaction, and destroying a record clears
//! references to it).

use sea_orm::DbBackend;
use sea_query::{ColumnDef, ForeignKey, ForeignKeyAction, Index, Table, TableAlterStatement, TableCreateStatement};
use sha2::{Digest, Sha256};
use tessera_metadata::{FieldDefinition, FieldType, IndexDefinition, ObjectDefinition};

use super::codec::{Storage, storage};

/// Index and constraint names must fit PostgreSQL's 63-byte limit; long ones end in a hash.
pub fn constraint_name(prefix: &str, table: &str, column: &str) -> String {
    let name = format!("{prefix}_{table}_{column}");
    if name.len() <= 60 {
        return name;
    }
    let digest = Sha256::digest(name.as_bytes());
    let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{}_{hash}", &name[..50])
}

fn column_def(name: &str, st: Storage, field: Option<&FieldDefinition>) -> ColumnDef {
    let mut c = ColumnDef::new(name.to_string());
    match st {
        Storage::Text => match field.map(|f| f.field_type) {
            Some(FieldType::LongText) => c.text(),
            Some(FieldType::Lookup) | None => c.string_len(36),
            Some(_) => c.text(),
        },
        Storage::Int => c.big_integer(),
        Storage::Bool => c.boolean(),
        Storage::Date => c.date(),
        Storage::DateTime => c.timestamp_with_time_zone(),
        Storage::Json => c.json_binary(),
    };
    c.null();
    c
}

/// The column definition of a field (always nullable: `required` is a write rule, so adding a
/// required field to a table with rows never fails).
pub fn field_column(field: &FieldDefinition, column: &str) -> ColumnDef {
    column_def(column, storage(field), Some(field))
}

fn lookup_fk(table: &str, field: &FieldDefinition) -> Option<sea_query::ForeignKeyCreateStatement> {
    let target = field.target.as_ref()?;
    let column = field.column();
    Some(
        ForeignKey::create()
            .name(constraint_name("fk", table, &column))
            .from(table.to_string(), column)
            .to(target.table(), "id")
            .on_delete(ForeignKeyAction::SetNull)
            .to_owned(),
    )
}

/// `CREATE TABLE obj_<name>` with system columns and one column per field.
pub fn create_table(object: &ObjectDefinition, backend: DbBackend) -> TableCreateStatement {
    let table = object.table();
    let mut t = Table::create();
    t.table(table.clone())
        .col(ColumnDef::new("id").string_len(36).not_null().primary_key())
        .col(ColumnDef::new("owner_id").string_len(36).not_null())
        .col(ColumnDef::new("created_at").timestamp_with_time_zone().not_null())
        .col(ColumnDef::new("updated_at").timestamp_with_time_zone().not_null())
        .col(ColumnDef::new("created_by").string_len(36).not_null())
        .col(ColumnDef::new("updated_by").string_len(36).not_null())
        .col(ColumnDef::new("version").big_integer().not_null().default(1))
        .col(ColumnDef::new("deleted_at").timestamp_with_time_zone().null());
    for f in &object.fields {
        t.col(field_column(f, &f.column()));
        if f.is_searchable() {
            t.col(blind_index_column(f));
        }
        if backend == DbBackend::Postgres
            && let Some(mut fk) = lookup_fk(&table, f)
        {
            t.foreign_key(&mut fk);
        }
    }
    t.to_owned()
}

/// Indexes every table has (the owner, for row scopes), and those its fields ask for. Ids are
/// UUID v7, so the primary key already orders records by creation time; `created_at` gets no
/// index of its own, which keeps every insert one B-tree lighter.
pub fn create_indexes(object: &ObjectDefinition) -> Vec<sea_query::IndexCreateStatement> {
    let table = object.table();
    let mut out = vec![
        Index::create().name(constraint_name("ix", &table, "owner_id")).table(table.clone()).col("owner_id").to_owned(),
    ];
    for f in &object.fields {
        out.extend(field_index(&table, f, &f.column()));
    }
    out.extend(object.indexes.iter().map(|ix| declared_index(&table, object, ix)));
    out
}

/// The index an admin declared over several fields.
pub fn declared_index(
    table: &str,
    object: &ObjectDefinition,
    index: &IndexDefinition,
) -> sea_query::IndexCreateStatement {
    let mut ix = Index::create();
    ix.name(constraint_name("cx", table, index.name.as_str())).table(table.to_string());
    for column in index.columns(object) {
        ix.col(column);
    }
    if index.unique {
        ix.unique();
    }
    ix.to_owned()
}

/// Drops a declared index.
pub fn drop_declared_index(table: &str, index: &IndexDefinition) -> String {
    format!("DROP INDEX IF EXISTS \"{}\"", constraint_name("cx", table, index.name.as_str()))
}

/// The column of a searchable encrypted field's blind index.
pub fn blind_index_column(field: &FieldDefinition) -> ColumnDef {
    let mut c = ColumnDef::new(field.blind_index_column());
    c.big_integer().null();
    c
}

/// The index a field asks for (unique, indexed, or any lookup), if any. An encrypted field's
/// ciphertext is never indexed: a searchable one has its index (unique if the field is) on
/// its blind index column.
pub fn field_index(table: &str, field: &FieldDefinition, column: &str) -> Option<sea_query::IndexCreateStatement> {
    if field.is_encrypted() {
        if !field.is_searchable() {
            return None;
        }
        let column = field.blind_index_column();
        let mut ix = Index::create();
        ix.table(table.to_string()).col(column.clone());
        if field.unique {
            ix.name(constraint_name("ux", table, &column)).unique();
        } else {
            ix.name(constraint_name("ix", table, &column));
        }
        return Some(ix.to_owned());
    }
    if field.unique {
        Some(
            Index::create()
                .name(constraint_name("ux", table, column))
                .table(table.to_string())
                .col(column.to_string())
                .unique()
                .to_owned(),
        )
    } else if field.indexed || field.field_type == FieldType::Lookup {
        Some(
            Index::create()
                .name(constraint_name("ix", table, column))
                .table(table.to_string())
                .col(column.to_string())
                .to_owned(),
        )
    } else {
        None
    }
}

/// Drops whatever index `field_index` may have created for a column.
pub fn drop_field_indexes(table: &str, column: &str, backend: DbBackend) -> Vec<String> {
    ["ux", "ix"]
        .iter()
        .map(|p| {
            let name = constraint_name(p, table, column);
            match backend {
                DbBackend::Postgres => format!("DROP INDEX IF EXISTS \"{name}\""),
                _ => format!("DROP INDEX IF EXISTS \"{name}\""),
            }
        })
        .collect()
}

/// `ALTER TABLE … ADD COLUMN` of a blind index column.
pub fn add_blind_index_column(table: &str, field: &FieldDefinition) -> TableAlterStatement {
    Table::alter().table(table.to_string()).add_column(blind_index_column(field)).to_owned()
}

/// `ALTER TABLE … ADD COLUMN` for one field (one change per statement, as SQLite requires).
pub fn add_column(table: &str, field: &FieldDefinition, column: &str) -> TableAlterStatement {
    Table::alter().table(table.to_string()).add_column(field_column(field, column)).to_owned()
}

/// The foreign key of a lookup added to an existing table (PostgreSQL only).
pub fn add_lookup_fk(table: &str, field: &FieldDefinition) -> Option<sea_query::ForeignKeyCreateStatement> {
    let target = field.target.as_ref()?;
    let column = field.column();
    Some(
        ForeignKey::create()
            .name(constraint_name("fk", table, &column))
            .from(table.to_string(), column)
            .to(target.table(), "id")
            .on_delete(ForeignKeyAction::SetNull)
            .to_owned(),
    )
}

pub fn drop_column(table: &str, column: &str) -> TableAlterStatement {
    Table::alter().table(table.to_string()).drop_column(column.to_string()).to_owned()
}

pub fn rename_column(table: &str, from: &str, to: &str) -> TableAlterStatement {
    Table::alter().table(table.to_string()).rename_column(from.to_string(), to.to_string()).to_owned()
}

pub fn drop_table(table: &str) -> sea_query::TableDropStatement {
    Table::drop().table(table.to_string()).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_query::{PostgresQueryBuilder, SqliteQueryBuilder};
    use tessera_metadata::{FieldName, ObjectName};

    fn fixture() -> ObjectDefinition {
        let mut account = FieldDefinition::new(FieldName::new("account").unwrap(), "客户", FieldType::Lookup);
        account.target = Some(ObjectName::new("account").unwrap());
        let mut email = FieldDefinition::new(FieldName::new("email").unwrap(), "Email", FieldType::Email);
        email.unique = true;
        let mut amount = FieldDefinition::new(FieldName::new("amount").unwrap(), "Amount", FieldType::Currency);
        amount.indexed = true;
        ObjectDefinition {
            name: ObjectName::new("contact").unwrap(),
            plural_name: ObjectName::new("contacts").unwrap(),
            label: "联系人".into(),
            plural_label: "联系人".into(),
            description: None,
            fields: vec![
                account,
                email,
                amount,
                FieldDefinition::new(FieldName::new("tags").unwrap(), "Tags", FieldType::Json),
            ],
            scripts: vec![],
            indexes: vec![],
        }
    }

    #[test]
    fn generates_table_ddl_for_both_backends() {
        let o = fixture();
        let mut out = vec![
            create_table(&o, DbBackend::Sqlite).to_string(SqliteQueryBuilder),
            create_table(&o, DbBackend::Postgres).to_string(PostgresQueryBuilder),
        ];
        out.extend(create_indexes(&o).iter().map(|i| i.to_string(PostgresQueryBuilder)));
        insta::assert_snapshot!(out.join(";\n"));
    }

    #[test]
    fn shortens_long_constraint_names() {
        let long = constraint_name("ux", &"t".repeat(52), &"c".repeat(48));
        assert!(long.len() <= 63, "{long}");
        assert_ne!(long, constraint_name("ux", &"t".repeat(52), &"d".repeat(48)));
    }
}
