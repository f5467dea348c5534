//! Tests of the trained score network (issue 6): gradient check, loss decrease, zeroed
//! network == Gaussian score, checkpoint round trip, bit-exact resume, circular equivariance,
//! bad checkpoints.

use gud_core::config::{DesignConfig, MeanMode};
use gud_core::score::{GaussianScore, ScoreModel};
use gud_core::{Dataset, Design, Shape};
use gud_nn::config::{NetworkConfig, Padding, TrainConfig};
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
        global: true,
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
            NeuralScore::with_weights(&design, &tiny(), trainer.ema(), Device::Cpu, Some(5))
                .unwrap();
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
fn with_a_mixture_base_the_untrained_network_is_the_mixture_score() {
    // SPEC section 4: eps_hat = eps_base + NN; the data's sites are +-1, so every component
    // is non-Gaussian and the base fits a mixture to each of them (modes = "all")
    gud_nn::set_threads(Some(1));
    let data = data(64, 1);
    let cfg: DesignConfig = toml::from_str(
        "mean = \"zero\"\nbasis = { kind = \"fourier\" }\nprior = { kind = \"matched\" }\n\
         base = { kind = \"mixture\", components = 2, modes = \"all\" }",
    )
    .unwrap();
    let design = Design::fit(&cfg, &data).unwrap();
    assert!(!design.base().is_gaussian());
    let score = NeuralScore::with_weights(
        &design,
        &tiny(),
        Trainer::new(&design, &data, &tiny(), &train_cfg())
            .unwrap()
            .ema(),
        Device::Cpu,
        Some(5),
    )
    .unwrap();
    let mixture = gud_core::score::MixtureScore::new(design.base().clone());
    let gauss = GaussianScore::new(design.sigma_data().to_vec());
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let chi: Vec<f64> = (0..3 * 16)
        .map(|_| rng.random::<f64>() * 4.0 - 2.0)
        .collect();
    let u: Vec<f64> = (0..3 * 16).map(|_| rng.random::<f64>() - 0.5).collect();
    for t in [0.2, 0.6] {
        let state = design.state(t);
        let (mut a, mut b, mut g) = (vec![0.0; 48], vec![0.0; 48], vec![0.0; 48]);
        mixture.eps_hat(&chi, &state, None, &mut a);
        score.eps_hat(&chi, &state, None, &mut b);
        gauss.eps_hat(&chi, &state, None, &mut g);
        assert_eq!(
            a, b,
            "untrained network with a mixture base != the mixture score"
        );
        assert!(a != g, "the mixture base is not the Gaussian one");
        let (mut qa, mut qb) = (vec![0.0; 3], vec![0.0; 3]);
        mixture.jacobian_form(&chi, &state, &u, &u, &mut a, &mut qa);
        score.jacobian_form(&chi, &state, &u, &u, &mut b, &mut qb);
        for k in 0..3 {
            assert!(
                (qa[k] - qb[k]).abs() < 1e-9 * (1.0 + qa[k].abs()),
                "{qa:?} vs {qb:?}"
            );
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

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).view(-1)).unwrap()
}

