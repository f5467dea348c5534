//! U-Net throughput at the sizes of examples/ (8x8 phi^4, 16x16, 28x28 images): training
//! steps/s (batch 64: the full step with batch preparation, and the network step alone on a
//! fixed batch), sampling evaluations/s (chunks of 64) and full Jacobians (exact sampling:
//! rows/s, 4 rows per call), all cores. Beside it, the same model
//! and step in PyTorch: `python3 bench/unet_pytorch.py` (`make bench` runs both).

use gud_core::config::DesignConfig;
use gud_core::score::ScoreModel;
use gud_core::{Dataset, Design, Shape};
use gud_nn::config::{NetworkConfig, TrainConfig};
use gud_nn::{NeuralScore, Trainer};
use rand::{Rng, SeedableRng};
use std::time::Instant;

fn main() {
    gud_nn::set_threads(None);
    println!(
        "gud-nn U-Net (width 32, multipliers [1, 2], 1 block/level, batch 64, {} threads)",
        tch::get_num_threads()
    );
    println!(
        "{:>6} {:>16} {:>18} {:>18} {:>18}",
        "size", "train steps/s", "net-only steps/s", "eval samples/s", "jacobian rows/s"
    );
    for size in [8usize, 16, 28] {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let shape = Shape::new(1, size, size);
        let data = Dataset::new(
            shape,
            (0..512 * shape.dim())
                .map(|_| rng.random::<f64>() - 0.5)
                .collect(),
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
        let mut trainer = Trainer::new(&design, &data, &net, &cfg).unwrap();
        let steps = if size <= 8 {
            40
        } else if size <= 16 {
            20
        } else {
            8
        };
        for _ in 0..3 {
            trainer.train_step();
        }
        let t0 = Instant::now();
        for _ in 0..steps {
            trainer.train_step();
        }
        let full = steps as f64 / t0.elapsed().as_secs_f64();
        let batch = trainer.batch(0);
        let t0 = Instant::now();
        for _ in 0..steps {
            trainer.train_step_on(&batch);
        }
        let net_only = steps as f64 / t0.elapsed().as_secs_f64();
        let score =
            NeuralScore::with_weights(&design, &net, trainer.ema(), tch::Device::Cpu, 64).unwrap();
        let n = 256;
        let chi: Vec<f64> = (0..n * shape.dim())
            .map(|_| rng.random::<f64>() - 0.5)
            .collect();
        let state = design.state(0.5);
        let mut out = vec![0.0; chi.len()];
        score.eps_hat(
            &chi[..64 * shape.dim()],
            &state,
            None,
            &mut out[..64 * shape.dim()],
        );
        let reps = if size <= 8 { 20 } else { 4 };
        let t0 = Instant::now();
        for _ in 0..reps {
            score.eps_hat(&chi, &state, None, &mut out);
        }
        let eval = (reps * n) as f64 / t0.elapsed().as_secs_f64();
        // the full Jacobian of exact sampling (issue 16): rows per second, 4 rows per call
        let d = shape.dim();
        let rows = 4;
        let (mut e, mut j) = (vec![0.0; rows * d], vec![0.0; rows * d * d]);
        score.eps_jacobian(&chi[..rows * d], &state, &mut e, &mut j);
        let jreps = if size <= 8 { 20 } else { 2 };
        let t0 = Instant::now();
        for _ in 0..jreps {
            score.eps_jacobian(&chi[..rows * d], &state, &mut e, &mut j);
        }
        let jac = (jreps * rows) as f64 / t0.elapsed().as_secs_f64();
        println!(
            "{:>4}x{:<2} {:>16.2} {:>18.2} {:>18.0} {:>18.2}",
            size, size, full, net_only, eval, jac
        );
    }
}
