use crate::request::BlockId;

const NONE: u32 = u32::MAX;

/// Least-recently-freed order of cached blocks nobody references: an intrusive doubly linked
/// list over block ids, so push, remove and pop-oldest are all O(1).
#[derive(Debug, Clone)]
pub(crate) struct EvictableBlocks {
    prev: Vec<u32>,
    next: Vec<u32>,
    is_member: Vec<bool>,
    head: u32,
    tail: u32,
    len: u32,
}

impl EvictableBlocks {
    pub fn new(num_blocks: u32) -> Self {
        let n = num_blocks as usize;
        EvictableBlocks {
            prev: vec![NONE; n],
            next: vec![NONE; n],
            is_member: vec![false; n],
            head: NONE,
            tail: NONE,
            len: 0,
        }
    }

    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn contains(&self, block: BlockId) -> bool {
        self.is_member.get(block as usize).copied().unwrap_or(false)
    }

    /// Appends `block` as the most recently freed.
    pub fn push(&mut self, block: BlockId) {
        debug_assert!(!self.contains(block));
        let b = block as usize;
        self.prev[b] = self.tail;
        self.next[b] = NONE;
        if self.tail == NONE {
            self.head = block;
        } else {
            self.next[self.tail as usize] = block;
        }
        self.tail = block;
        self.is_member[b] = true;
        self.len += 1;
    }

    pub fn remove(&mut self, block: BlockId) {
        debug_assert!(self.contains(block));
        let b = block as usize;
        let (prev, next) = (self.prev[b], self.next[b]);
        if prev == NONE {
            self.head = next;
        } else {
            self.next[prev as usize] = next;
        }
        if next == NONE {
            self.tail = prev;
        } else {
            self.prev[next as usize] = prev;
        }
        self.is_member[b] = false;
        self.len -= 1;
    }

    /// Removes and returns the least recently freed block.
    pub fn pop_oldest(&mut self) -> Option<BlockId> {
        let head = self.head;
        if head == NONE {
            return None;
        }
        self.remove(head);
        Some(head)
    }

    #[cfg(test)]
    pub fn in_order(&self) -> Vec<BlockId> {
        let mut out = Vec::new();
        let mut at = self.head;
        while at != NONE {
            out.push(at);
            at = self.next[at as usize];
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::EvictableBlocks;

    #[test]
    fn keeps_free_order_through_removals() {
        let mut lru = EvictableBlocks::new(8);
        for block in [3, 1, 4, 5] {
            lru.push(block);
        }
        lru.remove(4);
        lru.remove(3);
        lru.push(3);
        assert_eq!(lru.in_order(), vec![1, 5, 3]);
        assert_eq!(lru.pop_oldest(), Some(1));
        assert_eq!(lru.pop_oldest(), Some(5));
        assert_eq!(lru.pop_oldest(), Some(3));
        assert_eq!(lru.pop_oldest(), None);
        assert_eq!(lru.len(), 0);
    }
}