/// Two steps of the trainer equal AdamW (decoupled weight decay on kernels only, bias
/// correction, global-norm clipping) and the EMA written out in f64 from the same gradients.
#[test]
fn the_optimiser_step_is_adamw_with_clipping_and_the_ema() {
    gud_nn::set_threads(Some(1));
    let data = data(64, 4);
    let design = design(&data, "fourier");
    let mut cfg = train_cfg();
    cfg.clip = 0.05; // small enough that clipping acts
    cfg.weight_decay = 0.1;
    let mut trainer = Trainer::new(&design, &data, &tiny(), &cfg).unwrap();
    let batch = trainer.batch(0);
    let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
    let mut p: Vec<Vec<f64>> = trainer.weights().iter().map(|(_, t)| values(t)).collect();
    let mut ema = p.clone();
    let mut m: Vec<Vec<f64>> = p.iter().map(|v| vec![0.0; v.len()]).collect();
    let mut v2 = m.clone();
    let mut clipped = false;
    for step in 0..2u64 {
        // the gradients of this step, taken alone
        for (_, w) in trainer.weights() {
            w.shallow_clone().zero_grad();
        }
        trainer.loss(&batch).backward();
        let g: Vec<Vec<f64>> = trainer
            .weights()
            .iter()
            .map(|(_, t)| values(&t.grad()))
            .collect();
        let norm = g.iter().flatten().map(|x| x * x).sum::<f64>().sqrt();
        let scale = (cfg.clip / (norm + 1e-6)).min(1.0);
        clipped |= scale < 1.0;
        let lr = trainer.lr_at(step);
        let t = (step + 1) as f64;
        let (bc1, bc2) = (1.0 - b1.powf(t), 1.0 - b2.powf(t));
        let decay = cfg.ema.min((1.0 + step as f64) / (10.0 + step as f64));
        for (i, (_, w)) in trainer.weights().iter().enumerate() {
            let wd = if w.dim() >= 2 { cfg.weight_decay } else { 0.0 };
            for k in 0..p[i].len() {
                let gk = g[i][k] * scale;
                m[i][k] = b1 * m[i][k] + (1.0 - b1) * gk;
                v2[i][k] = b2 * v2[i][k] + (1.0 - b2) * gk * gk;
                let update = (m[i][k] / bc1) / ((v2[i][k] / bc2).sqrt() + eps) + wd * p[i][k];
                p[i][k] -= lr * update;
                ema[i][k] = decay * ema[i][k] + (1.0 - decay) * p[i][k];
            }
        }
        trainer.train_step_on(&batch);
    }
    assert!(clipped, "the test must exercise clipping");
    // f32 state: each update is lr-sized, so compare to a fraction of lr
    let tol = 1e-3 * trainer.lr_at(1);
    for (i, (name, w)) in trainer.weights().iter().enumerate() {
        for (a, b) in values(w).iter().zip(&p[i]) {
            assert!(
                (a - b).abs() <= tol + 1e-6 * b.abs(),
                "{name}: {a} vs AdamW {b}"
            );
        }
        for (a, b) in values(&trainer.ema()[i].1).iter().zip(&ema[i]) {
            assert!(
                (a - b).abs() <= tol + 1e-6 * b.abs(),
                "ema {name}: {a} vs {b}"
            );
        }
    }
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
    let loaded = NeuralScore::from_checkpoint(
        &design,
        &Checkpoint::read(&path).unwrap(),
        Device::Cpu,
        Some(64),
    )
    .unwrap();
    let direct =
        NeuralScore::with_weights(&design, &tiny(), full.ema(), Device::Cpu, Some(64)).unwrap();
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
    for (padding, global, equivariant) in [
        (Padding::Circular, true, true),
        (Padding::Circular, false, true),
        (Padding::Zeros, true, false),
    ] {
        tch::manual_seed(6);
        let vs = VarStore::new(Device::Cpu);
        let cfg = NetworkConfig {
            padding,
            global,
            ..tiny()
        };
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
        e.contains("checkpoint.safetensors") && e.contains("differs from the config's [network]"),
        "{e}"
    );

    // Another design (pixel basis: other Sigma).
    let other = self::design(&data, "pixel");
    let e = NeuralScore::from_checkpoint(&other, &ckpt, Device::Cpu, Some(64))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("Sigma or prior scale S differ"), "{e}");

    // An unwritable place: the parent is a file; nothing is written, the old file is intact.
    let blocked = dir
        .path()
        .join("checkpoint.safetensors")
        .join("x.safetensors");
    assert!(trainer.save(&blocked).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[test]
fn checkpoints_are_byte_reproducible_checksummed_and_never_resume_nan() {
    gud_nn::set_threads(Some(1));
    let dir = tempfile::tempdir().unwrap();
    let data = data(32, 7);
    let design = design(&data, "fourier");
    let trainer = Trainer::new(&design, &data, &tiny(), &train_cfg()).unwrap();
    let (a, b) = (
        dir.path().join("a.safetensors"),
        dir.path().join("b.safetensors"),
    );
    trainer.save(&a).unwrap();
    trainer.save(&b).unwrap();
    let bytes = std::fs::read(&a).unwrap();
    // regression (issue 20): the metadata's key order changed between saves
    assert_eq!(
        bytes,
        std::fs::read(&b).unwrap(),
        "identical states, identical files"
    );
    // the other tools' reader takes it
    safetensors::SafeTensors::deserialize(&bytes).unwrap();
    Checkpoint::read(&a).unwrap();

    // regression (issue 20): a flipped bit in the tensor data loaded silently
    let mut flipped = bytes.clone();
    let last = flipped.len() - 3;
    flipped[last] ^= 0x10;
    let f = dir.path().join("flipped.safetensors");
    std::fs::write(&f, &flipped).unwrap();
    let e = Checkpoint::read(&f).err().unwrap().to_string();
    assert!(
        e.contains("flipped.safetensors") && e.contains("checksum"),
        "{e}"
    );

    // regression (issue 20): a NaN EMA was resumed, trained on and saved again
    let nan_ema: Vec<(String, Tensor)> = trainer
        .ema()
        .iter()
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect();
    tch::no_grad(|| {
        let _ = nan_ema[0].1.shallow_clone().fill_(f64::NAN);
    });
    let n = dir.path().join("nan.safetensors");
    trainer.save(&n).unwrap();
    let ckpt = Checkpoint::read(&n).unwrap();
    let mut fresh = Trainer::new(&design, &data, &tiny(), &train_cfg()).unwrap();
    let e = fresh.resume(&ckpt).err().unwrap().to_string();
    assert!(
        e.contains("non-finite") && e.contains("nan.safetensors"),
        "{e}"
    );
}

/// Every weight of a fresh network moved by N(0, 0.2^2) (non-zero output).
fn perturbed_weights(design: &Design, data: &Dataset) -> Vec<(String, Tensor)> {
    let trainer = Trainer::new(design, data, &tiny(), &train_cfg()).unwrap();
    tch::manual_seed(3);
    trainer
        .ema()
        .iter()
        .map(|(n, t)| (n.clone(), t.copy() + t.randn_like() * 0.2))
        .collect()
}

/// A NeuralScore of [`perturbed_weights`].
fn perturbed_score<'a>(design: &'a Design, data: &Dataset) -> NeuralScore<'a> {
    let weights = perturbed_weights(design, data);
    NeuralScore::with_weights(design, &tiny(), &weights, Device::Cpu, Some(7)).unwrap()
}

