//! A ClickHouse server of a test's own (feature `testing`): Debian's `clickhouse-server`, on free
//! ports with a temporary data directory, ended with the test (and after ten minutes whatever
//! happens); and a cluster of them with a ZooKeeper of its own.

use std::cell::RefCell;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SERVER_BINARY: &str = "/usr/sbin/clickhouse-server";
const CONFIG: &str = "/etc/clickhouse-server/config.xml";
/// How long a test's server lives at most, whatever happens to the test.
const LIFETIME: Duration = Duration::from_secs(600);

pub struct ClickHouseServer {
    dir: PathBuf,
    /// HTTP, native and interserver ports, kept across restarts.
    ports: [u16; 3],
    /// The configuration file: Debian's, or a copy of it with more beside it (a cluster's).
    config: PathBuf,
    /// `timeout`, which runs the server and ends it after `lifetime` whatever happens.
    child: Option<Child>,
    lifetime: Duration,
}

/// A port nothing listens on, never handed out before in this process: between this call and
/// the server binding it the port is free, and the tests of one binary start servers at once.
fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if GIVEN.lock().unwrap().insert(port) {
            return port;
        }
    }
}

impl ClickHouseServer {
    pub fn start(name: &str) -> ClickHouseServer {
        Self::start_for(name, LIFETIME)
    }

    /// A server that lives up to `lifetime` (a benchmark's outlasts a test's).
    pub fn start_for(name: &str, lifetime: Duration) -> ClickHouseServer {
        let mut server = ClickHouseServer::prepare(name);
        server.lifetime = lifetime;
        server.run();
        server
    }

