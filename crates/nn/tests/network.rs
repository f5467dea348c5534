//! Tests of the trained score network (issue 6): gradient check, loss decrease, zeroed
//! network == Gaussian score, checkpoint round trip, bit-exact resume, circular equivariance,
//! bad checkpoints.

use gud_core::config::{DesignConfig, MeanMode, NetworkConfig, Padding, TrainConfig};
use gud_core::score::{GaussianScore, ScoreModel};
use gud_core::{Dataset, Design, Shape};
use gud_nn::{Checkpoint, NeuralScore, Trainer, UNet};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// Non-Gaussian lattice data: each site +-1 plus a little Gaussian noise, shape 1 x 4 x 4.
fn data(n: usize, seed: u64) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let v = (0..n * 16)
        .map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 } + 0.1 * rng.random::<f64>())
        .collect();
    Dataset::new(Shape::new(1, 4, 4), v).unwrap()
}

fn design(data: &Dataset, basis: &str) -> Design {
    let cfg: DesignConfig = toml::from_str(&format!(
        "mean = \"zero\"\nbasis = {{ kind = \"{basis}\" }}\nprior = {{ kind = \"matched\" }}\n\
         schedule = {{ kind = \"linear\", ordering = \"variance\", a = 1.0 }}"
    ))
    .unwrap();
    assert_eq!(cfg.mean, MeanMode::Zero);
    Design::fit(&cfg, data).unwrap()
}

fn tiny() -> NetworkConfig {
    NetworkConfig {
        width: 8,
        multipliers: vec![1, 2],
        blocks: 1,
        groups: 4,
        embedding: 8,
        padding: Padding::Circular,
        gamma_channel: None,
    }
}

fn train_cfg() -> TrainConfig {
    TrainConfig {
        batch: 16,
        steps: 100,
        warmup: 5,
        translate: Some(true),
        flip_sign: Some(true),
        threads: Some(1),
        ..TrainConfig::default()
    }
}

/// Moves every weight by N(0, scale^2) (so that the zero-initialised last layer is non-zero).
fn perturb(vs: &VarStore, scale: f64) {
    tch::no_grad(|| {
        for (_, v) in vs.variables() {
            let noise = v.randn_like() * scale;
            let _ = v.shallow_clone().g_add_(&noise);
        }
    });
}

#[test]
fn untrained_and_zeroed_network_is_the_gaussian_score() {
    gud_nn::set_threads(Some(1));
    let data = data(64, 1);
    for basis in ["fourier", "pixel"] {
        let design = design(&data, basis);
        let trainer = Trainer::new(&design, &data, &tiny(), &train_cfg()).unwrap();
        let score =
            NeuralScore::with_weights(&design, &tiny(), trainer.ema(), Device::Cpu, 5).unwrap();
        let gauss = GaussianScore::new(design.sigma_data().to_vec());
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let chi: Vec<f64> = (0..12 * 16)
            .map(|_| rng.random::<f64>() * 2.0 - 1.0)
            .collect();
        for t in [0.1, 0.5, 0.9] {
            let state = design.state(t);
            let (mut a, mut b) = (vec![0.0; chi.len()], vec![0.0; chi.len()]);
            gauss.eps_hat(&chi, &state, None, &mut a);
            score.eps_hat(&chi, &state, None, &mut b);
            assert_eq!(
                a, b,
                "{basis}: untrained network (last layer zero) != gaussian"
            );
            score.zero_weights();
            score.eps_hat(&chi, &state, None, &mut b);
            assert_eq!(a, b, "{basis}: zeroed network != gaussian");
        }
    }
}

