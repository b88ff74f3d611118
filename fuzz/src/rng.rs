//! The harness's random numbers: SplitMix64, chosen because it is tiny, fast, and its output
//! for a given seed never changes with a dependency upgrade, so a reported input can always
//! be regenerated from `(seed, target, index)`.

/// A SplitMix64 generator (Steele, Lea and Flood, 2014).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The generator of input `index` of a run: a pure function of the run's seed, the
    /// target's name and the index, so any input can be regenerated on its own.
    pub fn for_input(seed: u64, target: &str, index: u64) -> Self {
        let mut h = 0xcbf2_9ce4_8422_2325_u64;
        for b in target.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let mut rng = Self(seed ^ h.rotate_left(17) ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        rng.next_u64();
        rng
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        // Lemire's multiply-shift: unbiased enough for fuzzing, and division-free.
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi.saturating_sub(lo).saturating_add(1))
    }

    /// True with probability `1 / n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// A random byte.
    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    /// One element of a non-empty slice (the first when `items` is empty is impossible:
    /// callers pass constant, non-empty tables).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len()))
    }

    /// A size biased towards small values: most mutations touch a few bytes, some many.
    pub fn small_len(&mut self, max: usize) -> usize {
        let cap = match self.below(4) {
            0 => 1,
            1 => 4,
            2 => 32,
            _ => max,
        };
        self.range(1, cap.min(max).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_numbers() {
        let a: Vec<u64> = (0..8)
            .map(|i| Rng::for_input(7, "t", i).next_u64())
            .collect();
        let b: Vec<u64> = (0..8)
            .map(|i| Rng::for_input(7, "t", i).next_u64())
            .collect();
        assert_eq!(a, b);
        assert_ne!(
            Rng::for_input(7, "t", 0).next_u64(),
            Rng::for_input(7, "u", 0).next_u64()
        );
        assert_ne!(
            Rng::for_input(7, "t", 0).next_u64(),
            Rng::for_input(8, "t", 0).next_u64()
        );
    }

    #[test]
    fn below_stays_in_range() {
        let mut rng = Rng::new(1);
        for n in 1..200 {
            assert!(rng.below(n) < n);
        }
        assert_eq!(rng.below(0), 0);
    }
}
