//! U-Net throughput and memory at one size per process, for `bench/compare_unet.py` (which
//! runs this and the same model in PyTorch eager, `bench/unet_pytorch.py`, and prints the
//! ratios): `cargo bench -p gud-nn --bench unet -- --size 16 [--reps 5] [--json]`.
//!
//! Measured, each `reps` times (median, min and max reported): training steps/s at batch 64
//! (the full step with batch preparation, and the network step alone on a fixed batch: forward,
//! loss, backward, clipping, AdamW, EMA), the network's forward alone in samples/s (gud's
//! `EvalPool` on 256 images, no gradients: what PyTorch's eval measures in chunks of 64), the
//! `neural` score's eps_hat in samples/s (the network plus the encoding of chi_t and the
//! decoding of the output), the sampler's per-step overhead outside the network (exp sampler,
//! 64 samples: 1 - network time / step time, interleaved), the process's peak resident memory
//! after all that, and then full Jacobian rows/s (exact sampling) with the peak they raise it
//! to.

use gud_core::config::{DesignConfig, SamplerConfig, SamplerKind};
use gud_core::sampler::{generate, Plan};
use gud_core::score::ScoreModel;
use gud_core::{Dataset, Design, Shape};
use gud_nn::config::{NetworkConfig, TrainConfig};
use gud_nn::{EvalPool, NeuralScore, Trainer};
use rand::{Rng, SeedableRng};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Runs `f` (which does `work` units) `reps` times: units per second of each repetition.
fn rates(reps: usize, work: usize, mut f: impl FnMut()) -> Vec<f64> {
    (0..reps)
        .map(|_| {
            let t0 = Instant::now();
            f();
            work as f64 / t0.elapsed().as_secs_f64()
        })
        .collect()
}

/// Peak resident memory of this process in MB (Linux: VmHWM).
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?.to_string();
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1).cloned()
}