#[test]
fn the_pool_of_replicas_gives_one_networks_output_at_any_chunk_and_thread_count() {
    // issue 22: the evaluation spreads chunks of the batch over replicas of the network, one
    // worker thread each; the output is the single network's on the whole batch
    let data = data(64, 1);
    let design = design(&data, "fourier");
    let d = design.dim();
    let weights = perturbed_weights(&design, &data);
    let score = |chunk: usize| {
        NeuralScore::with_weights(&design, &tiny(), &weights, Device::Cpu, Some(chunk)).unwrap()
    };
    let n = 23;
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let chi: Vec<f64> = (0..n * d)
        .map(|_| rng.random::<f64>() * 2.0 - 1.0)
        .collect();
    let state = design.state(0.3);
    tch::set_num_threads(1);
    let one = score(64);
    assert_eq!((one.pool().workers(), one.pool().chunk()), (1, 64));
    let reference = one.correction(&chi, state.gamma());
    let largest = reference.iter().fold(0f32, |m, x| m.max(x.abs()));
    assert!(
        largest > 1e-2,
        "the perturbed network's output is not trivial"
    );
    for (threads, chunk) in [(3, 1), (3, 5), (2, 23), (3, 64), (1, 4)] {
        tch::set_num_threads(threads);
        let s = score(chunk);
        assert_eq!(s.pool().workers(), threads as usize);
        let y = s.correction(&chi, state.gamma());
        for (k, (a, b)) in y.iter().zip(&reference).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * largest,
                "{threads} threads, chunks of {chunk}, entry {k}: {a} vs {b}"
            );
        }
        // the caller's own thread count is back
        assert_eq!(tch::get_num_threads(), threads);
    }
    tch::set_num_threads(1);
}

