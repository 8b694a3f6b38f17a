//! Exactly-once inserts without transactions. A table has no partition key, so one `INSERT` is one
//! part, written whole or not at all (the store asks for blocks of up to [`MAX_INSERT_ROWS`] rows
//! and [`MIN_BLOCK_BYTES`], so it is one block too). Each insert runs under a query id made of
//! its database, table and writer, so one whose answer was lost cannot be sent again (for any
//! position) while it still runs on the server. Each insert holds its rows and a marker row: site 0, which no
//! site has, with the writer's name in `_writer` and the queue position the insert brings the
//! writer to in `_pos`. A writer's position in a table is the largest of its markers there, so
//! several writers insert side by side, and an insert whose answer was lost is looked up before
//! it is sent again.

use super::WRITE_TIMEOUT;
use super::http::{Server, quote, tsv};
use crate::{Result, StoreError};

/// The most rows one insert may hold and still be one block (sent as `max_insert_block_size` and
/// `min_insert_block_size_rows`).
pub const MAX_INSERT_ROWS: usize = 1 << 24;
/// The most bytes of text one insert may hold.
pub const MAX_INSERT_BYTES: usize = 1 << 30;
/// Sent as `min_insert_block_size_bytes`: far above what `MAX_INSERT_BYTES` of text takes in
/// memory, so that squashing never closes a block within one insert (it only merges blocks).
pub const MIN_BLOCK_BYTES: u64 = 1 << 40;

/// Rows for one insert into a table, as ClickHouse's TabSeparated lines, each ending with the
/// table's `_writer` and `_pos` values for them.
pub struct TsvRows {
    body: String,
    /// What ends each line: `\t<writer>\t<position>\n`.
    end: String,
    position: u64,
    rows: usize,
}

impl TsvRows {
    /// Rows that carry `writer` and `position`, as `events`' rows do.
    pub(crate) fn marked(writer: &str, position: u64) -> TsvRows {
        let mut end = String::from("\t");
        tsv(writer, &mut end);
        TsvRows { body: String::new(), end: format!("{end}\t{position}\n"), position, rows: 0 }
    }

    /// Rows that carry no writer or position, as the rollups' rows do (they are summed).
    pub(crate) fn plain(position: u64) -> TsvRows {
        TsvRows { body: String::new(), end: "\t\t0\n".to_owned(), position, rows: 0 }
    }

    /// One row's values, in table order up to `_writer`.
    pub fn push<'a>(&mut self, values: impl IntoIterator<Item = plumb_core::schema::Value<'a>>) {
        use plumb_core::schema::Value;
        let mut first = true;
        for v in values {
            if !std::mem::take(&mut first) {
                self.body.push('\t');
            }
            match v {
                Value::Int(i) => self.body.push_str(&i.to_string()),
                Value::Text(t) => tsv(&t, &mut self.body),
                Value::Null => self.body.push_str("\\N"),
            }
        }
        self.end_row();
    }

    /// One row whose values up to `_writer` are already TabSeparated text (as ClickHouse answers).
    pub(crate) fn push_line(&mut self, line: &str) {
        self.body.push_str(line);
        self.end_row();
    }

    /// The row begun in `body()`: writes its end.
    pub(crate) fn end_row(&mut self) {
        self.body.push_str(&self.end);
        self.rows += 1;
    }

    /// Where a row is written field by field (then [`end_row`](Self::end_row)).
    pub(crate) fn body(&mut self) -> &mut String {
        &mut self.body
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }
}

/// One writer's inserts into one table (see the module's notes).
pub struct Log {
    /// Where it inserts: on a cluster the server's local table, whose markers it also reads (the
    /// server it is connected to has every insert it made, whatever the replication lag).
    table: String,
    /// `INSERT INTO table (columns) FORMAT TabSeparated` and a line break.
    head: String,
    /// The marker row up to its `_writer`.
    marker: String,
    pub writer: String,
    pub committed: u64,
    /// Where the writer started when it had no marker here (a worker inherits the position
    /// `plumb migrate` handed the queue over at).
    pub start: u64,
    /// Whether the writer had markers here when the log was opened.
    pub has_markers: bool,
    /// An insert failed with its outcome unknown: the next one looks first.
    unsure: bool,
}

