//! The cost of exact sampling's log q (issue 16): seconds per sample of the default phi^4
//! design's `exp` sampler at K = 10 without log q (`generate`, batches of 256) and with it
//! (`propose`: the d x d Jacobian carried through the same loop, the default proposal batch),
//! for L = 6, 8, 12, 16. The default network with its initial weights (the cost does not depend
//! on the weights); each design fitted to 1024 HMC configurations at m2 = -4, lam = 8 (cached
//! like the training data).
//!
//! `cargo bench -p gud-torch --bench exact [-- --sizes 6,8,12,16] [--json]`

use gud::config::{Config, DataConfig};
use gud::Silent;
use gud_core::config::SamplerKind;
use gud_core::exact::{proposal_batch, propose};
use gud_core::sampler::generate;
use gud_nn::{NeuralScore, Trainer};
use std::time::Instant;

fn arg(name: &str) -> Option<String> {
    let a: Vec<String> = std::env::args().collect();
    a.iter()
        .position(|x| x == name)
        .and_then(|i| a.get(i + 1).cloned())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sizes: Vec<usize> = arg("--sizes")
        .unwrap_or_else(|| "6,8,12,16".into())
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let json = std::env::args().any(|a| a == "--json");
    gud_nn::set_threads(None);
    let mut rows = Vec::new();
    for l in sizes {
        let mut cfg = Config::default();
        match &mut cfg.data {
            DataConfig::Phi4(p) => {
                p.size = l;
                p.samples = 1024;
            }
            _ => return Err("the built-in default is phi^4".into()),
        }
        cfg.sampler.kind = SamplerKind::Exp;
        cfg.sampler.steps = 10;
        let f = gud::data::fit_config(cfg, "the default at L", None, &Silent)?;
        let (cfg, data, design) = (f.config, f.data, f.design);
        let d = design.dim();
        let trainer = Trainer::new(&design, &data, &cfg.network, &cfg.train)?;
        let score = NeuralScore::with_weights(
            &design,
            &cfg.network,
            trainer.ema(),
            gud_nn::device("cpu")?,
            None,
        )?;
        let plan = gud::sample::plan(&cfg, &design)?;
        // without log q: the ordinary sampler
        let samples = 256;
        let t0 = Instant::now();
        generate(&plan, &score, &cfg.sampler, 0, 0, samples, &mut |_| {})?;
        let plain = t0.elapsed().as_secs_f64() / samples as f64;
        // with log q: one batch of the default proposal batch's size, 8 to 32 proposals
        let count = proposal_batch(d).clamp(8, 32);
        let t0 = Instant::now();
        let p = propose(
            &design,
            &plan,
            &score,
            &cfg.sampler,
            0,
            0,
            count,
            &mut |_| {},
        )?;
        let exact = t0.elapsed().as_secs_f64() / count as f64;
        assert!(p.log_q.iter().all(|x| x.is_finite()));
        eprintln!("measured L = {l}");
        rows.push((l, d, count, plain, exact));
    }
    if json {
        let out: Vec<_> = rows
            .iter()
            .map(|&(l, d, n, plain, exact)| {
                serde_json::json!({"l": l, "d": d, "proposals": n, "s_per_sample": plain,
                                   "s_per_proposal_with_log_q": exact})
            })
            .collect();
        println!("{}", serde_json::Value::Array(out));
    } else {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        println!("exp sampler, K = 10, default network, {cores} cores");
        println!();
        println!("| L | d | s / sample without log q | s / proposal with log q | ratio |");
        println!("|---|---|---|---|---|");
        for (l, d, _, plain, exact) in rows {
            println!(
                "| {l} | {d} | {plain:.2e} | {exact:.3} | {:.0} |",
                exact / plain
            );
        }
    }
    Ok(())
}
