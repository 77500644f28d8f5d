//! Stage 3: the reorder buffer. Workers finish entries in any order; the writer must see them in
//! sequence order. Items arrive tagged with their sequence number and leave strictly in order.
//!
//! The buffer itself is unbounded by design: its size is bounded *upstream*, by the byte budget that
//! admits entries in sequence order (see `pack/budget.rs`). It records its peak so the statistics can
//! show how far ahead the workers ran.

use std::collections::VecDeque;

/// Restores sequence order over items numbered 0, 1, 2, ...
#[derive(Debug)]
pub struct ReorderBuffer<T> {
    next: u64,
    /// Slot `i` holds item `next + i`, if it has arrived.
    slots: VecDeque<Option<T>>,
    held: usize,
    peak: usize,
}

impl<T> Default for ReorderBuffer<T> {
    fn default() -> Self {
        Self::new(0)
    }
}

impl<T> ReorderBuffer<T> {
    /// A buffer whose first expected item is `first`.
    pub fn new(first: u64) -> Self {
        ReorderBuffer {
            next: first,
            slots: VecDeque::new(),
            held: 0,
            peak: 0,
        }
    }

    /// Stores item `seq`.
    ///
    /// # Panics
    /// If `seq` was already delivered or is already held: sequence numbers are unique by construction,
    /// so a repeat is a bug in the caller.
    pub fn insert(&mut self, seq: u64, item: T) {
        assert!(seq >= self.next, "sequence number {seq} already delivered");
        let offset = usize::try_from(seq - self.next).expect("reorder window fits in memory");
        if offset >= self.slots.len() {
            self.slots.resize_with(offset + 1, || None);
        }
        let slot = &mut self.slots[offset];
        assert!(slot.is_none(), "sequence number {seq} inserted twice");
        *slot = Some(item);
        self.held += 1;
        self.peak = self.peak.max(self.held);
    }

    /// The next item in order, if it has arrived.
    pub fn pop(&mut self) -> Option<T> {
        match self.slots.front_mut() {
            Some(slot @ Some(_)) => {
                let item = slot.take();
                self.slots.pop_front();
                self.next += 1;
                self.held -= 1;
                item
            }
            _ => None,
        }
    }

    /// The sequence number the buffer waits for.
    #[cfg(any(test, feature = "internals"))]
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// Items held, waiting for an earlier one.
    #[cfg(any(test, feature = "internals"))]
    pub fn len(&self) -> usize {
        self.held
    }

    /// True when nothing is held.
    #[cfg(any(test, feature = "internals"))]
    pub fn is_empty(&self) -> bool {
        self.held == 0
    }

    /// The most items ever held at once.
    #[cfg(any(test, feature = "internals"))]
    pub fn peak(&self) -> usize {
        self.peak
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_arrival_order_leaves_in_sequence(order in Just((0u64..200).collect::<Vec<_>>()).prop_shuffle()) {
            let mut buf = ReorderBuffer::new(0);
            let mut out = Vec::new();
            for seq in order {
                buf.insert(seq, seq * 10);
                while let Some(v) = buf.pop() {
                    out.push(v);
                }
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(out, (0u64..200).map(|s| s * 10).collect::<Vec<_>>());
        }
    }

    #[test]
    fn holds_until_the_gap_fills() {
        let mut buf = ReorderBuffer::new(5);
        buf.insert(7, "c");
        buf.insert(6, "b");
        assert_eq!(buf.pop(), None);
        assert_eq!(buf.len(), 2);
        buf.insert(5, "a");
        assert_eq!(buf.pop(), Some("a"));
        assert_eq!(buf.pop(), Some("b"));
        assert_eq!(buf.pop(), Some("c"));
        assert_eq!(buf.pop(), None);
        assert_eq!(buf.next_seq(), 8);
        assert_eq!(buf.peak(), 3);
    }

    #[test]
    #[should_panic(expected = "inserted twice")]
    fn duplicate_is_a_bug() {
        let mut buf = ReorderBuffer::new(0);
        buf.insert(1, ());
        buf.insert(1, ());
    }
}