#[test]
fn gradient_of_the_loss_matches_finite_differences() {
    gud_nn::set_threads(Some(1));
    tch::manual_seed(3);
    let mut vs = VarStore::new(Device::Cpu);
    let net = UNet::new(&vs.root(), &tiny(), Shape::new(1, 4, 4), true).unwrap();
    vs.double();
    perturb(&vs, 0.2);
    let x = Tensor::randn([3, 2, 4, 4], (Kind::Double, Device::Cpu));
    let gamma = Tensor::randn([3, 16], (Kind::Double, Device::Cpu)) * 5.0;
    let target = Tensor::randn([3, 1, 4, 4], (Kind::Double, Device::Cpu));
    let loss = |net: &UNet| {
        (net.forward(&x, &gamma) - &target)
            .square()
            .mean(Kind::Double)
    };
    let l = loss(&net);
    l.backward();
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let h = 1e-6;
    let mut checked = 0;
    for (name, v) in &vars {
        let grad = v.grad().view(-1);
        for j in [0, v.numel() as i64 / 2, v.numel() as i64 - 1] {
            let analytic = grad.double_value(&[j]);
            let flat = v.view(-1);
            let old = flat.double_value(&[j]);
            let set = |val: f64| {
                tch::no_grad(|| {
                    let _ = flat.get(j).fill_(val);
                })
            };
            set(old + h);
            let lp = loss(&net).double_value(&[]);
            set(old - h);
            let lm = loss(&net).double_value(&[]);
            set(old);
            let numeric = (lp - lm) / (2.0 * h);
            let tol = 1e-6 + 1e-5 * analytic.abs().max(numeric.abs());
            assert!(
                (analytic - numeric).abs() < tol,
                "{name}[{j}]: autograd {analytic} vs fd {numeric}"
            );
            checked += 1;
        }
    }
    assert!(checked > 60, "checked {checked} entries");
}

#[test]
fn loss_decreases_on_a_fixed_batch() {
    gud_nn::set_threads(Some(1));
    let data = data(64, 4);
    let design = design(&data, "fourier");
    let mut trainer = Trainer::new(&design, &data, &tiny(), &train_cfg()).unwrap();
    let batch = trainer.batch(0);
    let first = trainer.loss(&batch).double_value(&[]);
    for _ in 0..80 {
        trainer.train_step_on(&batch);
    }
    let last = trainer.loss(&batch).double_value(&[]);
    assert!(last < 0.7 * first, "loss {first} -> {last}");
}

fn assert_same(a: &[(String, Tensor)], b: &[(String, Tensor)], what: &str) {
    assert_eq!(a.len(), b.len());
    for ((na, ta), (nb, tb)) in a.iter().zip(b) {
        assert_eq!(na, nb);
        assert!(ta.equal(tb), "{what}: {na} differs");
    }
}

#[test]
fn checkpoint_round_trip_and_bit_exact_resume() {
    gud_nn::set_threads(Some(1));
    let dir = tempfile::tempdir().unwrap();
    let data = data(48, 5);
    let design = design(&data, "fourier");
    let mut cfg = train_cfg();
    cfg.steps = 8;
    // Uninterrupted: 8 steps.
    let mut full = Trainer::new(&design, &data, &tiny(), &cfg).unwrap();
    for _ in 0..8 {
        full.train_step();
    }
    // Interrupted after 3 steps, resumed in a fresh trainer.
    let path = dir.path().join("checkpoint.safetensors");
    let mut first = Trainer::new(&design, &data, &tiny(), &cfg).unwrap();
    for _ in 0..3 {
        first.train_step();
    }
    first.save(&path).unwrap();
    let ckpt = Checkpoint::read(&path).unwrap();
    assert_eq!(ckpt.step, 3);
    let mut resumed = Trainer::new(&design, &data, &tiny(), &cfg).unwrap();
    resumed.resume(&ckpt).unwrap();
    assert_same(resumed.weights(), first.weights(), "round trip weights");
    assert_same(resumed.ema(), first.ema(), "round trip ema");
    for _ in 3..8 {
        resumed.train_step();
    }
    assert_eq!(resumed.step(), 8);
    assert_same(resumed.weights(), full.weights(), "resumed weights");
    assert_same(resumed.ema(), full.ema(), "resumed ema");

    // Save -> load gives identical score outputs.
    full.save(&path).unwrap();
    let loaded =
        NeuralScore::from_checkpoint(&design, &Checkpoint::read(&path).unwrap(), Device::Cpu, 64)
            .unwrap();
    let direct = NeuralScore::with_weights(&design, &tiny(), full.ema(), Device::Cpu, 64).unwrap();
    let chi: Vec<f64> = (0..16 * 5).map(|i| (i as f64 * 0.37).sin()).collect();
    let state = design.state(0.4);
    let (mut a, mut b) = (vec![0.0; chi.len()], vec![0.0; chi.len()]);
    loaded.eps_hat(&chi, &state, None, &mut a);
    direct.eps_hat(&chi, &state, None, &mut b);
    assert_eq!(a, b);
    let gauss = GaussianScore::new(design.sigma_data().to_vec());
    gauss.eps_hat(&chi, &state, None, &mut b);
    assert_ne!(
        a, b,
        "the trained network must differ from the gaussian score"
    );
}

