//! The scheduler seam (DESIGN.md §3, §4): what decides where a queued run goes and on which
//! GPUs. The store keeps a claim atomic and asks the scheduler; the direct scheduler places
//! runs on a target's free GPU slots now. Slurm and batches come as further schedulers.

use cosmos_core::queue::{TargetSlots, place};
use cosmos_store::{Candidate, Placer};

/// Places claimed runs on targets.
pub trait Scheduler: Placer {
    /// Its name, for logs and `cosmos status`.
    fn name(&self) -> &'static str;
}

/// Starts runs at once on free GPU slots: the target the run is pinned to, else one that
/// already holds its inputs, else the one with the most free slots; the lowest free devices.
#[derive(Debug, Clone, Copy, Default)]
pub struct DirectScheduler;

impl Placer for DirectScheduler {
    fn place(&self, run: &Candidate, slots: &[TargetSlots]) -> Option<(String, Vec<u32>)> {
        let holds_inputs = |t: &str| run.inputs_on.contains(t);
        if run.avoid.is_empty() {
            return place(run.gpus, run.target_pin.as_deref(), slots, holds_inputs);
        }
        // Never again where it could not start.
        let open: Vec<TargetSlots> = slots
            .iter()
            .filter(|s| !run.avoid.contains(&s.name))
            .cloned()
            .collect();
        place(run.gpus, run.target_pin.as_deref(), &open, holds_inputs)
    }
}

impl Scheduler for DirectScheduler {
    fn name(&self) -> &'static str {
        "direct"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_scheduler_prefers_the_pin_then_the_inputs_then_room() {
        let slots = [
            TargetSlots {
                name: "a".into(),
                gpus: 2,
                busy: [0].into(),
                pinned_only: false,
            },
            TargetSlots {
                name: "b".into(),
                gpus: 4,
                busy: Default::default(),
                pinned_only: false,
            },
        ];
        let run = |pin: Option<&str>, on: &[&str]| Candidate {
            run: cosmos_core::RunId::new(),
            gpus: 1,
            target_pin: pin.map(str::to_owned),
            inputs_on: on.iter().map(|s| (*s).to_owned()).collect(),
            avoid: Default::default(),
        };
        let s = DirectScheduler;
        assert_eq!(
            s.place(&run(None, &[]), &slots),
            Some(("b".into(), vec![0]))
        );
        assert_eq!(
            s.place(&run(None, &["a"]), &slots),
            Some(("a".into(), vec![1]))
        );
        assert_eq!(
            s.place(&run(Some("a"), &[]), &slots),
            Some(("a".into(), vec![1]))
        );
        let big = Candidate {
            gpus: 2,
            ..run(Some("a"), &[])
        };
        assert_eq!(s.place(&big, &slots), None, "a has one free slot");
        let burnt = Candidate {
            avoid: ["b".to_owned()].into(),
            ..run(None, &[])
        };
        assert_eq!(
            s.place(&burnt, &slots),
            Some(("a".into(), vec![1])),
            "not where it could not start"
        );
    }
}
