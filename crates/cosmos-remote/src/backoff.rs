//! Waits between retries, spread out: when a network blip hits many runs (or workers) at
//! once, their retries should not all arrive at the host in the same instant.

use std::hash::BuildHasher;
use std::time::Duration;

/// `wait` shortened by a random part of up to half ("equal jitter"): somewhere in
/// `[wait / 2, wait]`.
pub fn jittered(wait: Duration) -> Duration {
    // A fresh RandomState is seeded from the OS once per thread and then advanced per
    // instance: enough randomness to de-synchronise retries, with no dependency.
    let r = std::collections::hash_map::RandomState::new().hash_one(std::time::Instant::now());
    let fraction = (r % 1_000_001) as f64 / 1_000_000.0;
    wait.mul_f64(1.0 - fraction / 2.0)
}

#[cfg(test)]
mod tests {
    use super::jittered;
    use std::collections::BTreeSet;
    use std::time::Duration;

    #[test]
    fn jitter_stays_between_half_and_whole_and_varies() {
        let wait = Duration::from_millis(1000);
        let mut seen = BTreeSet::new();
        for _ in 0..200 {
            let j = jittered(wait);
            assert!(j >= wait / 2 && j <= wait, "{j:?}");
            seen.insert(j);
        }
        assert!(seen.len() > 100, "only {} distinct waits", seen.len());
        assert_eq!(jittered(Duration::ZERO), Duration::ZERO);
    }
}
