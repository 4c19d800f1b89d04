//! [`Counts`]: the accounting every accepted job is held to.

/// Job counts. At rest, `accepted == completed + dead + returned`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Jobs the engine accepted (duplicates and refusals excluded).
    pub accepted: u64,
    /// Jobs whose handler returned `Ok`.
    pub completed: u64,
    /// Jobs that ended in failure.
    pub dead: u64,
    /// Jobs handed back by shutdown without having completed.
    pub returned: u64,
    /// Jobs held right now (0 at rest).
    pub held: u64,
    /// Submits skipped as duplicates (not part of `accepted`).
    pub duplicates: u64,
    /// Failed attempts that were scheduled to retry.
    pub retried: u64,
    /// Dead jobs resubmitted by redrive (each also counted in `accepted`).
    pub redriven: u64,
}

impl Counts {
    /// Whether every accepted job is accounted for:
    /// `accepted == completed + dead + returned + held`.
    pub fn is_conserved(&self) -> bool {
        self.accepted == self.completed + self.dead + self.returned + self.held
    }

    /// Adds `o`'s counts to these (totals over lanes).
    pub(crate) fn add(&mut self, o: &Counts) {
        self.accepted += o.accepted;
        self.completed += o.completed;
        self.dead += o.dead;
        self.returned += o.returned;
        self.held += o.held;
        self.duplicates += o.duplicates;
        self.retried += o.retried;
        self.redriven += o.redriven;
    }
}
