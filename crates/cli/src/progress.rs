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

/// The monitor of a command: progress on stderr (a bar on a terminal, plain lines with the
/// rate otherwise), notes as lines prefixed with the command's name, and the SIGINT / SIGTERM
/// flag as the stop request.
pub struct Terminal {
    reporter: Reporter,
    name: &'static str,
}

impl Terminal {
    /// The monitor of command `name` (e.g. "gud train").
    pub fn new(name: &'static str) -> Self {
        Terminal {
            reporter: Reporter::new(name),
            name,
        }
    }
}

impl gud::Monitor for Terminal {
    fn progress(&self, phase: &str, done: usize, total: usize, detail: &str) {
        self.reporter.report(phase, done, total, detail);
    }

    fn should_stop(&self) -> bool {
        interrupted()
    }

    fn note(&self, message: &str) {
        self.reporter.println(&format!("{}: {message}", self.name));
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        self.reporter.finish();
    }
}

/// The phase being reported in plain lines: its name, when it started and at which count, and
/// when the last line was printed.
struct Phase {
    name: String,
    start: std::time::Instant,
    start_done: usize,
    printed: std::time::Instant,
}

/// `12s`, `3m04s`, `1h02m`.
fn duration(secs: f64) -> String {
    let s = secs.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// A progress bar on a terminal, plain log lines otherwise (every 5 s and at the end of a
/// phase, with the phase's rate and the time left).
pub struct Reporter {
    bar: Option<ProgressBar>,
    last: Mutex<Phase>,
    what: &'static str,
}

impl Reporter {
    /// `what` prefixes log lines.
    pub fn new(what: &'static str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new(1);
            b.set_style(
                ProgressStyle::with_template(
                    "{msg:>8} [{bar:40}] {pos}/{len} {per_sec} eta {eta} {prefix}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b
        });
        Reporter {
            bar,
            last: Mutex::new(Phase {
                name: String::new(),
                start: std::time::Instant::now(),
                start_done: 0,
                printed: std::time::Instant::now(),
            }),
            what,
        }
    }

    /// `done` of `total` in `phase`, with a detail (e.g. the current loss) beside the rate.
    pub fn report(&self, phase: &str, done: usize, total: usize, detail: &str) {
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
            if last.name != phase {
                *last = Phase {
                    name: phase.to_string(),
                    start: now,
                    start_done: done,
                    printed: now,
                };
                eprintln!("{} {phase}: {done}/{total} {detail}", self.what);
                return;
            }
            if now.duration_since(last.printed).as_secs_f64() > 5.0 || done == total {
                let secs = now.duration_since(last.start).as_secs_f64();
                let rate = done.saturating_sub(last.start_done) as f64 / secs.max(1e-9);
                let eta = if done < total && rate > 0.0 {
                    format!(", eta {}", duration((total - done) as f64 / rate))
                } else {
                    format!(", {} elapsed", duration(secs))
                };
                eprintln!(
                    "{} {phase}: {done}/{total} ({rate:.1}/s{eta}) {detail}",
                    self.what
                );
                last.printed = now;
            }
        }
    }

    /// A line of text that does not break the bar.
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(b) => b.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    /// Clears the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
