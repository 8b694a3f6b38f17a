//! SQLite as the embedded stores (metadata, queue) use it: one way to open a file — WAL, a sync
//! before every commit returns, deleted content zeroed, a busy timeout for the other process on
//! the same file — and numbered migrations, whose count is recorded in the file
//! (`PRAGMA user_version`), applied together in one transaction: a file is upgraded whole or not
//! at all.

use rusqlite::Connection;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("{path} has schema version {found}, newer than this Plumb knows ({known}): run a newer Plumb")]
    Newer { path: String, found: u32, known: u32 },
    #[error("{path}: migration {version} failed: {source}")]
    Migration { path: String, version: u32, source: rusqlite::Error },
}

/// Opens (or creates) the database and brings its schema up to `migrations.len()`, where
/// `migrations[i]` is the SQL of version `i + 1`.
pub fn open(path: &Path, migrations: &[&str]) -> Result<Connection, Error> {
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    // secure_delete zeroes deleted content in place; it is a per-connection setting.
    conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA secure_delete=ON;")?;
    migrate(&mut conn, &path.display().to_string(), migrations)?;
    Ok(conn)
}

/// Writes a copy of the database at `path`, as it is at one instant, to the new file `dest`
/// (`VACUUM INTO`: one read transaction, so writers of other processes go on meanwhile).
pub fn copy(path: &Path, dest: &Path) -> Result<(), Error> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let dest = dest.to_str().ok_or(rusqlite::Error::InvalidPath(dest.to_owned()))?;
    conn.execute("VACUUM INTO ?1", [dest])?;
    Ok(())
}

fn migrate(conn: &mut Connection, path: &str, migrations: &[&str]) -> Result<u32, Error> {
    let known = migrations.len() as u32;
    // An exclusive transaction: two processes opening one file migrate it once.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)?;
    let found: u32 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > known {
        return Err(Error::Newer { path: path.to_owned(), found, known });
    }
    for (i, sql) in migrations.iter().enumerate().skip(found as usize) {
        let version = i as u32 + 1;
        tx.execute_batch(sql).map_err(|source| Error::Migration { path: path.to_owned(), version, source })?;
        tx.execute_batch(&format!("PRAGMA user_version = {version}"))?;
    }
    tx.commit()?;
    Ok(known)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_in_order_and_a_newer_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("plumb-sqlite-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.db");
        let v1 = "CREATE TABLE t (a INTEGER);";
        let v2 = "ALTER TABLE t ADD COLUMN b TEXT; INSERT INTO t VALUES (1, 'x');";
        let conn = open(&path, &[v1]).unwrap();
        conn.execute("INSERT INTO t VALUES (7)", []).unwrap();
        drop(conn);
        let conn = open(&path, &[v1, v2]).unwrap();
        let rows: i64 = conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 2, "the old row kept, version 2 ran once");
        drop(conn);
        let conn = open(&path, &[v1, v2]).unwrap();
        let rows: i64 = conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 2, "nothing runs twice");
        drop(conn);
        assert!(matches!(open(&path, &[v1]), Err(Error::Newer { found: 2, known: 1, .. })));
        let bad = "ALTER TABLE nope ADD COLUMN c TEXT;";
        let e = open(&path, &[v1, v2, bad]).unwrap_err().to_string();
        assert!(e.contains("migration 3 failed"), "{e}");
        let conn = open(&path, &[v1, v2]).unwrap();
        let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, 2, "a failed migration leaves the file as it was");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
