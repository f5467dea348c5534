//! `gud phi4 sample` and `gud phi4 observe`: the lattice phi^4 generator and its observables.

use crate::progress::Terminal;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use gud_phi4::hmc::{sample, HmcConfig};
use gud_phi4::observables::{measure, Observables};
use gud_phi4::stats::Estimate;
use gud_phi4::{Couplings, Lattice};
use std::path::{Path, PathBuf};

/// The couplings, in either convention.
#[derive(Args, Debug, Clone)]
pub struct CouplingArgs {
    /// m^2 of S = sum [ (d phi)^2 + m2 phi^2 + lam phi^4 ].
    #[arg(long, allow_hyphen_values = true, requires = "lam", conflicts_with_all = ["kappa", "lambda"])]
    pub m2: Option<f64>,
    /// lambda of S = sum [ (d phi)^2 + m2 phi^2 + lam phi^4 ].
    #[arg(long, requires = "m2")]
    pub lam: Option<f64>,
    /// Hopping parameter kappa of S = sum [ -2 kappa phi_x phi_{x+mu} + (1 - 2 lambda) phi^2 + lambda phi^4 ];
    /// fields are then read and written in that normalisation.
    #[arg(long, requires = "lambda")]
    pub kappa: Option<f64>,
    /// lambda of the hopping convention (with --kappa).
    #[arg(long, requires = "kappa")]
    pub lambda: Option<f64>,
}

impl CouplingArgs {
    /// The couplings in gud's convention and the factor phi = factor * field of the file.
    fn resolve(&self) -> Result<Option<(Couplings, f64)>> {
        Ok(match (self.m2, self.lam, self.kappa, self.lambda) {
            (Some(m2), Some(lam), None, None) => Some((Couplings::new(m2, lam)?, 1.0)),
            (None, None, Some(k), Some(l)) => Some((Couplings::from_hopping(k, l)?, k.sqrt())),
            (None, None, None, None) => None,
            _ => bail!("give the couplings as --m2 M --lam LAM or as --kappa K --lambda L"),
        })
    }
}

#[derive(Subcommand, Debug)]
pub enum Phi4Command {
    /// Generate configurations by HMC and write them as float32 (N, L, L) .npy.
    Sample {
        #[arg(long)]
        size: usize,
        #[command(flatten)]
        couplings: CouplingArgs,
        #[arg(long, allow_hyphen_values = true)]
        samples: i64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
        /// Parallel chains.
        #[arg(long, default_value_t = 64)]
        chains: usize,
        /// Leapfrog steps per trajectory.
        #[arg(long, default_value_t = 10)]
        leapfrog: usize,
        #[arg(long, default_value_t = 0.8)]
        target_acceptance: f64,
        /// Thermalisation trajectories (default: max(300, 20 tau_int) from a pilot run).
        #[arg(long)]
        therm: Option<usize>,
        /// Trajectories between saved configurations (default: ceil(2 tau_int)).
        #[arg(long)]
        sep: Option<usize>,
    },
    /// Every observable of SPEC section 7 with binned-jackknife errors and tau_int.
    Observe {
        /// Configurations, (N, L, L) or (N, 1, L, L) .npy, in Monte Carlo order.
        file: PathBuf,
        #[command(flatten)]
        couplings: CouplingArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: Phi4Command) -> Result<()> {
    match cmd {
        Phi4Command::Sample {
            size,
            couplings,
            samples,
            seed,
            out,
            chains,
            leapfrog,
            target_acceptance,
            therm,
            sep,
        } => {
            let Some((c, factor)) = couplings.resolve()? else {
                bail!("phi4 sample needs couplings: --m2 M --lam LAM or --kappa K --lambda L");
            };
            if samples <= 0 {
                bail!("--samples must be a positive number of configurations, got {samples}");
            }
            let lat = Lattice::new(size, c)?;
            let mut outputs = gud_io::atomic::Outputs::new::<&Path>([]);
            let npy_out = outputs.stage(&out)?;
            let cfg = HmcConfig {
                chains,
                leapfrog_steps: leapfrog,
                target_acceptance,
                therm,
                sep,
                seed,
                ..HmcConfig::default()
            };
            let run = hmc_with_progress(&lat, samples as usize, &cfg)?;
            let data: Vec<f64> = run.configs.iter().map(|p| p / factor).collect();
            gud_io::npy::write_f32(&npy_out, &[samples as usize, size, size], &data)?;
            outputs.commit()?;
            let mut summary = serde_json::to_value(&run.summary)?;
            summary["out"] = serde_json::json!(out.display().to_string());
            if factor != 1.0 {
                summary["kappa"] = serde_json::json!(couplings.kappa);
                summary["lambda"] = serde_json::json!(couplings.lambda);
                summary["field_normalisation"] =
                    serde_json::json!("hopping (varphi = phi / sqrt(kappa))");
            }
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(())
        }
        Phi4Command::Observe {
            file,
            couplings,
            json,
        } => {
            let resolved = couplings.resolve()?;
            let (l, configs) = read_configs(&file)?;
            let factor = resolved.map_or(1.0, |r| r.1);
            let phi: Vec<f64> = configs.iter().map(|v| v * factor).collect();
            let obs = measure(&phi, l, resolved.map(|r| r.0))
                .with_context(|| format!("measuring {}", file.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&obs)?);
            } else {
                print_table(&file, &obs);
            }
            Ok(())
        }
    }
}

