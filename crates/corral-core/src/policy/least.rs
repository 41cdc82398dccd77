//! Least outstanding connections: each new connection goes to the worker holding the fewest
//! open ones.
//!
//! The primary counts a connection as open from the moment it is handed to a worker until the
//! worker reports it closed (the Node addon does on the socket's `'close'`; a C worker calls
//! `corral_worker_closed`). A worker stuck on slow requests keeps its connections open longer,
//! so it is offered fewer new ones, where round-robin would give it 1/N regardless.
//!
//! Two ways to pick, both with the same bookkeeping:
//! - [`Pick::Least`]: scan every worker (O(N), exact). A tie between busy workers goes to the
//!   one that reported a close most recently: with few connections per worker, a worker stuck
//!   on one slow request and a healthy one serving one fast request both count 1, and rotation
//!   would hand the stuck one every other tie. Idle ties (and busy workers that never closed
//!   anything) go by rotation, so equal workers share evenly instead of the first one taking
//!   every tie.
//! - [`Pick::TwoChoices`]: the power of two random choices, the better of two workers drawn at
//!   random (O(1); within a small constant of exact and immune to the herd effect of many pickers
//!   seeing the same minimum), for large pools.

/// How a worker is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pick {
    /// The minimum over every worker.
    #[default]
    Least,
    /// The better of two drawn at random.
    TwoChoices,
}

/// Open connections per worker of one listener.
#[derive(Debug, Clone)]
pub struct LeastLoaded {
    pick: Pick,
    /// `(worker, open connections, sequence number of its latest close)` in join order.
    members: Vec<(u64, u32, u64)>,
    /// Counts closes, to order the members' latest ones (0: none yet).
    closes: u64,
    /// Where the next scan starts (the tie-breaking rotation).
    cursor: usize,
    /// xorshift64* state for [`Pick::TwoChoices`]; never 0.
    rng: u64,
}

impl LeastLoaded {
    /// An empty set of workers.
    pub fn new(pick: Pick) -> LeastLoaded {
        LeastLoaded {
            pick,
            members: Vec::new(),
            cursor: 0,
            closes: 0,
            rng: 0x2545_f491_4f6c_dd1d,
        }
    }

    /// Adds a worker with no connections (no-op if present).
    pub fn add(&mut self, id: u64) {
        if !self.members.iter().any(|&(m, _, _)| m == id) {
            self.members.push((id, 0, 0));
        }
    }

