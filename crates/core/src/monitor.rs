//! One observer for every long loop (sampling, training, HMC, likelihood, sweeps): it hears
//! progress by phase and can ask the loop to stop.
//!
//! A loop calls [`Monitor::progress`] after each unit of work and polls
//! [`Monitor::should_stop`] at each consistent state (a finished batch, a saved checkpoint, a
//! round of trajectories). On a stop request it returns the typed [`Interrupted`] error, saying
//! what it kept; library code never exits the process. The binary implements a monitor with a
//! progress bar and the SIGINT / SIGTERM flag; tests use [`StopAfter`].
//!
//! ```
//! use gud_core::monitor::{Monitor, StopAfter};
//! let m = StopAfter::new(2);
//! m.progress("sampling", 1, 10, "");
//! assert!(!m.should_stop());
//! m.progress("sampling", 2, 10, "");
//! assert!(m.should_stop());
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};

/// Progress by phase and a stop request, shared by every long loop. `Sync`: HMC and the
/// batched samplers report from worker threads' results.
pub trait Monitor: Sync {
    /// `done` of `total` units of `phase` are complete; `detail` is a short note (e.g. the
    /// current loss) or empty.
    fn progress(&self, phase: &str, done: usize, total: usize, detail: &str) {
        let _ = (phase, done, total, detail);
    }

    /// True when the loop should stop at its next consistent state.
    fn should_stop(&self) -> bool {
        false
    }

    /// A message for the user (what is being generated, a warning); never an error.
    fn note(&self, message: &str) {
        let _ = message;
    }
}

/// The monitor that shows nothing and never stops.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Monitor for Silent {}

/// A monitor that asks to stop once `limit` progress reports have arrived (tests of every
/// loop's stop path), and keeps the notes it heard.
#[derive(Debug, Default)]
pub struct StopAfter {
    limit: usize,
    seen: AtomicUsize,
    notes: std::sync::Mutex<Vec<String>>,
}

impl StopAfter {
    /// Stops after `limit` progress reports (0: at the first check).
    pub fn new(limit: usize) -> Self {
        StopAfter {
            limit,
            seen: AtomicUsize::new(0),
            notes: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Progress reports received so far.
    pub fn reports(&self) -> usize {
        self.seen.load(Ordering::Relaxed)
    }

    /// The notes received so far.
    pub fn notes(&self) -> Vec<String> {
        self.notes.lock().map(|n| n.clone()).unwrap_or_default()
    }
}

impl Monitor for StopAfter {
    fn progress(&self, _: &str, _: usize, _: usize, _: &str) {
        self.seen.fetch_add(1, Ordering::Relaxed);
    }

    fn should_stop(&self) -> bool {
        self.reports() >= self.limit
    }

    fn note(&self, message: &str) {
        if let Ok(mut n) = self.notes.lock() {
            n.push(message.to_string());
        }
    }
}

/// A long loop stopped at a consistent state because its [`Monitor`] asked it to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interrupted {
    /// What was kept: "nothing was written", "checkpoint of step 40 saved in RUN", ...
    pub kept: String,
}

impl Interrupted {
    /// The interruption of a loop that kept `kept`.
    pub fn new(kept: impl Into<String>) -> Self {
        Interrupted { kept: kept.into() }
    }
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interrupted: {}", self.kept)
    }
}

impl std::error::Error for Interrupted {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silent_never_stops_and_stop_after_counts_reports() {
        assert!(!Silent.should_stop());
        let m = StopAfter::new(3);
        for k in 0..3 {
            assert!(!m.should_stop(), "after {k} reports");
            m.progress("p", k, 3, "");
        }
        assert!(m.should_stop());
        m.note("hello");
        assert_eq!(m.notes(), ["hello"]);
        assert!(StopAfter::new(0).should_stop());
    }
}
