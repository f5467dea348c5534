//! `--threads`: one setting for rayon (the mathematics) and libtorch (the network).
//!
//! The count is `--threads N` when given, else `RAYON_NUM_THREADS` or `OMP_NUM_THREADS` from
//! the environment, else the cores of the machine. For the network, a config's
//! `train.threads` stands between the flag and the environment.

use anyhow::{bail, Result};
use std::sync::OnceLock;

static FLAG: OnceLock<Option<usize>> = OnceLock::new();

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

/// Sets the rayon pool from `--threads` (or the environment, or the cores); call once.
pub fn init(flag: Option<usize>) -> Result<()> {
    if flag == Some(0) {
        bail!("--threads must be at least 1");
    }
    let _ = FLAG.set(flag);
    let n = flag.or_else(from_env).unwrap_or_else(cores);
    // fails only if a pool was built already, which nothing does before this
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global();
    Ok(())
}

/// libtorch's thread count: `--threads`, else the config's `train.threads`, else the
/// environment, else the cores.
#[cfg(feature = "nn")]
pub fn torch(config: Option<usize>) -> Option<usize> {
    FLAG.get()
        .copied()
        .flatten()
        .or(config)
        .or_else(from_env)
        .or_else(|| Some(cores()))
}