#[test]
fn the_one_pass_circular_pad_is_libtorchs_and_keeps_gradients() {
    // issue 22: without gradients the padded tensor is written in one pass
    tch::manual_seed(4);
    let empty = Tensor::zeros([0, 2, 3, 3], (Kind::Float, Device::Cpu));
    let padded = gud_nn::unet::circular_pad(&empty);
    assert_eq!(padded.size(), [0, 2, 5, 5]);
    for dims in [
        [2i64, 3, 1, 1],
        [2, 3, 2, 5],
        [1, 2, 4, 4],
        [3, 1, 8, 3],
        [2, 4, 5, 1],
    ] {
        let x = Tensor::randn(dims, (Kind::Float, Device::Cpu));
        let expected = x.pad([1, 1, 1, 1], "circular", None);
        let fast = gud_nn::unet::circular_pad(&x);
        assert_eq!(fast.size(), expected.size());
        assert!(fast.equal(&expected), "{dims:?}");
        // a non-contiguous input (a transposed view)
        let xt = x.transpose(2, 3);
        assert!(gud_nn::unet::circular_pad(&xt).equal(&xt.pad([1, 1, 1, 1], "circular", None)));
        // with gradients: one index_select, whose backward folds the halo back
        let xg = x.set_requires_grad(true);
        let padded = gud_nn::unet::circular_pad(&xg);
        assert!(padded.requires_grad() && padded.equal(&expected));
        let grad = Tensor::run_backward(&[padded.sum(Kind::Float)], &[&xg], false, false)
            .pop()
            .unwrap();
        // each site is read once, plus once per halo that copies it
        let count = |i: i64, n: i64| 1 + i64::from(i == 0) + i64::from(i == n - 1);
        for i in 0..dims[2] {
            for j in 0..dims[3] {
                let g = grad.double_value(&[0, 0, i, j]);
                assert_eq!(
                    g,
                    (count(i, dims[2]) * count(j, dims[3])) as f64,
                    "{dims:?} {i} {j}"
                );
            }
        }
    }
}

#[test]
fn jacobian_form_matches_finite_differences_and_hutchinson_is_unbiased() {
    gud_nn::set_threads(Some(1));
    let data = data(64, 1);
    for basis in ["fourier", "pixel"] {
        let design = design(&data, basis);
        let score = perturbed_score(&design, &data);
        let d = design.dim();
        let state = design.state(0.4);
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let chi: Vec<f64> = (0..d).map(|_| rng.random::<f64>() * 2.0 - 1.0).collect();
        let w: Vec<f64> = (0..d).map(|i| 0.5 + (i % 3) as f64).collect();
        // exact weighted trace from the d probes e_i, one call of d rows
        let x: Vec<f64> = (0..d).flat_map(|_| chi.iter().copied()).collect();
        let (mut u, mut v) = (vec![0.0; d * d], vec![0.0; d * d]);
        for i in 0..d {
            u[i * d + i] = w[i];
            v[i * d + i] = 1.0;
        }
        let (mut e, mut q) = (vec![0.0; d * d], vec![0.0; d]);
        score.jacobian_form(&x, &state, &u, &v, &mut e, &mut q);
        // against central differences of eps_hat (f32 network: h = 1e-2, tolerance 2%)
        let h = 1e-2;
        let mut plus = vec![0.0; d * d];
        let mut minus = vec![0.0; d * d];
        let xp: Vec<f64> = x.iter().zip(&v).map(|(a, b)| a + h * b).collect();
        let xm: Vec<f64> = x.iter().zip(&v).map(|(a, b)| a - h * b).collect();
        score.eps_hat(&xp, &state, None, &mut plus);
        score.eps_hat(&xm, &state, None, &mut minus);
        let mut network_part = 0.0;
        for i in 0..d {
            let fd = w[i] * (plus[i * d + i] - minus[i * d + i]) / (2.0 * h);
            assert!(
                (q[i] - fd).abs() < 0.02 * fd.abs().max(0.05),
                "{basis}: J_{i}{i}: autograd {} vs differences {fd}",
                q[i]
            );
            let (a2, s2) = (state.alpha_sq()[i], state.sigma_sq()[i]);
            network_part += (q[i] - w[i] * s2.sqrt() / (a2 * design.sigma_data()[i] + s2)).abs();
        }
        assert!(
            network_part > 1e-3,
            "{basis}: the network part must be non-zero"
        );
        let exact: f64 = q.iter().sum();
        // Hutchinson: mean of v^T D J v over Rademacher v within 4 standard errors
        let k = 2000;
        let probes: Vec<f64> = (0..k * d)
            .map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 })
            .collect();
        let xk: Vec<f64> = (0..k).flat_map(|_| chi.iter().copied()).collect();
        let uk: Vec<f64> = probes
            .chunks_exact(d)
            .flat_map(|p| p.iter().zip(&w).map(|(a, b)| a * b))
            .collect();
        let (mut ek, mut qk) = (vec![0.0; k * d], vec![0.0; k]);
        score.jacobian_form(&xk, &state, &uk, &probes, &mut ek, &mut qk);
        let mean = qk.iter().sum::<f64>() / k as f64;
        let var = qk.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (k - 1) as f64;
        let se = (var / k as f64).sqrt();
        assert!(se > 0.0);
        assert!(
            (mean - exact).abs() < 4.0 * se,
            "{basis}: Hutchinson {mean} vs exact {exact} (se {se})"
        );
        // eps_hat from the Jacobian call equals the plain evaluation
        let mut plain = vec![0.0; d];
        score.eps_hat(&chi, &state, None, &mut plain);
        for i in 0..d {
            assert!((ek[i] - plain[i]).abs() < 1e-5, "{} vs {}", ek[i], plain[i]);
        }
    }
}

