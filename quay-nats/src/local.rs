//! A local multi-process deployment, for the demo and the chaos test: node
//! processes of this crate's binary (`quay-nats node …`), each reporting
//! its lease acquisitions as JSON lines, and the faults to throw at them
//! (`kill -9`, `kill -STOP`, `kill -CONT`).
//!
//! A node process drains and exits when its stdin closes.

use crate::audit::Acquisition;
use crate::node::NodeReport;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One line a node process prints.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The node is connected and running.
    Ready {
        /// The node's name.
        node: String,
    },
    /// It acquired a lease.
    Acquired {
        /// The partition.
        p: u32,
        /// The generation.
        g: u64,
        /// When, ns since the Unix epoch.
        at_ns: i64,
    },
    /// It drained and is exiting.
    Report(NodeReport),
}

/// How to start node processes.
#[derive(Clone, Debug)]
pub struct Spawner {
    /// The `quay-nats` binary.
    pub binary: PathBuf,
    /// Arguments after `node --name <name>`.
    pub args: Vec<String>,
}

/// A running node process.
pub struct Proc {
    /// Its name.
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    reader: Option<std::thread::JoinHandle<()>>,
    /// Every event it printed, in order.
    pub events: Arc<Mutex<Vec<Event>>>,
}

impl Spawner {
    /// Node processes of `binary` against `url`, in namespace `ns`, with
    /// these lease and run-time settings, and `extra` arguments after them.
    pub fn new(
        binary: PathBuf,
        url: &str,
        ns: &str,
        lease_ttl: Duration,
        max_run: Duration,
        extra: &[&str],
    ) -> Spawner {
        let mut args: Vec<String> = vec![
            "--server".into(),
            url.into(),
            "--namespace".into(),
            ns.into(),
            "--lease-ttl-ms".into(),
            lease_ttl.as_millis().to_string(),
            "--max-run-ms".into(),
            max_run.as_millis().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Spawner { binary, args }
    }

    /// Starts node `name` and waits (up to 60 s) for its `ready` line.
    pub fn spawn(&self, name: &str) -> Result<Proc, String> {
        let mut child = Command::new(&self.binary)
            .arg("node")
            .arg("--name")
            .arg(name)
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("{}: {e}", self.binary.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let events = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let sink = events.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(e) = serde_json::from_str::<Event>(&line) {
                    if matches!(e, Event::Ready { .. }) {
                        let _ = ready_tx.send(());
                    }
                    sink.lock().unwrap_or_else(|p| p.into_inner()).push(e);
                }
            }
        });
        let stdin = child.stdin.take();
        let mut proc = Proc {
            name: name.to_string(),
            child,
            stdin,
            reader: Some(reader),
            events,
        };
        if ready_rx.recv_timeout(Duration::from_secs(60)).is_err() {
            proc.kill9();
            return Err(format!("node {name} did not get ready within 60 s"));
        }
        Ok(proc)
    }
}

impl Proc {
    /// The OS process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`, and reap it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stdin = None;
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }

    /// Whether the process has exited (it crashed, or it drained).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// `kill -STOP`.
    pub fn stop(&self) -> Result<(), String> {
        signal(self.pid(), "-STOP")
    }

    /// `kill -CONT`.
    pub fn cont(&self) -> Result<(), String> {
        signal(self.pid(), "-CONT")
    }

    /// Closes its stdin (a graceful drain) and waits up to `limit` for it
    /// to exit; `kill -9` after that. Its report, if it printed one.
    pub fn finish(&mut self, limit: Duration) -> Option<NodeReport> {
        self.stdin = None;
        let deadline = std::time::Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                _ if std::time::Instant::now() > deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .rev()
            .find_map(|e| match e {
                Event::Report(r) => Some(r.clone()),
                _ => None,
            })
    }

    /// Its acquisitions so far.
    pub fn acquisitions(&self) -> Vec<Acquisition> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(|e| match e {
                Event::Acquired { p, g, at_ns } => Some((*p, *g, *at_ns)),
                _ => None,
            })
            .collect()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = signal(self.pid(), "-CONT");
        }
        self.kill9();
    }
}

fn signal(pid: u32, sig: &str) -> Result<(), String> {
    let status = Command::new("kill")
        .arg(sig)
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("kill {sig} {pid}: {status}"))
    }
}
