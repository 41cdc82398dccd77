//! The rotation of one listener's workers: the next worker after the last one served that can
//! take a connection now.

/// Worker ids in join order, with a cursor.
#[derive(Debug, Default, Clone)]
pub struct Rotation {
    members: Vec<u64>,
    cursor: usize,
}

impl Rotation {
    /// Adds a worker at the end (no-op if present).
    pub fn add(&mut self, id: u64) {
        if !self.members.contains(&id) {
            self.members.push(id);
        }
    }

    /// Removes a worker; the cursor keeps pointing at the same next worker.
    pub fn remove(&mut self, id: u64) -> bool {
        let Some(i) = self.members.iter().position(|&m| m == id) else {
            return false;
        };
        self.members.remove(i);
        if i < self.cursor {
            self.cursor -= 1;
        }
        if self.cursor >= self.members.len() {
            self.cursor = 0;
        }
        true
    }

    /// Whether `id` is in the rotation.
    pub fn contains(&self, id: u64) -> bool {
        self.members.contains(&id)
    }

    /// Number of workers.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// No workers.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Workers in join order.
    pub fn members(&self) -> &[u64] {
        &self.members
    }

    /// Offers the next workers in turn to `take` until one accepts (returns true); the cursor
    /// moves past it. Each worker is offered at most once. Returns the worker that took it.
    pub fn offer(&mut self, mut take: impl FnMut(u64) -> bool) -> Option<u64> {
        let n = self.members.len();
        for step in 0..n {
            let i = (self.cursor + step) % n;
            let id = self.members[i];
            if take(id) {
                self.cursor = (i + 1) % n;
                return Some(id);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_and_skips_full_workers() {
        let mut r = Rotation::default();
        for id in 1..=3 {
            r.add(id);
        }
        let got: Vec<_> = (0..6).map(|_| r.offer(|_| true).unwrap()).collect();
        assert_eq!(got, [1, 2, 3, 1, 2, 3]);
        assert_eq!(r.offer(|id| id != 1), Some(2));
        assert_eq!(r.offer(|id| id == 1), Some(1));
        assert_eq!(r.offer(|_| false), None);
    }

    #[test]
    fn removal_keeps_the_turn() {
        let mut r = Rotation::default();
        for id in 1..=3 {
            r.add(id);
        }
        assert_eq!(r.offer(|_| true), Some(1));
        assert!(r.remove(1));
        assert_eq!(r.offer(|_| true), Some(2));
        assert!(r.remove(3));
        assert_eq!(r.offer(|_| true), Some(2));
        assert!(!r.remove(9));
        r.remove(2);
        assert!(r.is_empty());
        assert_eq!(r.offer(|_| true), None);
    }
}