#[test]
fn the_full_jacobian_agrees_with_the_jacobian_form_and_finite_differences() {
    // issue 16: eps_jacobian (every row's d VJPs at once) against u^T J v and central
    // differences of the f32 network (h = 1e-2, tolerance 2% of the largest entry)
    gud_nn::set_threads(Some(1));
    let data = data(64, 1);
    for basis in ["fourier", "pixel"] {
        let design = design(&data, basis);
        let score = perturbed_score(&design, &data);
        let d = design.dim();
        let state = design.state(0.4);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let n = 3;
        let chi: Vec<f64> = (0..n * d)
            .map(|_| rng.random::<f64>() * 2.0 - 1.0)
            .collect();
        let (mut eps, mut jac) = (vec![0.0; n * d], vec![0.0; n * d * d]);
        score.eps_jacobian(&chi, &state, &mut eps, &mut jac);
        let mut plain = vec![0.0; n * d];
        score.eps_hat(&chi, &state, None, &mut plain);
        for (a, b) in eps.iter().zip(&plain) {
            assert!((a - b).abs() < 1e-5, "{basis}: eps {a} vs {b}");
        }
        let u: Vec<f64> = (0..n * d).map(|_| rng.random::<f64>() - 0.5).collect();
        let v: Vec<f64> = (0..n * d).map(|_| rng.random::<f64>() - 0.5).collect();
        let (mut e, mut q) = (vec![0.0; n * d], vec![0.0; n]);
        score.jacobian_form(&chi, &state, &u, &v, &mut e, &mut q);
        for b in 0..n {
            let j = &jac[b * d * d..(b + 1) * d * d];
            let form: f64 = (0..d)
                .map(|i| u[b * d + i] * (0..d).map(|k| j[i * d + k] * v[b * d + k]).sum::<f64>())
                .sum();
            assert!(
                (form - q[b]).abs() < 1e-4 * q[b].abs().max(1.0),
                "{basis}: u^T J v {form} vs {}",
                q[b]
            );
        }
        let h = 1e-2;
        let largest = jac.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        for k in [0, d / 2, d - 1] {
            let mut plus = chi[..d].to_vec();
            let mut minus = chi[..d].to_vec();
            plus[k] += h;
            minus[k] -= h;
            let (mut ep, mut em) = (vec![0.0; d], vec![0.0; d]);
            score.eps_hat(&plus, &state, None, &mut ep);
            score.eps_hat(&minus, &state, None, &mut em);
            for i in 0..d {
                let fd = (ep[i] - em[i]) / (2.0 * h);
                assert!(
                    (jac[i * d + k] - fd).abs() < 0.02 * largest,
                    "{basis}: J[{i}][{k}] {} vs differences {fd}",
                    jac[i * d + k]
                );
            }
        }
    }
}

#[test]
fn a_schedule_family_draws_gamma_from_its_members() {
    use gud_nn::config::FamilyConfig;
    gud_nn::set_threads(Some(1));
    let data = data(64, 1);
    let cfg: DesignConfig = toml::from_str(
        "mean = \"zero\"\nbasis = { kind = \"fourier\" }\nprior = { kind = \"matched\" }\n\
         schedule = { kind = \"linear\", ordering = \"frequency\", a = 1.0 }",
    )
    .unwrap();
    let design = Design::fit(&cfg, &data).unwrap();
    let d = design.dim();
    // a family of one member: every example's gamma lies on the line gamma_min + t dgamma of
    // the a = 0.5 schedule, which differs from the design's a = 1
    let member = design
        .with_schedule(&cfg.schedule.with_softness(0.5, None).unwrap())
        .unwrap();
    let (g0, g1) = (member.state(0.0), member.state(1.0));
    let mut tc = train_cfg();
    tc.family = Some(FamilyConfig {
        a: [0.5, 0.5],
        r: None,
    });
    let trainer = Trainer::new(&design, &data, &tiny(), &tc).unwrap();
    let batch = trainer.batch(0);
    let gamma = Vec::<f32>::try_from(batch.gamma.view(-1)).unwrap();
    for row in gamma.chunks_exact(d) {
        let t = (row[0] as f64 - g0.gamma()[0]) / (g1.gamma()[0] - g0.gamma()[0]);
        assert!((0.0..=1.0).contains(&t));
        let want = member.state(t);
        for i in 0..d {
            assert!(
                (row[i] as f64 - want.gamma()[i]).abs() < 1e-4,
                "component {i}"
            );
        }
        let base = design.state(t);
        assert!((0..d).any(|i| (row[i] as f64 - base.gamma()[i]).abs() > 1e-2));
    }
    // a family needs a schedule with a softness
    let rg: DesignConfig = toml::from_str(
        "mean = \"zero\"\nbasis = { kind = \"fourier\" }\nprior = { kind = \"matched\" }",
    )
    .unwrap();
    let rg_design = Design::fit(&rg, &data).unwrap();
    let e = Trainer::new(&rg_design, &data, &tiny(), &tc)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("family") || e.contains("linear"), "{e}");
    tc.family = Some(FamilyConfig {
        a: [1.0, 0.5],
        r: None,
    });
    let e = Trainer::new(&design, &data, &tiny(), &tc)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("train.family.a"), "{e}");
}

