//! For this crate's tests and the binary's (feature `testing`): a PostgreSQL database of a test's
//! own on the machine's server (127.0.0.1:5432, user `postgres`, trust authentication), or a
//! server of its own to stop and start.

use crate::PgMeta;
use postgres::{Client, NoTls};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
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

/// A PostgreSQL server of a test's own (the machine's `initdb` and `postgres`, on a free port with
/// a temporary cluster), for tests that stop and start it: the machine's server is shared by every
/// test running at the time. Run as the `postgres` user when the tests run as root (PostgreSQL
/// refuses root).
pub struct PgServer {
    dir: PathBuf,
    port: u16,
}

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

impl PgServer {
    pub fn start(name: &str) -> PgServer {
        let dir = std::env::temp_dir().join(format!("plumb-pg-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            let chown = Command::new("chown").args(["postgres:postgres"]).arg(&dir).status().unwrap();
            assert!(chown.success(), "cannot give {dir:?} to the postgres user");
        }
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let server = PgServer { dir, port };
        let init = server
            .command("initdb")
            .args(["-A", "trust", "-U", "postgres", "--no-instructions", "-D"])
            .arg(server.data())
            .output()
            .expect("cannot run initdb");
        assert!(init.status.success(), "initdb failed: {}", String::from_utf8_lossy(&init.stderr));
        server.run();
        apart({
            let url = format!("{}/postgres", server.server());
            move || Client::connect(&url, NoTls).unwrap().batch_execute("CREATE DATABASE plumb")
        })
        .unwrap();
        server
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn command(&self, program: &str) -> Command {
        let path = format!("{PG_BIN}/{program}");
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", &path]);
            c
        } else {
            Command::new(path)
        }
    }

    fn pg_ctl(&self, args: &[&str]) {
        let out = self.command("pg_ctl").arg("-D").arg(self.data()).args(args).output().expect("cannot run pg_ctl");
        assert!(out.status.success(), "pg_ctl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn server(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    /// The database Plumb uses.
    pub fn url(&self) -> String {
        format!("{}/plumb", self.server())
    }

    /// Starts the server (again: same port, same cluster) and waits until it takes connections.
    pub fn run(&self) {
        let options = format!("-c listen_addresses=127.0.0.1 -p {} -k {}", self.port, self.dir.display());
        let log = self.dir.join("server.log");
        self.pg_ctl(&["start", "-w", "-t", "30", "-l", log.to_str().unwrap(), "-o", &options]);
    }

    /// Stops the server as a crash would (`immediate`: no checkpoint, recovery on the next start).
    pub fn crash(&self) {
        self.pg_ctl(&["stop", "-m", "immediate", "-w"]);
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self.command("pg_ctl").arg("-D").arg(self.data()).args(["stop", "-m", "immediate"]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}
