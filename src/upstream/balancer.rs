//! Smooth weighted round-robin (the algorithm nginx uses): each pick adds every endpoint's
//! weight to its running score, takes the highest, and subtracts the total from it. Over
//! one cycle each endpoint is picked exactly `weight` times, interleaved rather than in
//! bursts (weights 5,1,1 give a a b a c a a, not a a a a a b c).

pub struct WeightedRoundRobin {
    weights: Vec<i64>,
    scores: Vec<i64>,
    total: i64,
}

impl WeightedRoundRobin {
    pub fn new(weights: impl Iterator<Item = u32>) -> Self {
        let weights: Vec<i64> = weights.map(i64::from).collect();
        let total = weights.iter().sum();
        WeightedRoundRobin {
            scores: vec![0; weights.len()],
            weights,
            total,
        }
    }

    /// The index of the next endpoint, or `None` when there are none.
    pub fn pick(&mut self) -> Option<usize> {
        let mut best: Option<usize> = None;
        for i in 0..self.weights.len() {
            self.scores[i] += self.weights[i];
            if best.is_none_or(|b| self.scores[i] > self.scores[b]) {
                best = Some(i);
            }
        }
        let chosen = best?;
        self.scores[chosen] -= self.total;
        Some(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_follow_weights_smoothly() {
        let mut wrr = WeightedRoundRobin::new([5, 1, 1].into_iter());
        let picks: Vec<usize> = (0..7).map(|_| wrr.pick().unwrap()).collect();
        assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]);
        let mut counts = [0; 3];
        for _ in 0..700 {
            counts[wrr.pick().unwrap()] += 1;
        }
        assert_eq!(counts, [500, 100, 100]);
    }

    #[test]
    fn empty_has_no_pick() {
        assert_eq!(WeightedRoundRobin::new(std::iter::empty()).pick(), None);
    }
}
