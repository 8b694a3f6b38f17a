//! How `plumb import` stores imported rows in an embedded install's event store, which only one
//! process may open: through files in the data directory's `import/` folder. The tool writes an
//! import's rows to `<id>.rows` (renamed into place once whole) or asks for its removal with
//! `<id>.remove`; the process holding the store (the server's pipeline, between two commits, or
//! the tool itself when no server runs) stores or deletes them in one transaction and answers
//! with `<id>.rows.done` / `<id>.remove.done`, or `.failed` holding the error. The rows hold sums per day and value
//! only: nothing about any visitor.

use plumb_query::imported::ImportedRow;
use plumb_store::{DuckStore, EventWriter, StoreError};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct ImportInbox {
    dir: PathBuf,
}

/// What the tool asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Request {
    Store,
    Remove,
}

impl Request {
    fn extension(self) -> &'static str {
        match self {
            Request::Store => "rows",
            Request::Remove => "remove",
        }
    }
}

impl ImportInbox {
    pub fn new(data_dir: &Path) -> ImportInbox {
        ImportInbox { dir: data_dir.join("import") }
    }

    fn path(&self, id: u32, extension: &str) -> PathBuf {
        self.dir.join(format!("{id}.{extension}"))
    }

    /// Where the tool writes import `id`'s rows before handing them over with
    /// [`store`](Self::store).
    pub fn rows_part(&self, id: u32) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(&self.dir)?;
        Ok(self.path(id, "rows.part"))
    }

    /// The server's side: carries out every request waiting in the folder.
    pub fn serve(&self, writer: &mut impl EventWriter) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((id, request)) = parse_name(&name) else { continue };
            let outcome = self.carry_out(writer, id, request);
            if let Err(e) = &outcome {
                tracing::warn!(import = id, "cannot {} imported rows: {e}", request.extension());
            }
            self.answer(id, request, outcome);
        }
    }

    fn carry_out(&self, writer: &mut impl EventWriter, id: u32, request: Request) -> Result<u64, StoreError> {
        match request {
            Request::Store => {
                let path = self.path(id, "rows");
                let file = std::fs::File::open(&path).map_err(|e| io(&path, e))?;
                let mut rows = std::io::BufReader::new(file).lines().enumerate().map(|(i, line)| {
                    let line = line.map_err(|e| io(&path, e))?;
                    ImportedRow::decode(&line)
                        .map_err(|e| StoreError::Backend(format!("{}, line {}: {e}", path.display(), i + 1)))
                });
                writer.put_import(id, &mut rows)
            }
            Request::Remove => writer.remove_import(id).map(|()| 0),
        }
    }

    /// Where the outcome of a request goes: `<id>.<request>.done` or `.failed`.
    fn answer_path(&self, id: u32, request: Request, done: bool) -> PathBuf {
        self.path(id, &format!("{}.{}", request.extension(), if done { "done" } else { "failed" }))
    }

    /// Records the outcome (which the tool waits for) and drops the request.
    fn answer(&self, id: u32, request: Request, outcome: Result<u64, StoreError>) {
        let (done, text) = match outcome {
            Ok(n) => (true, n.to_string()),
            Err(e) => (false, e.to_string()),
        };
        let path = self.answer_path(id, request, done);
        let part = PathBuf::from(format!("{}.part", path.display()));
        let written = std::fs::write(&part, text).and_then(|()| std::fs::rename(&part, &path));
        if let Err(e) = written {
            tracing::warn!(import = id, "cannot answer the import request in {}: {e}", self.dir.display());
        }
        let _ = std::fs::remove_file(self.path(id, request.extension()));
    }

    /// Stores import `id`'s rows (written to [`rows_part`](Self::rows_part)) in the DuckDB store
    /// at `store`: by the server holding it, waited for up to `wait`, or by this process when no
    /// server does. Returns how many rows were stored.
    pub fn store(&self, store: &Path, id: u32, wait: Duration) -> Result<u64, StoreError> {
        std::fs::rename(self.path(id, "rows.part"), self.path(id, "rows")).map_err(|e| io(&self.dir, e))?;
        let outcome = self.ask(store, id, Request::Store, wait);
        let _ = std::fs::remove_file(self.path(id, "rows"));
        outcome
    }

    /// Deletes import `id`'s rows from the DuckDB store at `store`, as [`store`](Self::store).
    pub fn remove(&self, store: &Path, id: u32, wait: Duration) -> Result<(), StoreError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| io(&self.dir, e))?;
        std::fs::write(self.path(id, "remove"), b"").map_err(|e| io(&self.dir, e))?;
        self.ask(store, id, Request::Remove, wait).map(drop)
    }

    fn ask(&self, store: &Path, id: u32, request: Request, wait: Duration) -> Result<u64, StoreError> {
        let (done, failed) = (self.answer_path(id, request, true), self.answer_path(id, request, false));
        for stale in [&done, &failed] {
            let _ = std::fs::remove_file(stale);
        }
        let deadline = Instant::now() + wait;
        loop {
            if let Ok(text) = std::fs::read_to_string(&done) {
                let _ = std::fs::remove_file(&done);
                return Ok(text.trim().parse().unwrap_or(0));
            }
            if let Ok(text) = std::fs::read_to_string(&failed) {
                let _ = std::fs::remove_file(&failed);
                return Err(StoreError::Backend(format!("the server holding {} answered: {text}", store.display())));
            }
            // No server holds the store (or it stopped): this process does it.
            if self.path(id, request.extension()).exists() && !plumb_store::duck::in_use(store) {
                let outcome = self.carry_out(&mut DuckStore::open(store)?, id, request);
                let _ = std::fs::remove_file(self.path(id, request.extension()));
                return outcome;
            }
            if Instant::now() > deadline {
                let _ = std::fs::remove_file(self.path(id, request.extension()));
                return Err(StoreError::Backend(format!(
                    "the server holding {} did not take the import within {wait:?}: is it a Plumb from before imports?",
                    store.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `<id>.rows` or `<id>.remove`.
fn parse_name(name: &str) -> Option<(u32, Request)> {
    let (id, extension) = name.split_once('.')?;
    let request = [Request::Store, Request::Remove].into_iter().find(|r| r.extension() == extension)?;
    Some((id.parse().ok()?, request))
}

fn io(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Backend(format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_requests_are_read() {
        assert_eq!(parse_name("12.rows"), Some((12, Request::Store)));
        assert_eq!(parse_name("12.remove"), Some((12, Request::Remove)));
        assert_eq!(parse_name("12.rows.part"), None);
        assert_eq!(parse_name("12.rows.done"), None);
        assert_eq!(parse_name("12.remove.failed"), None);
        assert_eq!(parse_name("x.rows"), None);
    }
}
