//! The open-loop schedule: every send time is planned before the run starts, so
//! a slow answer delays nothing that follows (no coordinated omission).

/// How arrival times are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Arrivals {
    /// Exponential gaps (a Poisson process) of mean `1/rate`.
    Poisson,
    /// Exactly `1/rate` apart.
    Fixed,
}

/// SplitMix64: a small deterministic generator, so a seed reproduces a schedule.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn next_open01(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }
}

/// Planned send times, in microseconds from the start, of round trips at `rate`
/// per second over `seconds`.
pub fn schedule(rate: u64, seconds: u64, arrivals: Arrivals, seed: u64) -> Vec<u64> {
    let rate = rate.max(1) as f64;
    let end_us = seconds as f64 * 1e6;
    let mean_gap_us = 1e6 / rate;
    let mut out = Vec::with_capacity((rate * seconds as f64 * 1.05) as usize + 16);
    let mut rng = SplitMix64(seed);
    let mut t = 0.0f64;
    loop {
        t += match arrivals {
            Arrivals::Fixed => mean_gap_us,
            Arrivals::Poisson => -rng.next_open01().ln() * mean_gap_us,
        };
        if t >= end_us {
            return out;
        }
        out.push(t as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_arrivals_are_evenly_spaced() {
        let s = schedule(1000, 2, Arrivals::Fixed, 1);
        assert_eq!(s.len(), 1999);
        assert!(s.windows(2).all(|w| (999..=1001).contains(&(w[1] - w[0]))));
    }

    #[test]
    fn poisson_arrivals_keep_the_rate_and_order_and_repeat_by_seed() {
        let s = schedule(3000, 20, Arrivals::Poisson, 7);
        let n = s.len() as f64;
        assert!((n - 60_000.0).abs() < 60_000.0 * 0.02, "{n}");
        assert!(s.windows(2).all(|w| w[0] <= w[1]));
        assert!(*s.last().unwrap() < 20_000_000);
        assert_eq!(s, schedule(3000, 20, Arrivals::Poisson, 7));
        assert_ne!(s, schedule(3000, 20, Arrivals::Poisson, 8));
    }
}
