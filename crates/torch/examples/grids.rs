//! Measurement (issue 17): the phi^4 z-scores of a trained run's samples at a fixed budget on
//! differently spaced time grids of the same K points (u = j / (K - 1) mapped to the fraction
//! of [t_max, t_min]: `uniform` u, `late1.5` / `late2` 1 - (1 - u)^p (dense at low noise),
//! `early1.5` / `early2` u^p (dense at high noise), `cos` (dense at both ends)), against an
//! HMC reference at m2 = -4, lam = 8:
//! `cargo run --release -p gud-torch --example grids -- RUN REF.npy K SEED SAMPLES uniform,late2`
use gud::Silent;
use gud_core::sampler::{generate, Plan};
use std::path::Path;

fn main() -> std::process::ExitCode {
    gud_torch::register();
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 7 {
        eprintln!("usage: grids RUN REF.npy K SEED SAMPLES GRID[,GRID...]");
        return std::process::ExitCode::from(2);
    }
    let run = gud::Run::new(&a[1]);
    let reference = gud_io::npy::read_dataset(Path::new(&a[2])).unwrap();
    let nfe: usize = a[3].parse().unwrap();
    let seed: u64 = a[4].parse().unwrap();
    let samples: usize = a[5].parse().unwrap();
    let grids: Vec<String> = a[6].split(',').map(String::from).collect();
    let f = gud::data::fit(Some(&run.dir().join("config.toml")), None, &Silent).unwrap();
    let (cfg, design) = (&f.config, &f.design);
    let score = gud::sample::build_score(cfg, design, &f.data, Some(&run)).unwrap();
    let sched = design.schedule();
    let (t_min, t_max) = sched.t_range();
    let d = design.dim();
    for g in &grids {
        let frac = |j: usize| j as f64 / (nfe - 1) as f64;
        let times: Vec<f64> = (0..nfe)
            .map(|j| {
                let u = frac(j);
                let v = match g.as_str() {
                    "uniform" => u,
                    "late2" => 1.0 - (1.0 - u).powi(2),
                    "late1.5" => 1.0 - (1.0 - u).powf(1.5),
                    "early2" => u * u,
                    "early1.5" => u.powf(1.5),
                    "cos" => 0.5 - 0.5 * (std::f64::consts::PI * u).cos(),
                    _ => panic!("grid {g}"),
                };
                t_max + v * (t_min - t_max)
            })
            .collect();
        let plan = Plan::from_times(sched, design.sigma_data(), times, None).unwrap();
        let mut chi0 = Vec::with_capacity(samples * d);
        let batch = 256;
        for start in (0..samples).step_by(batch) {
            let n = batch.min(samples - start);
            let (part, _) = generate(
                &plan,
                score.as_ref(),
                &cfg.sampler,
                seed,
                start as u64,
                n,
                &mut |_| {},
            )
            .unwrap();
            chi0.extend(part);
        }
        let gen =
            gud_core::Dataset::new(design.shape(), design.whitened_batch_to_fields(&chi0)).unwrap();
        let r = gud::eval::evaluate(&gen, &reference, &f.data, 16, 0, Some((-4.0, 8.0))).unwrap();
        let p = r.phi4.unwrap();
        let zs: Vec<String> = p
            .observables
            .iter()
            .map(|o| format!("{} {:+.2}", o.name, o.z))
            .collect();
        println!(
            "{g} nfe {nfe} seed {seed}: max|z| {:.2}  {}",
            p.max_abs_z,
            zs.join(", ")
        );
    }
    std::process::ExitCode::SUCCESS
}