#[test]
fn the_global_head_adds_one_constant_per_channel_from_the_input_moments() {
    gud_nn::set_threads(Some(1));
    tch::manual_seed(8);
    let vs = VarStore::new(Device::Cpu);
    let net = UNet::new(&vs.root(), &tiny(), Shape::new(1, 8, 8), false).unwrap();
    // only the head moves: the convolutional path keeps its zero last layer
    tch::no_grad(|| {
        for (name, v) in vs.variables() {
            if name.starts_with("global") {
                let _ = v.shallow_clone().g_add_(&(v.randn_like() * 0.3));
            }
        }
    });
    let x = Tensor::randn([3, 1, 8, 8], (Kind::Float, Device::Cpu));
    let gamma = Tensor::randn([3, 64], (Kind::Float, Device::Cpu));
    let y = tch::no_grad(|| net.forward(&x, &gamma));
    let spread = (&y - y.mean_dim([2i64, 3].as_slice(), true, Kind::Float))
        .abs()
        .max()
        .double_value(&[]);
    assert!(spread < 1e-6, "not constant over sites: {spread}");
    assert!(y.abs().max().double_value(&[]) > 1e-3, "head inactive");
    // a function of the moments: another field with other means changes it
    let y2 = tch::no_grad(|| net.forward(&(&x + 0.5), &gamma));
    assert!((y2 - &y).abs().max().double_value(&[]) > 1e-4);
}