/// HMC with a progress bar; SIGINT / SIGTERM stop it with the typed interruption (nothing
/// written).
fn hmc_with_progress(lat: &Lattice, samples: usize, cfg: &HmcConfig) -> Result<gud_phi4::HmcRun> {
    let run = sample(lat, samples, cfg, &Terminal::new("phi4"));
    Ok(run.map_err(gud::Error::from)?)
}

/// Reads (N, L, L) or (N, 1, L, L) configurations.
pub fn read_configs(path: &Path) -> Result<(usize, Vec<f64>)> {
    let arr = gud_io::npy::read_array(path)?;
    let l = match arr.shape[..] {
        [_, a, b] | [_, 1, a, b] if a == b && a >= 2 => a,
        _ => bail!(
            "{}: array has shape {:?}; expected lattice configurations (N, L, L) with L >= 2",
            path.display(),
            arr.shape
        ),
    };
    if arr.shape[0] < 2 {
        bail!(
            "{}: {} configuration(s); at least 2 are needed for errors",
            path.display(),
            arr.shape[0]
        );
    }
    if let Some(i) = arr.data.iter().position(|v| !v.is_finite()) {
        bail!(
            "{}: non-finite value in configuration {} at site {}",
            path.display(),
            i / (l * l),
            i % (l * l)
        );
    }
    Ok((l, arr.data))
}

fn fmt(e: &Estimate) -> String {
    format!("{:>12.6} +- {:<10.6}", e.value, e.error)
}

fn print_table(file: &Path, o: &Observables) {
    println!(
        "{}: N = {}, L = {}, {} bins of {}",
        file.display(),
        o.n,
        o.l,
        o.bins,
        o.bin_size
    );
    println!(
        "  tau_int(|M|) = {:.2} +- {:.2}, tau_int(phi^2) = {:.2} +- {:.2}",
        o.tau_int_abs_m.tau, o.tau_int_abs_m.error, o.tau_int_phi2.tau, o.tau_int_phi2.error
    );
    if let Some(t) = o.tau_int_action {
        println!("  tau_int(S) = {:.2} +- {:.2}", t.tau, t.error);
    }
    let rows: [(&str, &Estimate); 8] = [
        ("<|M|>", &o.abs_m),
        ("<M>", &o.m),
        ("<M^2>", &o.m2),
        ("chi", &o.chi),
        ("chi_2pt", &o.chi_2pt),
        ("Binder", &o.binder),
        ("<phi^2>", &o.phi2),
        ("<phi^4>", &o.phi4),
    ];
    for (name, e) in rows {
        println!("  {name:<10} {}", fmt(e));
    }
    if let Some(a) = &o.action_density {
        println!("  {:<10} {}", "S/V", fmt(a));
    }
    for (t, c) in o.c_t.iter().enumerate() {
        println!("  C({t:<2})      {}", fmt(c));
    }
    for (t, m) in o.m_eff.iter().enumerate() {
        match m {
            Some(m) => println!("  m_eff({:<2})  {}", t + 1, fmt(m)),
            None => println!("  m_eff({:<2})  undefined", t + 1),
        }
    }
}
