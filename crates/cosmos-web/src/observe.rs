//! What the server learns from the event stream it follows for its clients: how long runs
//! wait to be claimed, how long they take, how long the model itself ran, and what they
//! produced. The stream carries every process's events, so these count the work of every
//! worker on the database, from the moment the server started.

use std::collections::HashMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use cosmos_core::{Run, RunEvent, RunId, RunStatus};

/// A Prometheus histogram with fixed bounds (seconds).
#[derive(Debug, Clone)]
pub(crate) struct Histogram {
    bounds: &'static [f64],
    /// Observations at or under each bound (not cumulative; rendering sums them).
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    pub(crate) fn observe(&mut self, value: f64) {
        if !value.is_finite() || value < 0.0 {
            return;
        }
        if let Some(i) = self.bounds.iter().position(|b| value <= *b) {
            self.counts[i] += 1;
        }
        self.sum += value;
        self.count += 1;
    }

    pub(crate) fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, n) in self.bounds.iter().zip(&self.counts) {
            cumulative += n;
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

const WAIT_BOUNDS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0,
];
const RUN_BOUNDS: &[f64] = &[
    1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0,
];

/// When a run reached the stages the histograms measure between.
#[derive(Debug, Default)]
struct Marks {
    queued: Option<DateTime<Utc>>,
    running: Option<DateTime<Utc>>,
}

#[derive(Debug)]
pub(crate) struct Observed {
    marks: HashMap<RunId, Marks>,
    pub claim_latency: Histogram,
    pub run_duration: Histogram,
    pub model_time: Histogram,
    /// Runs that ended while the server watched, by final status.
    pub finished: HashMap<RunStatus, u64>,
    /// Bytes of verified outputs brought back.
    pub output_bytes: u64,
    /// Bytes of inputs uploaded to targets.
    pub input_bytes: u64,
}

fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds() as f64 / 1000.0
}

impl Observed {
    pub(crate) fn new() -> Self {
        Self {
            marks: HashMap::new(),
            claim_latency: Histogram::new(WAIT_BOUNDS),
            run_duration: Histogram::new(RUN_BOUNDS),
            model_time: Histogram::new(RUN_BOUNDS),
            finished: HashMap::new(),
            output_bytes: 0,
            input_bytes: 0,
        }
    }

    /// Notes an event; `true` when it ends its run (the caller then reads the run and
    /// passes it to [`Observed::ended`]).
    pub(crate) fn event(&mut self, e: &RunEvent) -> bool {
        match e.stage {
            RunStatus::Queued => {
                // A run queued again (a requeue after a lost target) waits afresh.
                self.marks.entry(e.run_id.clone()).or_default().queued = Some(e.at);
            }
            RunStatus::Staging => {
                self.input_bytes += cosmos_engine::uploaded_bytes(&e.message).unwrap_or(0);
                if let Some(m) = self.marks.get_mut(&e.run_id)
                    && let Some(q) = m.queued.take()
                {
                    self.claim_latency.observe(seconds(q, e.at));
                }
            }
            RunStatus::Running => {
                let m = self.marks.entry(e.run_id.clone()).or_default();
                m.running.get_or_insert(e.at);
            }
            RunStatus::Starting => {}
            RunStatus::Collecting
            | RunStatus::Succeeded
            | RunStatus::Failed
            | RunStatus::Cancelled => {
                if let Some(m) = self.marks.get_mut(&e.run_id)
                    && let Some(r) = m.running.take()
                {
                    self.model_time.observe(seconds(r, e.at));
                }
            }
        }
        if e.stage.is_terminal() {
            self.marks.remove(&e.run_id);
            return true;
        }
        false
    }

    pub(crate) fn ended(&mut self, run: &Run) {
        *self.finished.entry(run.status).or_insert(0) += 1;
        if let (Some(s), Some(f)) = (run.started_at, run.finished_at) {
            self.run_duration.observe(seconds(s, f));
        }
        self.output_bytes += run.outputs.iter().map(|o| o.size).sum::<u64>();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_count_each_observation_under_its_bound_cumulatively() {
        let mut h = Histogram::new(&[1.0, 10.0]);
        for v in [0.5, 1.0, 3.0, 50.0, f64::NAN] {
            h.observe(v);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"1\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"10\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 4\n"), "{out}");
        assert!(
            out.contains("x_sum 54.5\n") && out.contains("x_count 4\n"),
            "{out}"
        );
    }

    #[test]
    fn waits_and_model_time_are_measured_between_stages() {
        let id = RunId::new();
        let at =
            |ms: i64| DateTime::<Utc>::from_timestamp_millis(1_800_000_000_000 + ms).expect("time");
        let ev = |stage, ms| RunEvent {
            id: 0,
            run_id: id.clone(),
            at: at(ms),
            stage,
            progress: None,
            message: String::new(),
        };
        let mut o = Observed::new();
        assert!(!o.event(&ev(RunStatus::Queued, 0)));
        o.event(&ev(RunStatus::Staging, 2_000));
        o.event(&ev(RunStatus::Running, 5_000));
        o.event(&ev(RunStatus::Running, 6_000));
        o.event(&ev(RunStatus::Collecting, 65_000));
        assert!(o.event(&ev(RunStatus::Succeeded, 66_000)));
        assert_eq!((o.claim_latency.count, o.claim_latency.sum), (1, 2.0));
        assert_eq!((o.model_time.count, o.model_time.sum), (1, 60.0));
        assert!(o.marks.is_empty(), "nothing kept for ended runs");
    }
}