/// `train.min_snr = k`: the batch carries lambda_i / sigma_i^2 = min(1, k / SNR_i) with
/// SNR_i = Sigma_i e^-gamma_i, the loss is sum_i w_i (U (y - target))_i^2 / d (recomputed here
/// in f64 with the basis), it is the plain loss when every weight is 1, it trains, and a bad
/// bound is named.
#[test]
fn min_snr_weights_the_component_residuals() {
    gud_nn::set_threads(Some(1));
    let data = data(64, 9);
    let design = design(&data, "fourier");
    let (d, b) = (design.dim(), 16);
    let k = 2.0;
    let cfg = TrainConfig {
        min_snr: Some(k),
        ..train_cfg()
    };
    let mut trainer = Trainer::new(&design, &data, &tiny(), &cfg).unwrap();
    let batch = trainer.batch(0);
    let w = Vec::<f32>::try_from(batch.weight.as_ref().unwrap().view(-1)).unwrap();
    let gamma = Vec::<f32>::try_from(batch.gamma.view(-1)).unwrap();
    let sd = design.sigma_data();
    let (mut below, mut capped) = (0, 0);
    for (j, (&wj, &g)) in w.iter().zip(&gamma).enumerate() {
        let snr = sd[j % d] * (-(g as f64)).exp();
        let expect = (k / snr).min(1.0);
        assert!(
            (wj as f64 - expect).abs() < 1e-4 * expect.max(1e-3),
            "weight {j}: {wj} vs {expect}"
        );
        if expect < 1.0 {
            below += 1;
        } else {
            capped += 1;
        }
    }
    assert!(below > 0 && capped > 0, "{below} weighted, {capped} at 1");

    // The loss against its definition, in f64 through the basis.
    let out = tch::no_grad(|| trainer.network().forward(&batch.x, &batch.gamma));
    let out = Vec::<f32>::try_from(out.view(-1)).unwrap();
    let target = Vec::<f32>::try_from(batch.target.view(-1)).unwrap();
    let mut comp = vec![0.0; d];
    let mut expect = 0.0;
    for s in 0..b {
        let r: Vec<f64> = (0..d)
            .map(|p| (out[s * d + p] - target[s * d + p]) as f64)
            .collect();
        design.basis().forward(&r, &mut comp);
        expect += (0..d)
            .map(|i| w[s * d + i] as f64 * comp[i] * comp[i])
            .sum::<f64>();
    }
    expect /= (b * d) as f64;
    let got = trainer.loss(&batch).double_value(&[]);
    assert!(
        (got - expect).abs() < 1e-5 * expect,
        "weighted loss {got} vs {expect}"
    );

    // Weights all 1 (k beyond every SNR): the plain loss.
    let ones = Trainer::new(
        &design,
        &data,
        &tiny(),
        &TrainConfig {
            min_snr: Some(1e30),
            ..train_cfg()
        },
    )
    .unwrap();
    let plain = Trainer::new(&design, &data, &tiny(), &train_cfg()).unwrap();
    let (bo, bp) = (ones.batch(3), plain.batch(3));
    assert!(bp.weight.is_none() && bo.target.equal(&bp.target));
    let (lo, lp) = (
        ones.loss(&bo).double_value(&[]),
        plain.loss(&bp).double_value(&[]),
    );
    assert!((lo - lp).abs() < 1e-5 * lp, "all-ones {lo} vs plain {lp}");

    // It trains.
    let first = trainer.loss(&batch).double_value(&[]);
    for _ in 0..80 {
        trainer.train_step_on(&batch);
    }
    let last = trainer.loss(&batch).double_value(&[]);
    assert!(last < 0.7 * first, "weighted loss {first} -> {last}");

    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let cfg = TrainConfig {
            min_snr: Some(bad),
            ..train_cfg()
        };
        let e = Trainer::new(&design, &data, &tiny(), &cfg).err().unwrap();
        assert!(e.to_string().contains("train.min_snr"), "{e}");
    }
}

/// `train.stable_target`: the target is the optimal denoiser's eps of a reference set holding
/// the batch. On a data set of one sample (no augmentation) every reference point is chi0, so
/// it is exactly the drawn eps; on spread data it has less variance than the drawn eps (the
/// same chi_t: the draws are unchanged); batches stay a pure function of the step; a reference
/// set smaller than the batch is named.
#[test]
fn stable_target_is_the_denoiser_of_a_reference_holding_the_batch() {
    gud_nn::set_threads(Some(1));
    let spread = data(64, 21);
    let design = design(&spread, "fourier");
    let plain_cfg = TrainConfig {
        translate: Some(false),
        flip_sign: Some(false),
        ..train_cfg()
    };
    let stable_cfg = TrainConfig {
        stable_target: Some(64),
        ..plain_cfg.clone()
    };
    let target = |data: &Dataset, cfg: &TrainConfig, step: u64| {
        let trainer = Trainer::new(&design, data, &tiny(), cfg).unwrap();
        let batch = trainer.batch(step);
        let x = Vec::<f32>::try_from(batch.x.view(-1)).unwrap();
        (x, Vec::<f32>::try_from(batch.target.view(-1)).unwrap())
    };

    let one = Dataset::new(
        Shape::new(1, 4, 4),
        spread.sample(3).repeat(8), // eight copies of one sample
    )
    .unwrap();
    let (x_plain, y_plain) = target(&one, &plain_cfg, 2);
    let (x_stable, y_stable) = target(&one, &stable_cfg, 2);
    assert_eq!(
        x_plain, x_stable,
        "the stable target must not change the draws"
    );
    for (j, (a, b)) in y_plain.iter().zip(&y_stable).enumerate() {
        assert!(
            (a - b).abs() < 1e-4 * (1.0 + a.abs()),
            "target {j}: {a} vs {b}"
        );
    }

    // per stratum of t (example k of the batch lies in stratum k)
    let sq = |y: &[f32]| -> Vec<f64> {
        y.chunks(16)
            .map(|e| e.iter().map(|v| (*v as f64).powi(2)).sum::<f64>())
            .collect()
    };
    let (mut plain, mut stable) = (vec![0.0; 16], vec![0.0; 16]);
    for step in 0..4 {
        let p = sq(&target(&spread, &plain_cfg, step).1);
        let s = sq(&target(&spread, &stable_cfg, step).1);
        for k in 0..16 {
            plain[k] += p[k];
            stable[k] += s[k];
        }
    }
    eprintln!("mean square of the target by t stratum:\n drawn {plain:.2?}\n stable {stable:.2?}");
    // low noise: the example's own sample carries all the weight (the drawn eps); high noise:
    // the posterior spreads over the reference and the noise of eps averages out
    for k in 0..5 {
        assert!(
            (stable[k] - plain[k]).abs() < 1e-3 * plain[k],
            "stratum {k}"
        );
    }
    let high = |v: &[f64]| v[8..].iter().sum::<f64>();
    assert!(
        high(&stable) < 0.3 * high(&plain),
        "{stable:?} vs {plain:?}"
    );
    assert_eq!(
        target(&spread, &stable_cfg, 5),
        target(&spread, &stable_cfg, 5),
        "a batch is a function of the step"
    );

    let small = TrainConfig {
        stable_target: Some(8),
        ..plain_cfg
    };
    let err = Trainer::new(&design, &spread, &tiny(), &small)
        .err()
        .expect("a reference set smaller than the batch is refused")
        .to_string();
    assert!(err.contains("train.stable_target"), "{err}");
}

