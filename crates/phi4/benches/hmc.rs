//! HMC throughput in site-updates per second (leapfrog steps x sites x chains / s) for
//! L = 8, 16, 32, 64, beside the vectorised numpy HMC of ../shared/bench/phi4_numpy_hmc.py
//! (same action, 256 chains, 10 leapfrog steps), and the ratio, from one run:
//!
//!     cargo bench -p gud-phi4 --bench hmc
//!
//! The numpy baseline needs python3 with numpy; set GUD_NUMPY_HMC to the script's path if it
//! is not at ../shared/bench/phi4_numpy_hmc.py beside the checkout.

use gud_phi4::hmc::run_fixed;
use gud_phi4::{Couplings, Lattice};
use std::path::PathBuf;
use std::process::Command;

const CHAINS: usize = 256;
const STEPS: usize = 10;
const EPS: f64 = 0.1;
const M2: f64 = -4.0;
const LAM: f64 = 8.0;

fn numpy_seconds(script: &std::path::Path, l: usize, traj: usize) -> Result<f64, String> {
    let code = format!(
        "import importlib.util, time\n\
         spec = importlib.util.spec_from_file_location('b', r'{}')\n\
         m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n\
         t = time.perf_counter()\n\
         m.hmc({l}, {M2}, {LAM}, n_samples={n}, seed=0, chains={CHAINS}, n_leap={STEPS}, eps={EPS}, therm=0, sep=1)\n\
         print(time.perf_counter() - t)\n",
        script.display(),
        n = CHAINS * traj
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(code)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr)
            .lines()
            .last()
            .unwrap_or("")
            .to_string());
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse::<f64>()
        .map_err(|e| e.to_string())
}

fn main() {
    let script = std::env::var_os("GUD_NUMPY_HMC")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/bench/phi4_numpy_hmc.py")
        });
    let threads = rayon::current_num_threads();
    println!("phi4 HMC throughput, m2 = {M2}, lam = {LAM}, {CHAINS} chains, {STEPS} leapfrog steps, {threads} threads");
    println!(
        "{:>4} {:>16} {:>16} {:>8}",
        "L", "gud site-upd/s", "numpy site-upd/s", "ratio"
    );
    for l in [8usize, 16, 32, 64] {
        let lat = Lattice::new(l, Couplings::new(M2, LAM).expect("couplings")).expect("lattice");
        let work = (CHAINS * STEPS * l * l) as f64; // site updates per trajectory (all chains)
                                                    // gud: about a second of work after a warm-up
        let traj = ((3e8 / work).ceil() as usize).max(10);
        run_fixed(&lat, CHAINS, EPS, STEPS, traj.min(20), 1);
        let (secs, _acc) = run_fixed(&lat, CHAINS, EPS, STEPS, traj, 1);
        let ours = traj as f64 * work / secs;
        // numpy: about a second too (its rate is lower)
        let ntraj = ((1e7 / work).ceil() as usize).max(3);
        match numpy_seconds(&script, l, ntraj) {
            Ok(s) => {
                let theirs = ntraj as f64 * work / s;
                println!(
                    "{l:>4} {ours:>16.3e} {theirs:>16.3e} {:>7.1}x",
                    ours / theirs
                );
            }
            Err(e) => println!(
                "{l:>4} {ours:>16.3e} {:>16} {:>8}  (numpy baseline failed: {e})",
                "n/a", "n/a"
            ),
        }
    }
}
