//! Upgrades of what earlier versions stored in object tables, run when the store connects.
//! (System tables have migrations; object tables are derived from metadata, so their stored
//! formats are brought up to date here, by looking at what each table holds.)
//!
//! - Blind indexes were base64 text of 128 bits of HMAC until 2026-11-30; they are now the
//!   first 64 of those bits as an integer. The integer is read off the old text, so no key is
//!   needed and every value keeps matching; the column's indexes (unique ones included) are
//!   rebuilt on the new column. (Text that is no blind index is left empty, and found again
//!   by the next key rotation, which indexes values whose index is missing.)

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait};

use tessera_metadata::{BLIND_INDEX_SUFFIX, OBJECT_TABLE_PREFIX};

use super::StoreResult;
use crate::crypto::blind_index_from_legacy;

/// Rewrites every blind index column still holding text as 64-bit integers. Does nothing
/// (one catalogue query) once every column is converted.
pub(super) async fn blind_indexes_to_integers(db: &DatabaseConnection, backend: DbBackend) -> StoreResult<()> {
    for (table, column) in text_blind_index_columns(db, backend).await? {
        let converted = match backend {
            DbBackend::Postgres => convert_postgres(db, &table, &column).await?,
            _ => convert_sqlite(db, &table, &column).await?,
        };
        tracing::info!(table, column, converted, "blind index column converted to 64-bit integers");
    }
    Ok(())
}

/// `(table, column)` of the blind index columns of object tables whose type is not an integer.
async fn text_blind_index_columns(db: &DatabaseConnection, backend: DbBackend) -> StoreResult<Vec<(String, String)>> {
    // `_` matches any character in LIKE: escaped, the patterns match the names exactly.
    let table = format!("{}%", OBJECT_TABLE_PREFIX.replace('_', "\\_"));
    let column = format!("%{}", BLIND_INDEX_SUFFIX.replace('_', "\\_"));
    let sql = match backend {
        DbBackend::Postgres => format!(
            "SELECT table_name::text, column_name::text FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name LIKE '{table}'
               AND column_name LIKE '{column}' AND data_type <> 'bigint'
             ORDER BY 1, 2"
        ),
        _ => format!(
            "SELECT m.name, c.name FROM sqlite_master m JOIN pragma_table_info(m.name) c
             WHERE m.type = 'table' AND m.name LIKE '{table}' ESCAPE '\\'
               AND c.name LIKE '{column}' ESCAPE '\\' AND instr(lower(c.type), 'int') = 0
             ORDER BY 1, 2"
        ),
    };
    let rows = db.query_all_raw(Statement::from_string(backend, sql)).await?;
    rows.iter().map(|row| Ok((row.try_get_by_index(0)?, row.try_get_by_index(1)?))).collect()
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// PostgreSQL changes the column's type in place, computing each integer from its text, and
/// rebuilds the column's indexes itself. Text that is no blind index becomes NULL.
async fn convert_postgres(db: &DatabaseConnection, table: &str, column: &str) -> StoreResult<u64> {
    let (t, c) = (quoted(table), quoted(column));
    let sql = format!(
        "ALTER TABLE {t} ALTER COLUMN {c} TYPE bigint USING (CASE WHEN {c} ~ '^[A-Za-z0-9+/]{{22}}$' \
         THEN ('x' || encode(substring(decode({c} || '==', 'base64') FROM 1 FOR 8), 'hex'))::bit(64)::bigint END)"
    );
    db.execute_unprepared(&sql).await?;
    let count = format!("SELECT COUNT(*) FROM {t} WHERE {c} IS NOT NULL");
    let row = db.query_one_raw(Statement::from_string(DbBackend::Postgres, count)).await?;
    Ok(row.map(|r| r.try_get_by_index::<i64>(0)).transpose()?.unwrap_or(0) as u64)
}

/// SQLite cannot change a column's type: the integers go into a new column, which then takes
/// the old one's name and indexes, all in one transaction.
async fn convert_sqlite(db: &DatabaseConnection, table: &str, column: &str) -> StoreResult<u64> {
    let backend = DbBackend::Sqlite;
    let (t, c) = (quoted(table), quoted(column));
    let fresh = format!("{column}_int");
    let f = quoted(&fresh);
    let txn = db.begin().await?;
    let index_sql = Statement::from_sql_and_values(
        backend,
        "SELECT i.name, i.sql FROM sqlite_master i WHERE i.type = 'index' AND i.tbl_name = ? AND i.sql IS NOT NULL \
         AND EXISTS (SELECT 1 FROM pragma_index_info(i.name) x WHERE x.name = ?)",
        [table.into(), column.into()],
    );
    let mut indexes: Vec<String> = Vec::new();
    for row in txn.query_all_raw(index_sql).await? {
        let name: String = row.try_get_by_index(0)?;
        indexes.push(row.try_get_by_index(1)?);
        txn.execute_unprepared(&format!("DROP INDEX {}", quoted(&name))).await?;
    }
    txn.execute_unprepared(&format!("ALTER TABLE {t} ADD COLUMN {f} INTEGER NULL")).await?;
    let select = format!("SELECT rowid, {c} FROM {t} WHERE {c} IS NOT NULL");
    let rows = txn.query_all_raw(Statement::from_string(backend, select)).await?;
    let update = format!("UPDATE {t} SET {f} = ? WHERE rowid = ?");
    let mut converted = 0;
    for row in &rows {
        let rowid: i64 = row.try_get_by_index(0)?;
        let text: Option<String> = row.try_get_by_index(1)?;
        if let Some(index) = text.as_deref().and_then(blind_index_from_legacy) {
            txn.execute_raw(Statement::from_sql_and_values(backend, &update, [index.into(), rowid.into()])).await?;
            converted += 1;
        }
    }
    if converted < rows.len() as u64 {
        tracing::warn!(
            table,
            column,
            values = rows.len() as u64 - converted,
            "values that were not blind indexes are left empty; `tessera keys rotate` indexes them again"
        );
    }
    txn.execute_unprepared(&format!("ALTER TABLE {t} DROP COLUMN {c}")).await?;
    txn.execute_unprepared(&format!("ALTER TABLE {t} RENAME COLUMN {f} TO {c}")).await?;
    for sql in indexes {
        txn.execute_unprepared(&sql).await?;
    }
    txn.commit().await?;
    Ok(converted)
}
