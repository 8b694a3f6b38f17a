//! A ClickHouse server of a test's own (feature `testing`): Debian's `clickhouse-server`, on free
//! ports with a temporary data directory, ended with the test (and after ten minutes whatever
//! happens).

use std::cell::RefCell;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SERVER_BINARY: &str = "/usr/sbin/clickhouse-server";
const CONFIG: &str = "/etc/clickhouse-server/config.xml";
const LIFETIME_S: &str = "600";

pub struct ClickHouseServer {
    dir: PathBuf,
    http_port: u16,
    child: Child,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl ClickHouseServer {
    pub fn start(name: &str) -> ClickHouseServer {
        assert!(
            std::path::Path::new(SERVER_BINARY).exists(),
            "{SERVER_BINARY} is missing: apt-get install clickhouse-server clickhouse-client (.ci/run does)"
        );
        let dir = std::env::temp_dir().join(format!("plumb-clickhouse-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["tmp", "uf", "fs"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let http_port = free_port();
        let path = |p: &str| format!("{}/{p}", dir.display());
        let child = Command::new("timeout")
            .args(["-s", "KILL", LIFETIME_S, SERVER_BINARY, &format!("--config-file={CONFIG}"), "--"])
            .arg(format!("--path={}/", dir.display()))
            .arg(format!("--tmp_path={}/", path("tmp")))
            .arg(format!("--user_files_path={}/", path("uf")))
            .arg(format!("--format_schema_path={}/", path("fs")))
            .arg(format!("--logger.log={}", path("log")))
            .arg(format!("--logger.errorlog={}", path("err")))
            .arg(format!("--http_port={http_port}"))
            .arg(format!("--tcp_port={}", free_port()))
            .arg(format!("--interserver_http_port={}", free_port()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run `timeout` (coreutils)");
        let server = ClickHouseServer { dir, http_port, child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", http_port)).is_err() {
            assert!(Instant::now() < deadline, "clickhouse-server did not start: {}", server.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// `clickhouse://127.0.0.1:PORT/DB`.
    pub fn url(&self, database: &str) -> String {
        format!("clickhouse://127.0.0.1:{}/{database}", self.http_port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("err")).unwrap_or_default()
    }
}

impl Drop for ClickHouseServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

thread_local! {
    /// Statements this thread ran on ClickHouse while recording (see [`recording`]).
    static RECORDED: RefCell<Option<Vec<Statement>>> = const { RefCell::new(None) };
}

/// A statement that ran, and what the server answered.
#[derive(Debug, Clone)]
pub struct Statement {
    pub sql: String,
    pub answer: String,
}

pub(crate) fn record(sql: &str, answer: &str) {
    RECORDED.with_borrow_mut(|log| {
        if let Some(log) = log.as_mut() {
            log.push(Statement { sql: sql.to_owned(), answer: answer.to_owned() });
        }
    });
}

/// Every statement the ClickHouse backends ran from this thread while `f` ran, in order, with
/// `f`'s result (the backends call the server on their caller's thread).
pub fn recording<T>(f: impl FnOnce() -> T) -> (T, Vec<Statement>) {
    RECORDED.set(Some(Vec::new()));
    let out = f();
    (out, RECORDED.take().unwrap_or_default())
}