fn main() {
    let size: usize = arg("--size").map_or(8, |s| s.parse().expect("--size N"));
    let reps: usize = arg("--reps").map_or(5, |s| s.parse().expect("--reps N"));
    let json = std::env::args().any(|a| a == "--json");
    gud_nn::set_threads(None);
    let threads = tch::get_num_threads();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let shape = Shape::new(1, size, size);
    let d = shape.dim();
    let data = Dataset::new(
        shape,
        (0..512 * d).map(|_| rng.random::<f64>() - 0.5).collect(),
    )
    .unwrap();
    let dcfg: DesignConfig = toml::from_str(
        "mean = \"zero\"\nbasis = { kind = \"fourier\" }\nprior = { kind = \"matched\" }\n\
         schedule = { kind = \"linear\", ordering = \"frequency\", r = 1.0, a = 1.0 }",
    )
    .unwrap();
    let design = Design::fit(&dcfg, &data).unwrap();
    let net = NetworkConfig::default();
    let cfg = TrainConfig {
        batch: 64,
        translate: Some(true),
        flip_sign: Some(true),
        ..TrainConfig::default()
    };
    // the network's forward alone, on tensors ready in memory (PyTorch's eval): gud's
    // evaluation, the pool of replicas of the `neural` score (chunks of `auto_chunk` images,
    // one per worker thread)
    let pool = EvalPool::new(&net, shape, false, Device::Cpu, threads as usize, None).unwrap();
    let n = 256;
    let xs = Tensor::randn([n, 1, size as i64, size as i64], (Kind::Float, Device::Cpu));
    let gs = Tensor::randn([1, d as i64], (Kind::Float, Device::Cpu)).expand([n, d as i64], false);
    let evals = if size <= 8 { 8 } else { 2 };
    let forward = || {
        let _ = pool.forward(&xs, &gs);
    };
    forward();
    // `--profile-eval S`: only the forward loop for S seconds (for perf record)
    if let Some(secs) = arg("--profile-eval") {
        let until = Instant::now() + std::time::Duration::from_secs_f64(secs.parse().unwrap());
        while Instant::now() < until {
            forward();
        }
        return;
    }
    let mut trainer = Trainer::new(&design, &data, &net, &cfg).unwrap();
    let steps = match size {
        0..=8 => 20,
        9..=16 => 8,
        _ => 3,
    };
    for _ in 0..3 {
        trainer.train_step();
    }
    let train = rates(reps, steps, || {
        for _ in 0..steps {
            trainer.train_step();
        }
    });
    let batch = trainer.batch(0);
    let net_train = rates(reps, steps, || {
        for _ in 0..steps {
            trainer.train_step_on(&batch);
        }
    });

    let net_eval = rates(reps, evals * n as usize, || {
        for _ in 0..evals {
            forward();
        }
    });

    // the score: network + encoding and decoding
    let score = NeuralScore::with_weights(&design, &net, trainer.ema(), Device::Cpu, None).unwrap();
    let chi: Vec<f64> = (0..n as usize * d)
        .map(|_| rng.random::<f64>() - 0.5)
        .collect();
    let state = design.state(0.5);
    let mut out = vec![0.0; chi.len()];
    score.eps_hat(&chi[..64 * d], &state, None, &mut out[..64 * d]);
    let eval = rates(reps, evals * n as usize, || {
        for _ in 0..evals {
            score.eps_hat(&chi, &state, None, &mut out);
        }
    });

    // the sampler's step: exp, 64 samples, K steps; the network's share of it
    let k_steps = 10;
    let sampler = SamplerConfig {
        kind: SamplerKind::Exp,
        steps: k_steps,
        batch: 64,
        ..SamplerConfig::default()
    };
    let plan = Plan::new(
        design.schedule(),
        design.sigma_data(),
        k_steps,
        sampler.grid,
        None,
    )
    .unwrap();
    // interleaved per repetition: the sampler's K steps, then the network's K forwards on the
    // same batch size; overhead = 1 - network time / step time
    let xb = xs.narrow(0, 0, 64);
    let gb = gs.narrow(0, 0, 64);
    let overhead: Vec<f64> = (0..reps)
        .map(|_| {
            let t0 = Instant::now();
            generate(&plan, &score, &sampler, 0, 0, 64, &mut |_| {}).unwrap();
            let step = t0.elapsed().as_secs_f64();
            let t0 = Instant::now();
            for _ in 0..k_steps {
                let _ = pool.forward(&xb, &gb);
            }
            1.0 - t0.elapsed().as_secs_f64() / step
        })
        .collect();
    // the peak of training and sampling (before the Jacobians' cotangent batches)
    let rss = peak_rss_mb();

    // the full Jacobian of exact sampling: rows per second, in calls of as many rows as exact
    // sampling integrates together up to 16 x 16 (one row above: 784 and more backward passes
    // per row take minutes)
    let batched = d <= 256;
    let rows = if batched {
        gud_core::exact::proposal_batch(d).min(n as usize)
    } else {
        1
    };
    let (mut e, mut j) = (vec![0.0; rows * d], vec![0.0; rows * d * d]);
    if batched {
        // warm-up (skipped where one call takes minutes)
        score.eps_jacobian(&chi[..rows * d], &state, &mut e, &mut j);
    }
    let jac = rates(reps.min(2), rows, || {
        score.eps_jacobian(&chi[..rows * d], &state, &mut e, &mut j);
    });
    let jac_rss = peak_rss_mb();

    if json {
        println!(
            "{}",
            serde_json::json!({
                "impl": "gud-nn", "size": size, "threads": threads, "reps": reps,
                "train_steps_per_s": train, "net_train_steps_per_s": net_train,
                "net_eval_samples_per_s": net_eval, "score_eval_samples_per_s": eval,
                "sampler_step_overhead": overhead, "jacobian_rows_per_s": jac,
                "peak_rss_mb": rss, "jacobian_peak_rss_mb": jac_rss,
            })
        );
    } else {
        println!(
            "gud-nn U-Net {size}x{size} (width 32, multipliers [1, 2], batch 64, {threads} threads), \
             median of {reps}"
        );
        println!("  train steps/s      {:.3}", median(&train));
        println!("  net-only steps/s   {:.3}", median(&net_train));
        println!("  net eval samples/s {:.3}", median(&net_eval));
        println!("  eps_hat samples/s  {:.3}", median(&eval));
        println!("  sampler overhead   {:.1}%", 100.0 * median(&overhead));
        println!("  jacobian rows/s    {:.3}", median(&jac));
        println!("  peak RSS           {rss:.0} MB (with the Jacobians: {jac_rss:.0} MB)");
    }
}