impl Log {
    /// The log of `writer` in `table` (whose columns are `columns`, ending with `_writer` and
    /// `_pos`), with its committed position read back; `marker` is the marker row's values
    /// before `_writer`, TabSeparated.
    pub fn open(server: &Server, table: String, columns: &[String], marker: String, writer: &str) -> Result<Log> {
        let head = format!("INSERT INTO {table} ({}) FORMAT TabSeparated\n", columns.join(", "));
        let mut log = Log {
            table,
            head,
            marker,
            writer: writer.to_owned(),
            committed: 0,
            start: 0,
            has_markers: false,
            unsure: false,
        };
        let stored = log.stored(server)?;
        (log.committed, log.has_markers) = (stored.unwrap_or(0), stored.is_some());
        Ok(log)
    }

    /// The writer's largest marker in the table, `None` if it has none.
    pub fn stored(&self, server: &Server) -> Result<Option<u64>> {
        markers(server, &self.table, &self.writer)
    }

    /// Reads the position back if the last insert's outcome is unknown.
    pub fn settle(&mut self, server: &Server) -> Result<()> {
        if self.unsure {
            self.committed = self.stored(server)?.unwrap_or(self.start);
            self.unsure = false;
        }
        Ok(())
    }

    /// Inserts `rows` and the marker of their position, once: nothing if the position is reached.
    pub fn append(&mut self, server: &Server, rows: &TsvRows) -> Result<()> {
        if rows.len() >= MAX_INSERT_ROWS {
            return Err(StoreError::Backend(format!(
                "an insert of {} rows into {} is more than one ClickHouse block holds ({MAX_INSERT_ROWS})",
                rows.len(),
                self.table
            )));
        }
        self.settle(server)?;
        if self.committed >= rows.position {
            return Ok(());
        }
        let mut marker = TsvRows::marked(&self.writer, rows.position);
        marker.body().push_str(&self.marker);
        marker.end_row();
        let body = format!("{}{}{}", self.head, rows.body, marker.body);
        if body.len() >= MAX_INSERT_BYTES {
            return Err(StoreError::Backend(format!(
                "an insert of {} bytes into {} is more than one ClickHouse block holds ({MAX_INSERT_BYTES})",
                body.len(),
                self.table
            )));
        }
        // A writer has one insert at a time in each table: whatever the position it was for, an
        // insert still running is never sent again beside it.
        let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
        let query_id = format!("plumb-{}-{}-{}", hex(&server.database), hex(&self.table), hex(&self.writer));
        match server.run_once(&body, &query_id, WRITE_TIMEOUT) {
            Ok(_) => {
                self.committed = rows.position;
                Ok(())
            }
            Err(e) => {
                self.unsure = true;
                Err(e)
            }
        }
    }
}

/// The largest marker of `writer` in `table`, `None` if it has none.
pub fn markers(server: &Server, table: &str, writer: &str) -> Result<Option<u64>> {
    let answer = server.run(
        &format!("SELECT count(), max(_pos) FROM {table} WHERE site_id = 0 AND _writer = {}", quote(writer)),
        true,
        WRITE_TIMEOUT,
    )?;
    let mut fields = answer.split_whitespace().map(str::parse::<u64>);
    match (fields.next(), fields.next()) {
        (Some(Ok(0)), Some(Ok(_))) => Ok(None),
        (Some(Ok(_)), Some(Ok(max))) => Ok(Some(max)),
        _ => Err(StoreError::Backend(format!("ClickHouse answered `{answer}` for a position"))),
    }
}
