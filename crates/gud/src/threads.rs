//! One thread setting for rayon (the mathematics) and libtorch (the network).
//!
//! The count is the one given to [`init`] (the binary's `--threads`), else `RAYON_NUM_THREADS`
//! or `OMP_NUM_THREADS` from the environment, else the cores of the machine. For the network,
//! a config's `train.threads` stands between the given count and the environment.

use crate::error::Result;
use std::sync::OnceLock;

static GIVEN: OnceLock<Option<usize>> = OnceLock::new();

/// The thread count named by the environment (RAYON_NUM_THREADS, then OMP_NUM_THREADS).
fn from_env() -> Option<usize> {
    ["RAYON_NUM_THREADS", "OMP_NUM_THREADS"]
        .iter()
        .find_map(|k| std::env::var(k).ok()?.trim().parse::<usize>().ok())
        .filter(|&n| n >= 1)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Sets the global rayon pool from `threads` (or the environment, or the cores) and remembers
/// `threads` for libtorch; call once, before any parallel work.
pub fn init(threads: Option<usize>) -> Result<()> {
    if threads == Some(0) {
        return Err(gud_core::Error::param("threads", 0, "at least 1").into());
    }
    let _ = GIVEN.set(threads);
    let n = threads.or_else(from_env).unwrap_or_else(cores);
    // fails only if a pool was built already (a library user's own): theirs is kept
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global();
    Ok(())
}

/// libtorch's thread count: the one given to [`init`], else the config's `train.threads`, else
/// the environment, else the cores.
pub fn torch(config: Option<usize>) -> usize {
    GIVEN
        .get()
        .copied()
        .flatten()
        .or(config)
        .or_else(from_env)
        .unwrap_or_else(cores)
}
