//! The handlers' shared state: the accounts (in memory, by idempotency
//! key), the lanes, the request counters and the Prometheus recorder, and
//! the operations on them that are not HTTP: finding or creating an
//! account, waiting for quay, shutting it down.

use super::lanes::{Lanes, Ledger};
use super::Config;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use quay::{Runtime, RuntimeShutdown};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An account, created inline by `POST /signup`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Account {
    /// The account's ID.
    pub id: u64,
    /// Its email address.
    pub email: String,
    /// Its name.
    pub name: String,
}

/// `POST /signup`'s body.
#[derive(Clone, Debug, Deserialize)]
pub struct SignupRequest {
    /// The email address.
    pub email: String,
    /// The name.
    pub name: String,
}

/// The idempotency key was used before with another body.
pub(super) struct KeyReused;

/// The shared state of the handlers: the accounts, quay's lanes, the
/// Prometheus recorder. Cheap to clone.
#[derive(Clone)]
pub struct AppState(pub(super) Arc<Inner>);

pub(super) struct Inner {
    pub(super) config: Config,
    /// Accounts by idempotency key.
    accounts: Mutex<HashMap<String, Account>>,
    next_user: AtomicU64,
    pub(super) lanes: Lanes,
    /// This service's own recorder (see `routes::metrics`).
    pub(super) recorder: PrometheusRecorder,
    pub(super) prometheus: PrometheusHandle,
    /// Responses to `POST /signup`: created, replayed, refused with 503.
    pub(super) created: AtomicU64,
    pub(super) replayed: AtomicU64,
    pub(super) unavailable: AtomicU64,
}

impl AppState {
    /// The state over started lanes, with no account yet.
    pub(super) fn new(config: Config, lanes: Lanes) -> AppState {
        let recorder = PrometheusBuilder::new().build_recorder();
        let prometheus = recorder.handle();
        AppState(Arc::new(Inner {
            config,
            accounts: Mutex::new(HashMap::new()),
            next_user: AtomicU64::new(1),
            lanes,
            recorder,
            prometheus,
            created: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            unavailable: AtomicU64::new(0),
        }))
    }

    /// The lanes' runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.0.lanes.runtime
    }

    /// The audit of every job's runs.
    pub fn ledger(&self) -> &Ledger {
        &self.0.lanes.ledger
    }

    /// Waits (blocking) until no lane holds a job, or `timeout` passes.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        self.0.lanes.runtime.wait_idle(timeout)
    }

    /// Closes every lane, runs what they hold, and reports (blocking).
    pub fn shutdown(&self) -> RuntimeShutdown {
        self.0.lanes.runtime.shutdown()
    }

    /// The essential work of a sign-up, done inline: the account under
    /// `key`, created now (`false`) or found from an earlier request with
    /// the same body (`true`), and counted as created or replayed.
    pub(super) fn find_or_create(
        &self,
        key: &str,
        req: SignupRequest,
    ) -> Result<(Account, bool), KeyReused> {
        let s = &self.0;
        let (account, replayed) = {
            let mut accounts = s.accounts.lock().unwrap();
            match accounts.get(key) {
                Some(a) if a.email != req.email || a.name != req.name => return Err(KeyReused),
                Some(a) => (a.clone(), true),
                None => {
                    let a = Account {
                        id: s.next_user.fetch_add(1, Ordering::Relaxed),
                        email: req.email,
                        name: req.name,
                    };
                    accounts.insert(key.to_string(), a.clone());
                    (a, false)
                }
            }
        };
        let counter = if replayed { &s.replayed } else { &s.created };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok((account, replayed))
    }
}
