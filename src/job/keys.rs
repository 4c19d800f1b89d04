//! The key table: per-key sub-queues inside one shard, owned by its worker.
//!
//! A key is *busy* from the moment its head job is handed out to run until
//! that job is terminal: while the job waits to retry, the key waits with
//! it, as an SQS FIFO message group does. Jobs behind it wait in the key's
//! queue, in accept order. Other keys are untouched.
//!
//! Layout: every key's queue is a singly linked list threaded through one
//! slab of nodes shared by all keys of the shard, with a free list. The map
//! holds, per busy key, the head and tail node of its waiting jobs. A key's
//! entry is removed when its last job ends, so memory follows the keys with
//! jobs, not every key ever seen; and the slab only grows to the most jobs
//! ever waiting at once (bounded by the engine's capacity), so a steady
//! stream of keyed jobs allocates nothing.

use crate::job::envelope::Envelope;
use crate::job::Key;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

const NIL: usize = usize::MAX;

struct Node<T> {
    env: Option<Envelope<T>>,
    next: usize,
}

/// A busy key's waiting jobs: `head..=tail` in the slab, or `NIL` if none.
#[derive(Clone, Copy)]
struct List {
    head: usize,
    tail: usize,
}

/// The busy-key map's hasher: a folded multiply (the 128-bit product's
/// halves XORed) of the key under a random per-table seed. A fraction of
/// SipHash's cost per job, and an outsider choosing keys (user IDs, say)
/// cannot aim them at one probe chain without the seed.
#[derive(Clone, Copy)]
struct KeySeed {
    seed: u64,
    mul: u64,
}

impl KeySeed {
    fn random() -> KeySeed {
        let r = std::collections::hash_map::RandomState::new();
        KeySeed {
            seed: r.hash_one(1u64),
            // Odd, so the multiply loses no bits.
            mul: r.hash_one(2u64) | 1,
        }
    }
}

impl BuildHasher for KeySeed {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher {
            seed: *self,
            h: self.seed,
        }
    }
}

struct KeyHasher {
    seed: KeySeed,
    h: u64,
}

impl KeyHasher {
    fn fold(&mut self, v: u64) {
        let p = ((self.h ^ v) as u128).wrapping_mul(self.seed.mul as u128);
        self.h = (p as u64) ^ ((p >> 64) as u64);
    }
}

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.h
    }
    fn write(&mut self, bytes: &[u8]) {
        // `Key` hashes through `write_u64`; this is for completeness.
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.fold(u64::from_le_bytes(b));
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.fold(v);
    }
}

pub(crate) struct KeyTable<T> {
    busy: HashMap<Key, List, KeySeed>,
    slab: Vec<Node<T>>,
    free: usize,
    /// Jobs waiting behind a busy key (not counting the busy ones).
    queued: usize,
}

impl<T> Default for KeyTable<T> {
    fn default() -> KeyTable<T> {
        KeyTable {
            busy: HashMap::with_hasher(KeySeed::random()),
            slab: Vec::new(),
            free: NIL,
            queued: 0,
        }
    }
}

impl<T> KeyTable<T> {
    /// A table whose slab holds `n` waiting jobs before it must grow.
    pub(crate) fn with_capacity(n: usize) -> KeyTable<T> {
        KeyTable {
            busy: HashMap::with_capacity_and_hasher(n, KeySeed::random()),
            slab: Vec::with_capacity(n),
            ..KeyTable::default()
        }
    }

    /// A keyed job arrives. Returns it back if its key was idle (the key is
    /// now busy and the caller runs or schedules it); otherwise it waits
    /// behind the key's earlier jobs and `None` is returned.
    pub(crate) fn arrive(&mut self, key: Key, env: Envelope<T>) -> Option<Envelope<T>> {
        use std::collections::hash_map::Entry;
        let list = match self.busy.entry(key) {
            Entry::Vacant(v) => {
                v.insert(List {
                    head: NIL,
                    tail: NIL,
                });
                return Some(env);
            }
            Entry::Occupied(o) => o.into_mut(),
        };
        let node = alloc(&mut self.slab, &mut self.free, env);
        if list.tail == NIL {
            list.head = node;
        } else {
            self.slab[list.tail].next = node;
        }
        list.tail = node;
        self.queued += 1;
        None
    }

    /// The busy job of `key` ended. Returns the next job of the key, which
    /// keeps the key busy, or frees the key if none waits.
    pub(crate) fn next(&mut self, key: Key) -> Option<Envelope<T>> {
        let list = self.busy.get_mut(&key)?;
        if list.head == NIL {
            self.busy.remove(&key);
            return None;
        }
        let i = list.head;
        let node = &mut self.slab[i];
        list.head = node.next;
        if list.head == NIL {
            list.tail = NIL;
        }
        let env = node.env.take();
        node.next = self.free;
        self.free = i;
        self.queued -= 1;
        env
    }

    /// Jobs waiting behind busy keys.
    pub(crate) fn queued(&self) -> usize {
        self.queued
    }

    /// Keys with jobs.
    pub(crate) fn live_keys(&self) -> usize {
        self.busy.len()
    }

    /// Empties the table (shutdown), handing over every waiting job.
    /// Each key's jobs come out in accept order (a key's busy job, held
    /// elsewhere, comes before them all).
    pub(crate) fn drain_into(&mut self, out: &mut Vec<Envelope<T>>) {
        for (_, list) in self.busy.drain() {
            let mut i = list.head;
            while i != NIL {
                let node = &mut self.slab[i];
                out.extend(node.env.take());
                i = node.next;
            }
        }
        self.slab.clear();
        self.busy.clear();
        self.free = NIL;
        self.queued = 0;
    }
}

/// Takes a node from the free list, or grows the slab.
fn alloc<T>(slab: &mut Vec<Node<T>>, free: &mut usize, env: Envelope<T>) -> usize {
    let node = Node {
        env: Some(env),
        next: NIL,
    };
    if *free == NIL {
        slab.push(node);
        return slab.len() - 1;
    }
    let i = *free;
    *free = slab[i].next;
    slab[i] = node;
    i
}

#[cfg(all(test, not(quay_loom)))]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::job::Job;

    fn env(n: u64) -> Envelope<u64> {
        Envelope::new(Job::new(n, n), Timestamp::default())
    }

    #[test]
    fn per_key_fifo_and_freeing() {
        let mut t = KeyTable::default();
        let (a, b) = (Key::from(1u64), Key::from(2u64));
        assert!(t.arrive(a, env(1)).is_some());
        assert!(t.arrive(a, env(2)).is_none());
        assert!(t.arrive(b, env(10)).is_some(), "another key is not blocked");
        assert!(t.arrive(a, env(3)).is_none());
        assert_eq!(t.queued(), 2);
        assert_eq!(t.next(a).map(|e| e.job.payload), Some(2));
        assert!(t.arrive(a, env(4)).is_none());
        assert_eq!(t.next(a).map(|e| e.job.payload), Some(3));
        assert_eq!(t.next(a).map(|e| e.job.payload), Some(4));
        assert!(t.next(a).is_none());
        assert!(t.next(b).is_none());
        assert_eq!(t.live_keys(), 0, "state for idle keys is freed");
        assert_eq!(t.slab.len(), 2, "slab reused, not grown");
    }
}