mod checkpoint_reader {
    //! Property test (issue 20): a checkpoint with random truncations and byte edits (header
    //! or tensor data) is an error or loads the original tensors, never a panic or other values.
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::Index;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn a_damaged_checkpoint_is_an_error_or_the_original(
            edits in prop::collection::vec((any::<Index>(), any::<u8>(), any::<bool>()), 0..3),
            keep in prop::option::of(any::<Index>()),
        ) {
            gud_nn::set_threads(Some(1));
            let data = data(32, 7);
            let design = design(&data, "fourier");
            let trainer = Trainer::new(&design, &data, &tiny(), &train_cfg()).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("c.safetensors");
            trainer.save(&path).unwrap();
            let mut bytes = std::fs::read(&path).unwrap();
            let header = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
            for (at, v, in_header) in &edits {
                // half of the edits inside the length and JSON header, half anywhere
                let i = if *in_header { at.index(header) } else { at.index(bytes.len()) };
                bytes[i] = *v;
            }
            if let Some(k) = keep {
                bytes.truncate(k.index(bytes.len() + 1));
            }
            std::fs::write(&path, &bytes).unwrap();
            if let Ok(ckpt) = Checkpoint::read(&path) {
                let mut fresh = Trainer::new(&design, &data, &tiny(), &train_cfg()).unwrap();
                if fresh.resume(&ckpt).is_ok() {
                    assert_same(fresh.ema(), trainer.ema(), "the EMA of a damaged checkpoint");
                    assert_same(fresh.weights(), trainer.weights(), "its weights");
                }
            }
        }
    }
}

#[test]
fn the_full_jacobian_does_not_depend_on_how_rows_share_their_forward_passes() {
    // issue 16: 130 rows take one replica each (r = 1: 64 backward passes of 128 rows, then a
    // chunk of 2); one row alone takes 64 replicas (one backward pass): the same Jacobian
    gud_nn::set_threads(Some(1));
    let data = data(64, 1);
    let design = design(&data, "fourier");
    let score = perturbed_score(&design, &data);
    let d = design.dim();
    let state = design.state(0.3);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let n = 130;
    assert_eq!(gud_nn::jacobian_replicas(n, d), (1, gud_nn::JACOBIAN_BATCH));
    let chi: Vec<f64> = (0..n * d)
        .map(|_| rng.random::<f64>() * 2.0 - 1.0)
        .collect();
    let (mut eps, mut jac) = (vec![0.0; n * d], vec![0.0; n * d * d]);
    score.eps_jacobian(&chi, &state, &mut eps, &mut jac);
    for b in [0, 77, 127, 128, 129] {
        let row = &chi[b * d..(b + 1) * d];
        let (mut e1, mut j1) = (vec![0.0; d], vec![0.0; d * d]);
        score.eps_jacobian(row, &state, &mut e1, &mut j1);
        let largest = j1.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        for (a, c) in jac[b * d * d..(b + 1) * d * d].iter().zip(&j1) {
            assert!((a - c).abs() < 1e-5 * largest, "row {b}: {a} vs {c}");
        }
        for (a, c) in eps[b * d..(b + 1) * d].iter().zip(&e1) {
            assert!((a - c).abs() < 1e-5, "row {b}: eps {a} vs {c}");
        }
    }
}