    /// Removes a worker.
    pub fn remove(&mut self, id: u64) -> bool {
        let Some(i) = self.members.iter().position(|&(m, _, _)| m == id) else {
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

    /// Open connections of `id`.
    pub fn load(&self, id: u64) -> Option<u32> {
        self.members
            .iter()
            .find(|&&(m, _, _)| m == id)
            .map(|&(_, n, _)| n)
    }

    /// A connection was handed to `id`.
    pub fn opened(&mut self, id: u64) {
        if let Some(m) = self.members.iter_mut().find(|m| m.0 == id) {
            m.1 = m.1.saturating_add(1);
        }
    }

    /// `id` reports one of its connections closed. A report with nothing open (a worker that
    /// reports more closes than it was handed) is ignored rather than trusted: the count never
    /// wraps and a confused worker cannot attract every connection.
    pub fn closed(&mut self, id: u64) {
        if let Some(m) = self.members.iter_mut().find(|m| m.0 == id) {
            if m.1 > 0 {
                m.1 -= 1;
                self.closes += 1;
                m.2 = self.closes;
            }
        }
    }

    /// The worker to hand the next connection to, among those `can_take` accepts (e.g. room in
    /// its window), and counts the connection as open there. Returns `None` when nobody can.
    pub fn offer(&mut self, mut can_take: impl FnMut(u64) -> bool) -> Option<u64> {
        let n = self.members.len();
        if n == 0 {
            return None;
        }
        let chosen = match self.pick {
            Pick::TwoChoices if n > 2 => {
                let a = self.draw(n);
                let b = (a + 1 + self.draw(n - 1)) % n;
                let (a, b) = if self.members[b].1 < self.members[a].1 {
                    (b, a)
                } else {
                    (a, b)
                };
                [a, b]
                    .into_iter()
                    .find(|&i| can_take(self.members[i].0))
                    .or_else(|| self.scan(&mut can_take))
            }
            _ => self.scan(&mut can_take),
        }?;
        self.cursor = (chosen + 1) % n;
        self.members[chosen].1 = self.members[chosen].1.saturating_add(1);
        Some(self.members[chosen].0)
    }

    /// Index of the least loaded member that can take, starting the scan at the cursor so ties
    /// rotate; among busy members with equal loads, the one whose latest close is the most
    /// recent (the module docs say why).
    fn scan(&self, can_take: &mut impl FnMut(u64) -> bool) -> Option<usize> {
        let n = self.members.len();
        let mut best: Option<usize> = None;
        for step in 0..n {
            let i = (self.cursor + step) % n;
            let better = best.map_or(true, |b| {
                let (m, b) = (self.members[i], self.members[b]);
                m.1 < b.1 || (m.1 == b.1 && m.1 > 0 && m.2 > b.2)
            });
            if better && can_take(self.members[i].0) {
                best = Some(i);
                if self.members[i].1 == 0 {
                    break;
                }
            }
        }
        best
    }

    /// A uniform index below `n` (n > 0).
    fn draw(&mut self, n: usize) -> usize {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
        // Lemire's multiply-shift: no modulo bias worth the name for pool sizes.
        ((u128::from(r) * n as u128) >> 64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(pick: Pick, n: u64) -> LeastLoaded {
        let mut l = LeastLoaded::new(pick);
        for id in 1..=n {
            l.add(id);
        }
        l
    }

    #[test]
    fn ties_rotate() {
        let mut l = pool(Pick::Least, 3);
        let got: Vec<_> = (0..3).map(|_| l.offer(|_| true).unwrap()).collect();
        assert_eq!(got, [1, 2, 3]);
        for id in 1..=3 {
            l.closed(id);
        }
        // Idle ties rotate; then all three are busy at 1 and the busy ties go to the one that
        // closed last first (3, then 2, then 1): still one each.
        let got: Vec<_> = (0..6).map(|_| l.offer(|_| true).unwrap()).collect();
        assert_eq!(got, [1, 2, 3, 3, 2, 1]);
    }

    #[test]
    fn a_slow_worker_gets_fewer_connections() {
        // Worker 3 never closes; 1 and 2 close each connection before the next arrives.
        let mut l = pool(Pick::Least, 3);
        let mut got = [0u32; 4];
        for _ in 0..300 {
            let w = l.offer(|_| true).unwrap();
            got[w as usize] += 1;
            if w != 3 {
                l.closed(w);
            }
        }
        assert_eq!(got[3], 1, "{got:?}");
        assert_eq!(got[1] + got[2], 299);
        assert!(got[1].abs_diff(got[2]) <= 1, "{got:?}");
        assert_eq!(l.load(3), Some(1));
    }

    #[test]
    fn skips_workers_that_cannot_take() {
        let mut l = pool(Pick::Least, 3);
        assert_eq!(l.offer(|id| id == 3), Some(3));
        assert_eq!(l.offer(|id| id != 1), Some(2));
        assert_eq!(l.offer(|_| false), None);
        assert_eq!(
            (l.load(1), l.load(2), l.load(3)),
            (Some(0), Some(1), Some(1))
        );
    }

    #[test]
    fn a_busy_tie_goes_to_the_worker_that_closed_last() {
        // Worker 1 is stuck on one slow connection; worker 2 serves one fast connection at a
        // time. Both count 1 whenever a new connection comes: every one of them must go to 2,
        // where rotation alone would give 1 every other one.
        let mut l = pool(Pick::Least, 2);
        assert_eq!(l.offer(|_| true), Some(1));
        assert_eq!(l.offer(|_| true), Some(2));
        for _ in 0..10 {
            l.closed(2);
            assert_eq!(l.offer(|_| true), Some(2), "2 is idle: the least loaded");
            assert_eq!(l.offer(|_| true), Some(2), "a tie at 1: 2 closed last");
            l.closed(2);
        }
        assert_eq!(l.load(1), Some(1));
        assert_eq!(l.load(2), Some(1));
        // Both idle: rotation again.
        l.closed(1);
        l.closed(2);
        let mut got = [l.offer(|_| true).unwrap(), l.offer(|_| true).unwrap()];
        got.sort_unstable();
        assert_eq!(got, [1, 2]);
    }

    #[test]
    fn bogus_close_reports_cannot_underflow() {
        let mut l = pool(Pick::Least, 2);
        for _ in 0..5 {
            l.closed(1);
        }
        l.closed(77);
        assert_eq!(l.load(1), Some(0));
        assert_eq!(l.offer(|_| true), Some(1));
    }

    #[test]
    fn removal_keeps_counts_and_turn() {
        let mut l = pool(Pick::Least, 3);
        l.offer(|_| true);
        l.offer(|_| true);
        assert!(l.remove(1));
        assert!(!l.remove(1));
        assert_eq!(l.offer(|_| true), Some(3));
        l.remove(2);
        l.remove(3);
        assert_eq!(l.offer(|_| true), None);
    }

    #[test]
    fn two_choices_keeps_a_pool_balanced() {
        let mut l = pool(Pick::TwoChoices, 16);
        // Every worker holds its connections: loads must stay within a small spread.
        for _ in 0..1600 {
            l.offer(|_| true).unwrap();
        }
        let loads: Vec<u32> = (1..=16).map(|id| l.load(id).unwrap()).collect();
        let (min, max) = (*loads.iter().min().unwrap(), *loads.iter().max().unwrap());
        assert!(max - min <= 3, "{loads:?}");
        // A worker that cannot take is skipped even when both draws miss it.
        let mut l = pool(Pick::TwoChoices, 8);
        for _ in 0..100 {
            assert_eq!(l.offer(|id| id == 5), Some(5));
        }
    }
}
