//! A PostgreSQL database of a test's own on the machine's server (127.0.0.1:5432, user
//! `postgres`, trust authentication), for this crate's tests and the binary's (feature `testing`).

use crate::PgMeta;
use postgres::{Client, NoTls};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The server the tests use.
pub const SERVER: &str = "postgres://postgres@127.0.0.1:5432";

pub fn admin() -> Client {
    Client::connect(&format!("{SERVER}/postgres"), NoTls).expect("PostgreSQL runs at 127.0.0.1:5432 (user postgres)")
}

/// Runs `f` on a thread of its own: the blocking client panics inside an async test's runtime.
fn apart<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(f).join().expect("the PostgreSQL call panicked")
}

/// A database of a test's own, dropped when the test ends, however it ends.
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    pub fn create() -> TestDb {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!("plumb_test_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let create =
            format!("CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en' LOCALE 'C.UTF-8'");
        apart(move || admin().batch_execute(&create)).unwrap();
        TestDb { name }
    }

    pub fn url(&self) -> String {
        format!("{SERVER}/{}", self.name)
    }

    pub fn meta(&self) -> PgMeta {
        PgMeta::connect(&self.url()).unwrap()
    }

    /// A connection of the test's own, to look at what is stored.
    pub fn client(&self) -> Client {
        Client::connect(&self.url(), NoTls).unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // FORCE: a backend's connection threads may still hold connections. No panic here: this
        // may run while a failed test unwinds.
        let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let _ = apart(move || Client::connect(&format!("{SERVER}/postgres"), NoTls)?.batch_execute(&drop));
    }
}
