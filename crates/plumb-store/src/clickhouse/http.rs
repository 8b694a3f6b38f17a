//! A minimal client for ClickHouse's HTTP interface: one HTTP/1.0 request per statement (the body
//! is the SQL, the answer is read to the end), so no chunked decoding and no async runtime: the
//! pipeline's thread and the query threads call it as they would a file.

use crate::{Result, StoreError};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The most an answer may hold; a query's answer is bounded by `MAX_GROUPS` long before this.
const MAX_ANSWER_BYTES: u64 = 256 << 20;

/// Where the server is: `HOST:PORT`, the database, and the cluster it is part of, if any.
#[derive(Debug, Clone)]
pub struct Server {
    pub addr: String,
    pub database: String,
    pub cluster: Option<String>,
}

/// A database or cluster name: it is written into statements unquoted.
fn plain_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Server {
    /// `clickhouse://HOST:HTTP_PORT/DB`, or `…/DB?cluster=NAME` for a server of a cluster
    /// (`remote_servers` in its configuration).
    pub fn parse(url: &str) -> Result<Server> {
        let bad = |why: &str| {
            StoreError::Backend(format!(
                "ClickHouse URL `{url}` {why}; expected clickhouse://HOST:HTTP_PORT/DATABASE[?cluster=NAME]"
            ))
        };
        let rest = url.strip_prefix("clickhouse://").ok_or_else(|| bad("does not start with clickhouse://"))?;
        let (addr, database) = rest.split_once('/').ok_or_else(|| bad("names no database"))?;
        let (database, cluster) = match database.split_once('?') {
            None => (database, None),
            Some((database, query)) => match query.strip_prefix("cluster=") {
                Some(name) if plain_name(name) => (database, Some(name.to_owned())),
                _ => return Err(bad("has a query other than cluster=NAME (letters, digits and _)")),
            },
        };
        if addr.contains('@') {
            return Err(StoreError::Backend(
                "ClickHouse URL has credentials, which are not supported; expected clickhouse://HOST:HTTP_PORT/DATABASE"
                    .into(),
            ));
        }
        let port_ok = addr.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !port_ok {
            return Err(bad("has no HOST:PORT"));
        }
        if !plain_name(database) {
            return Err(bad("has a database name other than letters, digits and _"));
        }
        Ok(Server { addr: addr.to_owned(), database: database.to_owned(), cluster })
    }

    /// Runs one statement in the database (or in none, to create it) and returns the answer's
    /// body. `timeout` bounds the whole exchange; the server is told to stop the statement too.
    pub fn run(&self, sql: &str, in_database: bool, timeout: Duration) -> Result<String> {
        self.request(sql, in_database, None, timeout)
    }

    /// [`run`](Self::run) in the database under `query_id` (URL-safe): the server refuses it
    /// while a statement with that id still runs, so an insert whose answer was lost is never
    /// sent again before it has ended.
    pub fn run_once(&self, sql: &str, query_id: &str, timeout: Duration) -> Result<String> {
        self.request(sql, true, Some(query_id), timeout)
    }

    fn request(&self, sql: &str, in_database: bool, query_id: Option<&str>, timeout: Duration) -> Result<String> {
        let fail = |what: String| StoreError::Backend(format!("ClickHouse at {}: {what}", self.addr));
        let addr = self
            .addr
            .to_socket_addrs()
            .map_err(|e| fail(format!("cannot resolve: {e}")))?
            .next()
            .ok_or_else(|| fail("resolves to no address".into()))?;
        let mut stream =
            TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(|e| fail(format!("unreachable: {e}")))?;
        stream.set_read_timeout(Some(timeout)).and_then(|()| stream.set_write_timeout(Some(timeout))).ok();
        let mut params = format!("max_execution_time={}", timeout.as_secs().max(1));
        // One insert is one block, whatever its size up to MAX_INSERT_ROWS: neither cut by rows
        // nor by bytes (see `log.rs`).
        let rows = super::log::MAX_INSERT_ROWS;
        params.push_str(&format!(
            "&max_insert_block_size={rows}&min_insert_block_size_rows={rows}&min_insert_block_size_bytes={}",
            super::log::MIN_BLOCK_BYTES
        ));
        if in_database {
            params.push_str(&format!("&database={}", self.database));
        }
        if let Some(id) = query_id {
            params.push_str(&format!("&query_id={id}"));
        }
        let head = format!("POST /?{params} HTTP/1.0\r\nHost: {}\r\nContent-Length: {}\r\n\r\n", self.addr, sql.len());
        stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.write_all(sql.as_bytes()))
            .map_err(|e| fail(format!("cannot send a statement: {e}")))?;
        let mut answer = Vec::new();
        stream
            .take(MAX_ANSWER_BYTES)
            .read_to_end(&mut answer)
            .map_err(|e| fail(format!("no answer within {timeout:?}: {e}")))?;
        let split = answer.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| {
            let statement: String = sql.chars().take(120).collect();
            fail(format!("answered no HTTP ({} bytes) to `{statement}`", answer.len()))
        })?;
        let status = std::str::from_utf8(&answer[..split]).ok().and_then(|h| h.get(9..12)).unwrap_or("");
        let body = String::from_utf8_lossy(&answer[split + 4..]).into_owned();
        if status != "200" {
            return Err(if body.contains("TIMEOUT_EXCEEDED") {
                StoreError::Timeout(timeout)
            } else {
                fail(body.trim().to_owned())
            });
        }
        #[cfg(feature = "testing")]
        crate::testing::record(sql, &body);
        Ok(body)
    }
}

/// A value as a ClickHouse string literal: quoted, with backslashes and quotes escaped.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            _ => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A value for a `TabSeparated` insert: tabs, newlines and backslashes escaped.
pub fn tsv(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            _ => out.push(c),
        }
    }
}

/// A `TabSeparated` field back to its text (`\N`, NULL, reads as empty).
pub fn untsv(field: &str) -> String {
    if field == "\\N" {
        return String::new();
    }
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('0') => out.push('\0'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_values_escaped_both_ways() {
        let s = Server::parse("clickhouse://127.0.0.1:8123/plumb").unwrap();
        assert_eq!((s.addr.as_str(), s.database.as_str(), s.cluster), ("127.0.0.1:8123", "plumb", None));
        let c = Server::parse("clickhouse://ch1:8123/plumb?cluster=eu_1").unwrap();
        assert_eq!((c.database.as_str(), c.cluster.as_deref()), ("plumb", Some("eu_1")));
        for bad in [
            "http://127.0.0.1:8123/plumb",
            "clickhouse://127.0.0.1:8123",
            "clickhouse://127.0.0.1/plumb",
            "clickhouse://127.0.0.1:8123/plumb;DROP",
            "clickhouse://u:secret@127.0.0.1:8123/plumb",
            "clickhouse://127.0.0.1:8123/plumb?cluster=",
            "clickhouse://127.0.0.1:8123/plumb?cluster=a;DROP",
            "clickhouse://127.0.0.1:8123/plumb?replica=1",
        ] {
            let e = Server::parse(bad).unwrap_err().to_string();
            assert!(!e.contains("secret"), "{e}");
        }
        assert_eq!(quote(r"it's a \ path"), r"'it\'s a \\ path'");
        let odd = "tab\there\nnew \\ line\r\0";
        let mut field = String::new();
        tsv(odd, &mut field);
        assert!(!field.contains(['\t', '\n']), "{field}");
        assert_eq!(untsv(&field), odd);
        assert_eq!(untsv("\\N"), "");
    }
}