    /// A server with its ports and directory chosen, not started yet.
    fn prepare(name: &str) -> ClickHouseServer {
        assert!(
            std::path::Path::new(SERVER_BINARY).exists(),
            "{SERVER_BINARY} is missing: apt-get install clickhouse-server clickhouse-client (.ci/run does)"
        );
        let dir = std::env::temp_dir().join(format!("plumb-clickhouse-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["tmp", "uf", "fs"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let ports = [free_port(), free_port(), free_port()];
        ClickHouseServer { dir, ports, config: CONFIG.into(), child: None, lifetime: LIFETIME }
    }

    /// Runs on a copy of Debian's configuration with `extra` (a `<yandex>` document) in its
    /// `config.d`.
    fn configure(&mut self, extra: &str) {
        let conf = self.dir.join("conf");
        std::fs::create_dir_all(conf.join("config.d")).unwrap();
        for file in ["config.xml", "users.xml"] {
            std::fs::copy(std::path::Path::new(CONFIG).with_file_name(file), conf.join(file)).unwrap();
        }
        std::fs::write(conf.join("config.d/plumb.xml"), extra).unwrap();
        self.config = conf.join("config.xml");
    }

    /// Starts the server (again: same ports, same data) and waits until it answers.
    pub fn run(&mut self) {
        let path = |p: &str| format!("{}/{p}", self.dir.display());
        let [http, tcp, interserver] = self.ports;
        let child = Command::new("timeout")
            .args(["-s", "KILL", &self.lifetime.as_secs().to_string(), SERVER_BINARY])
            .arg(format!("--config-file={}", self.config.display()))
            .arg("--")
            .arg(format!("--path={}/", self.dir.display()))
            .arg(format!("--tmp_path={}/", path("tmp")))
            .arg(format!("--user_files_path={}/", path("uf")))
            .arg(format!("--format_schema_path={}/", path("fs")))
            .arg(format!("--logger.log={}", path("log")))
            .arg(format!("--logger.errorlog={}", path("err")))
            .arg(format!("--http_port={http}"))
            .arg(format!("--tcp_port={tcp}"))
            .arg(format!("--interserver_http_port={interserver}"))
            .arg("--interserver_http_host=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run `timeout` (coreutils)");
        self.child = Some(child);
        // Listening is not yet answering: wait for a statement's answer.
        let deadline = Instant::now() + Duration::from_secs(30);
        let server = self.http();
        while !matches!(server.run("SELECT 1", false, Duration::from_secs(5)), Ok(a) if a.trim() == "1") {
            assert!(Instant::now() < deadline, "clickhouse-server did not start: {}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        // The answer must be this server's, not another's that holds the port.
        let path =
            server.run("SELECT data_path FROM system.databases WHERE name = 'system'", false, Duration::from_secs(5));
        let ours = path.as_deref().is_ok_and(|p| p.trim().starts_with(&self.dir.display().to_string()));
        assert!(ours, "port {http} answers for another server ({path:?}): {}", self.log());
    }

    fn http(&self) -> crate::clickhouse::http::Server {
        crate::clickhouse::http::Server {
            addr: format!("127.0.0.1:{}", self.ports[0]),
            database: "default".into(),
            cluster: None,
        }
    }

    /// Kills the server as a crash would (SIGKILL) and waits until it is gone.
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        // The server is `timeout`'s child: found by its data directory, unique to this server.
        let _ = Command::new("pkill").args(["-KILL", "-f", "--", &format!("--path={}/", self.dir.display())]).status();
        let _ = child.kill();
        let _ = child.wait();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.ports[0])).is_ok() {
            assert!(Instant::now() < deadline, "clickhouse-server still answers after SIGKILL");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `clickhouse://127.0.0.1:PORT/DB`.
    pub fn url(&self, database: &str) -> String {
        format!("clickhouse://127.0.0.1:{}/{database}", self.ports[0])
    }

    /// Runs a statement over HTTP and returns the answer (for tests to look at what is stored).
    pub fn query(&self, sql: &str) -> String {
        self.http().run(sql, false, Duration::from_secs(30)).unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("err")).unwrap_or_default()
    }
}

impl Drop for ClickHouseServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A ZooKeeper of a test's own (Debian's `zookeeper` package, run with the machine's Java) on a
/// free port, for replicated tables.
pub struct ZooKeeper {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl ZooKeeper {
    pub fn start(name: &str) -> ZooKeeper {
        assert!(
            std::path::Path::new("/usr/share/zookeeper").exists(),
            "ZooKeeper is missing: apt-get install zookeeper (.ci/run does)"
        );
        let dir = std::env::temp_dir().join(format!("plumb-zookeeper-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let port = free_port();
        let config = format!(
            "tickTime=500\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\n\
             4lw.commands.whitelist=srvr\n",
            dir.join("data").display()
        );
        std::fs::write(dir.join("zoo.cfg"), config).unwrap();
        let child = Command::new("timeout")
            .args([
                "-s",
                "KILL",
                &LIFETIME.as_secs().to_string(),
                "java",
                "-cp",
                "/usr/share/zookeeper/*:/usr/share/java/*",
            ])
            .arg(format!("-Dzookeeper.log.dir={}", dir.display()))
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(dir.join("zoo.cfg"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run java for ZooKeeper");
        let zk = ZooKeeper { dir, port, child: Some(child) };
        // Listening is not serving: ClickHouse 18.16 started against a ZooKeeper that refuses
        // sessions crashes in its DDL worker. Wait until `srvr` reports the server's mode.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !zk.serving() {
            assert!(Instant::now() < deadline, "ZooKeeper did not start serving");
            std::thread::sleep(Duration::from_millis(50));
        }
        zk
    }
}

impl ZooKeeper {
    /// Whether the server answers `srvr` with its mode (it says "not currently serving" before).
    fn serving(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut c) = TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
        let mut answer = String::new();
        c.write_all(b"srvr").is_ok() && c.read_to_string(&mut answer).is_ok() && answer.contains("Mode:")
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        let _ =
            Command::new("pkill").args(["-KILL", "-f", "--", &self.dir.join("zoo.cfg").display().to_string()]).status();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// ClickHouse servers of a test's own forming the cluster `plumb`: `shards` shards of `replicas`
/// replicas, with replicated tables coordinated by a ZooKeeper of their own.
pub struct ClickHouseCluster {
    /// Shard by shard, replica by replica.
    pub servers: Vec<ClickHouseServer>,
    replicas: usize,
    _zookeeper: ZooKeeper,
}

impl ClickHouseCluster {
    pub const NAME: &str = "plumb";

    pub fn start(name: &str, shards: usize, replicas: usize) -> ClickHouseCluster {
        let zookeeper = ZooKeeper::start(name);
        let mut servers: Vec<ClickHouseServer> = (0..shards * replicas)
            .map(|i| ClickHouseServer::prepare(&format!("{name}-{}-{}", i / replicas + 1, i % replicas + 1)))
            .collect();
        let shard_xml = |shard: usize| {
            let replicas = servers[shard * replicas..(shard + 1) * replicas]
                .iter()
                .map(|s| format!("<replica><host>127.0.0.1</host><port>{}</port></replica>", s.ports[1]));
            format!("<shard><internal_replication>true</internal_replication>{}</shard>", replicas.collect::<String>())
        };
        let remote = (0..shards).map(shard_xml).collect::<String>();
        for (i, server) in servers.iter_mut().enumerate() {
            server.configure(&format!(
                "<yandex><remote_servers><{cluster}>{remote}</{cluster}></remote_servers>\
                 <zookeeper><node><host>127.0.0.1</host><port>{}</port></node></zookeeper>\
                 <macros><shard>{}</shard><replica>r{}</replica></macros></yandex>",
                zookeeper.port,
                i / replicas + 1,
                i % replicas + 1,
                cluster = Self::NAME,
            ));
            server.run();
        }
        ClickHouseCluster { servers, replicas, _zookeeper: zookeeper }
    }

    /// The end of every server's error log, for a failure's message.
    pub fn logs(&self) -> String {
        let tail = |log: String| {
            log.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
        };
        self.servers
            .iter()
            .map(|s| format!("--- {}\n{}", s.dir.display(), tail(s.log())))
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn server(&self, shard: usize, replica: usize) -> &ClickHouseServer {
        &self.servers[shard * self.replicas + replica]
    }

    /// `clickhouse://127.0.0.1:PORT/DB?cluster=plumb` for one server of the cluster.
    pub fn url(&self, shard: usize, replica: usize, database: &str) -> String {
        format!("{}?cluster={}", self.server(shard, replica).url(database), Self::NAME)
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
