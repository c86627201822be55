//! Placement (DESIGN.md §4): which target and which of its GPUs a queued run gets. Pure, so
//! the store can decide inside the transaction that claims the run.

use std::collections::BTreeSet;

/// A target as the scheduler sees it at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSlots {
    pub name: String,
    /// GPU slots the target offers (its `gpus` setting).
    pub gpus: u32,
    /// Devices held by runs placed there and not finished.
    pub busy: BTreeSet<u32>,
    /// Takes only runs pinned to it (a rehearsal target beside real ones).
    pub pinned_only: bool,
}

impl TargetSlots {
    pub fn free(&self) -> u32 {
        (0..self.gpus).filter(|d| !self.busy.contains(d)).count() as u32
    }

    /// The lowest `want` free devices, if there are that many.
    pub fn take(&self, want: u32) -> Option<Vec<u32>> {
        let free: Vec<u32> = (0..self.gpus)
            .filter(|d| !self.busy.contains(d))
            .take(want as usize)
            .collect();
        (free.len() == want as usize && want > 0).then_some(free)
    }
}

/// Where a run goes: `pinned` restricts it to one target (and only a pinned run goes to a
/// `pinned_only` target); among those with `want` free slots, one that already holds the run's inputs (`holds_inputs`) wins, then the one with
/// the most free slots (spreading work), then the name (for a stable choice).
pub fn place(
    want: u32,
    pinned: Option<&str>,
    targets: &[TargetSlots],
    holds_inputs: impl Fn(&str) -> bool,
) -> Option<(String, Vec<u32>)> {
    targets
        .iter()
        .filter(|t| pinned.map_or(!t.pinned_only, |p| p == t.name))
        .filter_map(|t| t.take(want).map(|devices| (t, devices)))
        .max_by(|(a, _), (b, _)| {
            (holds_inputs(&a.name), a.free(), std::cmp::Reverse(&a.name)).cmp(&(
                holds_inputs(&b.name),
                b.free(),
                std::cmp::Reverse(&b.name),
            ))
        })
        .map(|(t, devices)| (t.name.clone(), devices))
}

/// How long a run waits before its `attempt`-th automatic retry: doubling from `base_ms`,
/// at most ten minutes.
pub fn retry_delay_ms(base_ms: u64, attempt: u32) -> u64 {
    base_ms
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(20))
        .min(600_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(name: &str, gpus: u32, busy: &[u32]) -> TargetSlots {
        TargetSlots {
            name: name.into(),
            gpus,
            busy: busy.iter().copied().collect(),
            pinned_only: false,
        }
    }

    #[test]
    fn a_pinned_only_target_takes_only_runs_pinned_to_it() {
        let rehearsal = TargetSlots {
            pinned_only: true,
            ..slots("rehearsal", 8, &[])
        };
        let all = [rehearsal, slots("gpu", 1, &[0])];
        let none = |_: &str| false;
        // The real target is full: the run waits rather than landing on the rehearsal.
        assert_eq!(place(1, None, &all, |t| t == "rehearsal"), None);
        assert_eq!(
            place(1, Some("rehearsal"), &all, none),
            Some(("rehearsal".into(), vec![0]))
        );
    }

    #[test]
    fn placement_picks_free_devices_and_prefers_inputs_then_room() {
        let a = slots("a", 8, &[0, 1, 2, 3, 4, 5]);
        let b = slots("b", 4, &[1]);
        let c = slots("c", 2, &[]);
        let all = [a.clone(), b.clone(), c.clone()];
        let none = |_: &str| false;
        // Most free room: b (3 free) over a (2) and c (2).
        assert_eq!(place(1, None, &all, none), Some(("b".into(), vec![0])));
        assert_eq!(
            place(3, None, &all, none),
            Some(("b".into(), vec![0, 2, 3]))
        );
        // Nobody has 4 free.
        assert_eq!(place(4, None, &all, none), None);
        // Inputs already there beat room.
        assert_eq!(
            place(2, None, &all, |t| t == "a"),
            Some(("a".into(), vec![6, 7]))
        );
        // Pinned: only that target, even when it is full.
        assert_eq!(
            place(2, Some("c"), &all, none),
            Some(("c".into(), vec![0, 1]))
        );
        assert_eq!(place(3, Some("c"), &all, none), None);
        assert_eq!(place(1, Some("gone"), &all, none), None);
        // Ties go by name.
        let twins = [slots("y", 2, &[]), slots("x", 2, &[])];
        assert_eq!(place(1, None, &twins, none), Some(("x".into(), vec![0])));
        // Zero GPUs is never a placement.
        assert_eq!(place(0, None, &all, none), None);
    }

    #[test]
    fn retries_back_off_to_a_ceiling() {
        assert_eq!(retry_delay_ms(1000, 1), 1000);
        assert_eq!(retry_delay_ms(1000, 2), 2000);
        assert_eq!(retry_delay_ms(1000, 4), 8000);
        assert_eq!(retry_delay_ms(1000, 40), 600_000);
    }
}
