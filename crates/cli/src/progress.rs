//! Progress display and Ctrl-C handling shared by the long-running commands.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

/// Set by Ctrl-C (the handler is installed on first use); long loops poll it and stop without
/// writing anything (every output is written atomically at the end).
pub fn stop_flag() -> &'static AtomicBool {
    static STOP: OnceLock<&'static AtomicBool> = OnceLock::new();
    STOP.get_or_init(|| {
        let flag: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
        // a second Ctrl-C while stopping is ignored: the loop stops at its next check
        let _ = ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed));
        flag
    })
}

/// True once Ctrl-C was pressed.
pub fn interrupted() -> bool {
    stop_flag().load(Ordering::Relaxed)
}

/// A progress bar on a terminal, plain log lines otherwise.
pub struct Reporter {
    bar: Option<ProgressBar>,
    last: Mutex<(String, std::time::Instant)>,
    what: &'static str,
    unit: &'static str,
}

impl Reporter {
    /// `what` prefixes log lines; `unit` names what is counted.
    pub fn new(what: &'static str, unit: &'static str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new(1);
            b.set_style(
                ProgressStyle::with_template(&format!(
                    "{{msg:>8}} [{{bar:40}}] {{pos}}/{{len}} {unit} {{per_sec}} eta {{eta}} {{prefix}}"
                ))
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b
        });
        Reporter {
            bar,
            last: Mutex::new((String::new(), std::time::Instant::now())),
            what,
            unit,
        }
    }

    pub fn report(&self, phase: &str, done: usize, total: usize) {
        self.report_with(phase, done, total, "");
    }

    /// As [`Reporter::report`], with a detail (e.g. the current loss) shown beside the rate.
    pub fn report_with(&self, phase: &str, done: usize, total: usize, detail: &str) {
        if let Some(b) = &self.bar {
            b.set_prefix(detail.to_string());
            if b.message() != phase {
                b.set_message(phase.to_string());
                b.set_length(total as u64);
                b.reset();
            }
            b.set_position(done as u64);
        } else if let Ok(mut last) = self.last.lock() {
            let now = std::time::Instant::now();
            if last.0 != phase || now.duration_since(last.1).as_secs_f64() > 5.0 || done == total {
                eprintln!(
                    "{} {phase}: {done}/{total} {} {detail}",
                    self.what, self.unit
                );
                *last = (phase.to_string(), now);
            }
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
