use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// What happens at an instant. At equal times, completions come first, then arrivals, then
/// scheduling, so a replica schedules once with everything that happened at that instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EventKind {
    /// The oldest batch in flight on this replica finished its last stage: its outputs are ready.
    Completion { replica: u32 },
    /// Request (by workload index) reaches the global router.
    Arrival { request: u32 },
    /// The replica's engine takes its turn: schedule a batch or apply outputs.
    EngineTurn { replica: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    /// Non-negative finite seconds as bits: ordered like the times themselves.
    time_bits: u64,
    rank: u8,
    seq: u64,
}

/// A min-heap of events by (time, kind rank, insertion order): deterministic for equal times.
#[derive(Debug, Default)]
pub struct EventQueue {
    heap: BinaryHeap<Reverse<(Key, EventKind)>>,
    next_seq: u64,
}

impl EventQueue {
    /// `time` must be finite and non-negative (the simulation checks arrivals on entry).
    pub fn push(&mut self, time: f64, kind: EventKind) {
        debug_assert!(time.is_finite() && time >= 0.0);
        let rank = match kind {
            EventKind::Completion { .. } => 0,
            EventKind::Arrival { .. } => 1,
            EventKind::EngineTurn { .. } => 2,
        };
        let key = Key {
            time_bits: (time + 0.0).to_bits(),
            rank,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        self.heap.push(Reverse((key, kind)));
    }

    pub fn pop(&mut self) -> Option<(f64, EventKind)> {
        self.heap
            .pop()
            .map(|Reverse((key, kind))| (f64::from_bits(key.time_bits), kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_time_then_kind_then_insertion() {
        let mut queue = EventQueue::default();
        queue.push(2.0, EventKind::Arrival { request: 0 });
        queue.push(1.0, EventKind::EngineTurn { replica: 0 });
        queue.push(1.0, EventKind::Arrival { request: 1 });
        queue.push(1.0, EventKind::Completion { replica: 3 });
        queue.push(1.0, EventKind::Arrival { request: 2 });
        let order: Vec<_> = std::iter::from_fn(|| queue.pop()).collect();
        assert_eq!(
            order,
            [
                (1.0, EventKind::Completion { replica: 3 }),
                (1.0, EventKind::Arrival { request: 1 }),
                (1.0, EventKind::Arrival { request: 2 }),
                (1.0, EventKind::EngineTurn { replica: 0 }),
                (2.0, EventKind::Arrival { request: 0 }),
            ]
        );
    }
}