#[test]
fn circular_padding_makes_the_network_translation_equivariant() {
    gud_nn::set_threads(Some(1));
    let shift = |t: &Tensor, dy: i64, dx: i64| t.roll([dy, dx], [2, 3]);
    for (padding, equivariant) in [(Padding::Circular, true), (Padding::Zeros, false)] {
        tch::manual_seed(6);
        let vs = VarStore::new(Device::Cpu);
        let cfg = NetworkConfig { padding, ..tiny() };
        let net = UNet::new(&vs.root(), &cfg, Shape::new(1, 8, 8), false).unwrap();
        perturb(&vs, 0.2);
        let x = Tensor::randn([2, 1, 8, 8], (Kind::Float, Device::Cpu));
        let gamma = Tensor::randn([2, 64], (Kind::Float, Device::Cpu));
        let stride = gud_nn::unet::stride(&cfg) as i64;
        for (dy, dx) in [(stride, 0), (0, 3 * stride), (stride, stride)] {
            let a = tch::no_grad(|| net.forward(&shift(&x, dy, dx), &gamma));
            let b = shift(&tch::no_grad(|| net.forward(&x, &gamma)), dy, dx);
            let err = (a - &b).abs().max().double_value(&[]);
            let size = b.abs().max().double_value(&[]);
            if equivariant {
                assert!(
                    err < 1e-5 * size.max(1.0),
                    "circular: shift ({dy},{dx}) error {err}"
                );
            } else {
                assert!(
                    err > 1e-3 * size,
                    "zero padding unexpectedly equivariant ({err})"
                );
            }
        }
    }
}

#[test]
fn bad_checkpoints_give_clear_errors() {
    gud_nn::set_threads(Some(1));
    let dir = tempfile::tempdir().unwrap();
    let data = data(32, 7);
    let design = design(&data, "fourier");
    let trainer = Trainer::new(&design, &data, &tiny(), &train_cfg()).unwrap();
    let path = dir.path().join("checkpoint.safetensors");
    trainer.save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();

    let truncated = dir.path().join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let e = Checkpoint::read(&truncated).err().unwrap().to_string();
    assert!(
        e.contains("truncated.safetensors") && e.contains("corrupt or truncated"),
        "{e}"
    );

    let garbage = dir.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"not a checkpoint at all").unwrap();
    let e = Checkpoint::read(&garbage).err().unwrap().to_string();
    assert!(e.contains("garbage.safetensors"), "{e}");

    // A config whose network does not match the checkpoint's shapes.
    let ckpt = Checkpoint::read(&path).unwrap();
    let mut wide = Trainer::new(
        &design,
        &data,
        &NetworkConfig {
            width: 16,
            ..tiny()
        },
        &train_cfg(),
    )
    .unwrap();
    let e = wide.resume(&ckpt).err().unwrap().to_string();
    assert!(
        e.contains("checkpoint.safetensors") && e.contains("needs F32"),
        "{e}"
    );

    // Another design (pixel basis: other Sigma).
    let other = self::design(&data, "pixel");
    let e = NeuralScore::from_checkpoint(&other, &ckpt, Device::Cpu, 64)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("another Sigma or prior scale"), "{e}");

    // An unwritable place: the parent is a file; nothing is written, the old file is intact.
    let blocked = dir
        .path()
        .join("checkpoint.safetensors")
        .join("x.safetensors");
    assert!(trainer.save(&blocked).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}
