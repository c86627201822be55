//! What the store's tests (and its claim benchmark) build their data from.

/// An input set of one colour video; the tag names it and makes its hash.
pub use cosmos_testkit::sample_input_set as input_set;

/// The placement the engine's direct scheduler makes (pin, inputs, most free slots), for
/// claims made without the engine.
#[derive(Debug)]
#[allow(dead_code)] // the sqlite tests share this module without claiming
pub struct Place;

impl cosmos_store::Placer for Place {
    fn place(
        &self,
        run: &cosmos_store::Candidate,
        slots: &[cosmos_core::queue::TargetSlots],
    ) -> Option<(String, Vec<u32>)> {
        cosmos_core::queue::place(run.gpus, run.target_pin.as_deref(), slots, |t| {
            run.inputs_on.contains(t)
        })
    }
}
