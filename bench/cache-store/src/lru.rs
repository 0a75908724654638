//! The baseline: a byte-bounded LRU (hash map + doubly linked list in a slab), what most
//! proxy caches use. Keyed by the numeric key: only its hit ratio is compared.

use std::collections::HashMap;

const NIL: usize = usize::MAX;

struct Node {
    key: u32,
    weight: u64,
    prev: usize,
    next: usize,
}

pub struct Lru {
    capacity: u64,
    bytes: u64,
    index: HashMap<u32, usize>,
    nodes: Vec<Node>,
    free: Vec<usize>,
    /// Most recently used.
    head: usize,
    /// Least recently used: the next victim.
    tail: usize,
}

impl Lru {
    pub fn new(capacity: u64) -> Self {
        Lru {
            capacity,
            bytes: 0,
            index: HashMap::new(),
            nodes: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
        }
    }

    /// A request: true on a hit (the key moves to the front), else the key is stored,
    /// evicting from the back until it fits.
    pub fn request(&mut self, key: u32, weight: u64) -> bool {
        if let Some(&node) = self.index.get(&key) {
            self.unlink(node);
            self.push_front(node);
            return true;
        }
        if weight > self.capacity {
            return false;
        }
        while self.bytes + weight > self.capacity {
            let victim = self.tail;
            self.unlink(victim);
            self.bytes -= self.nodes[victim].weight;
            self.index.remove(&self.nodes[victim].key);
            self.free.push(victim);
        }
        let node = Node {
            key,
            weight,
            prev: NIL,
            next: NIL,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.nodes[slot] = node;
                slot
            }
            None => {
                self.nodes.push(node);
                self.nodes.len() - 1
            }
        };
        self.push_front(slot);
        self.index.insert(key, slot);
        self.bytes += weight;
        false
    }

    fn unlink(&mut self, node: usize) {
        let (prev, next) = (self.nodes[node].prev, self.nodes[node].next);
        match prev {
            NIL => self.head = next,
            p => self.nodes[p].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.nodes[n].prev = prev,
        }
    }

    fn push_front(&mut self, node: usize) {
        self.nodes[node].prev = NIL;
        self.nodes[node].next = self.head;
        match self.head {
            NIL => self.tail = node,
            h => self.nodes[h].prev = node,
        }
        self.head = node;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_least_recently_used_within_the_bound() {
        let mut lru = Lru::new(30);
        assert!(!lru.request(1, 10));
        assert!(!lru.request(2, 10));
        assert!(!lru.request(3, 10));
        assert!(lru.request(1, 10));
        assert!(!lru.request(4, 10)); // evicts 2
        assert!(!lru.request(2, 10)); // evicts 3
        assert!(lru.request(1, 10));
        assert!(lru.request(4, 10));
        assert!(!lru.request(5, 31));
        assert!(lru.bytes <= lru.capacity);
    }
}
