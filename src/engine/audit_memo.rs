//! What one audit stream has read, so that a number repeated in a list is answered from
//! the same lookup without filling the shared cache: an audit of millions of numbers, each
//! seen once, would push out the numbers that OTP checks keep asking about (and cost
//! about 3 µs and 500 bytes per number to admit).
//!
//! Bounded: two generations of at most half the capacity each; when the young one fills,
//! the old one is dropped. Each entry keeps the stripe epoch it was read under, and an
//! entry whose number has had events committed since is not used.

use std::collections::HashMap;

use super::number_cache::NumberState;
use crate::FastHash;
use crate::domain::number::E164;

/// Distinct numbers remembered per audit stream (about 30 MiB at most).
pub const MEMO_CAPACITY: usize = 1 << 18;

/// The numbers one audit stream has looked up, so a list that repeats numbers reads each once; bounded by keeping two generations.
pub struct AuditMemo {
    young: HashMap<E164, (NumberState, u64), FastHash>,
    old: HashMap<E164, (NumberState, u64), FastHash>,
    generation: usize,
}

impl Default for AuditMemo {
    fn default() -> Self {
        AuditMemo::with_capacity(MEMO_CAPACITY)
    }
}

impl AuditMemo {
    /// A memo holding at most about `capacity` numbers.
    pub fn with_capacity(capacity: usize) -> Self {
        AuditMemo {
            young: HashMap::default(),
            old: HashMap::default(),
            generation: (capacity / 2).max(1),
        }
    }

    /// The remembered state, if it was read under the number's `current_epoch`.
    pub fn get(&self, number: &E164, current_epoch: u64) -> Option<NumberState> {
        self.young
            .get(number)
            .or_else(|| self.old.get(number))
            .filter(|(_, epoch)| *epoch == current_epoch)
            .map(|(state, _)| state.clone())
    }

    /// Remembers a state read from the store after the number's epoch was `epoch`.
    pub fn insert(&mut self, number: E164, state: NumberState, epoch: u64) {
        if self.young.len() >= self.generation {
            // The old generation's table becomes the young one, emptied but keeping its
            // room: a long audit stops growing tables (rehashing, faulting in fresh
            // pages) once both generations have filled.
            std::mem::swap(&mut self.old, &mut self.young);
            self.young.clear();
        }
        self.young.insert(number, (state, epoch));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(i: u32) -> E164 {
        E164::parse(&format!("+8190{:08}", 10_000_000 + i), None).unwrap()
    }

    fn state() -> NumberState {
        NumberState {
            mobile: true,
            history: Vec::new().into(),
        }
    }

    #[test]
    fn remembers_until_the_epoch_moves() {
        let mut memo = AuditMemo::default();
        memo.insert(n(1), state(), 7);
        assert!(memo.get(&n(1), 7).is_some());
        assert!(memo.get(&n(1), 8).is_none(), "events came in since");
        assert!(memo.get(&n(2), 7).is_none());
    }

    #[test]
    fn stays_within_its_capacity_and_keeps_the_recent() {
        let mut memo = AuditMemo::with_capacity(100);
        for i in 0..1_000 {
            memo.insert(n(i), state(), 0);
            assert!(memo.len() <= 100);
        }
        assert!(memo.get(&n(999), 0).is_some());
        assert!(memo.get(&n(950), 0).is_some());
        assert!(memo.get(&n(0), 0).is_none());
    }

    #[test]
    fn reuses_its_tables_once_both_generations_have_filled() {
        let mut memo = AuditMemo::with_capacity(100);
        let room = |m: &AuditMemo| m.young.capacity() + m.old.capacity();
        for i in 0..100 {
            memo.insert(n(i), state(), 0);
        }
        let grown = room(&memo);
        for i in 100..1_000 {
            memo.insert(n(i), state(), 0);
            assert_eq!(room(&memo), grown, "no table made afresh at entry {i}");
        }
    }
}
