//! Places in a vector that are reused once freed, each named by its index while its holder
//! lives: for waiters that register and leave at a high rate (idle deadlines, drain
//! waiters), so that the many short waits of a busy worker leave nothing behind.

pub struct Slots<T> {
    items: Vec<Option<T>>,
    free: Vec<usize>,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots {
            items: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T> Slots<T> {
    /// Stores `item` in a freed place if there is one; returns its index.
    pub fn insert(&mut self, item: T) -> usize {
        match self.free.pop() {
            Some(index) => {
                self.items[index] = Some(item);
                index
            }
            None => {
                self.items.push(Some(item));
                self.items.len() - 1
            }
        }
    }

    /// Frees the place `index` (which `insert` returned).
    pub fn remove(&mut self, index: usize) {
        if let Some(place) = self.items.get_mut(index) {
            if place.take().is_some() {
                self.free.push(index);
            }
        }
    }

    pub fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        self.items.get_mut(index)?.as_mut()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.items.iter_mut().flatten()
    }

    /// No place is taken.
    pub fn is_empty(&self) -> bool {
        self.free.len() == self.items.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_places_are_reused() {
        let mut slots = Slots::default();
        let a = slots.insert("a");
        let b = slots.insert("b");
        slots.remove(a);
        slots.remove(a);
        assert_eq!(slots.get_mut(a), None);
        assert_eq!(slots.insert("c"), a, "the freed place, once");
        assert_eq!(slots.insert("d"), 2);
        assert_eq!(
            slots.iter_mut().map(|s| *s).collect::<Vec<_>>(),
            ["c", "b", "d"]
        );
        for index in [a, b, 2] {
            slots.remove(index);
        }
        assert!(slots.is_empty());
    }
}
