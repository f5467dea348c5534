//! Progress display and signal handling shared by the long-running commands.
//!
//! SIGINT (Ctrl-C) and SIGTERM (what Slurm, systemd and `timeout` send) both ask the running
//! loop to stop at its next consistent state: training saves a checkpoint, every other command
//! stops without writing its outputs. The process then exits with 130 (SIGINT) or 143 (SIGTERM).

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

struct Signals {
    stop: Arc<AtomicBool>,
    /// 128 + the signal number of the first signal received (0: none).
    code: Arc<AtomicUsize>,
}

fn signals() -> &'static Signals {
    static SIGNALS: OnceLock<Signals> = OnceLock::new();
    SIGNALS.get_or_init(|| {
        let s = Signals {
            stop: Arc::new(AtomicBool::new(false)),
            code: Arc::new(AtomicUsize::new(0)),
        };
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // a second signal while stopping is ignored: the loop stops at its next check
            let _ = signal_hook::flag::register(sig, Arc::clone(&s.stop));
            let code = Arc::clone(&s.code);
            let _ = signal_hook::flag::register_usize(sig, code, 128 + sig as usize);
        }
        s
    })
}

/// Installs the SIGINT and SIGTERM handlers (call once at start-up).
pub fn install_signal_handlers() {
    signals();
}

/// The stop flag set by SIGINT or SIGTERM; long loops poll it.
pub fn stop_flag() -> &'static AtomicBool {
    &signals().stop
}

/// True once SIGINT or SIGTERM arrived.
pub fn interrupted() -> bool {
    stop_flag().load(Ordering::Relaxed)
}

/// The exit status of a command stopped by a signal: 130 for SIGINT, 143 for SIGTERM.
pub fn signal_exit_code() -> u8 {
    match signals().code.load(Ordering::Relaxed) {
        0 => 130,
        c => c.min(255) as u8,
    }
}

/// The error of a command stopped by SIGINT or SIGTERM; `main` maps it to 130 or 143.
#[derive(Debug)]
pub struct Interrupted {
    /// What was kept: "nothing was written", "checkpoint saved in RUN", ...
    pub kept: String,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interrupted: {}", self.kept)
    }
}

impl std::error::Error for Interrupted {}

/// The [`Interrupted`] error, for `?` in a command.
pub fn interrupted_error(kept: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Interrupted { kept: kept.into() })
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
