//! The trained network's EMA weights for PyTorch (see [`gud::export`]).

use crate::{set_threads, Nn};
use gud::error::{bail, Context, Result};
use gud::export::{ExportReport, CHECK_FORMAT, WEIGHTS_FORMAT};
use gud::{Fitted, Run};
use gud_core::rng::{stream, Purpose};
use gud_core::score::ScoreModel;
use gud_core::NoisingState;
use std::collections::BTreeMap;
use std::path::Path;

/// See [`gud::export::export`].
pub(crate) fn export(
    fitted: &Fitted,
    run: &Run,
    out: &Path,
    check: Option<(&Path, usize)>,
    seed: u64,
) -> Result<ExportReport> {
    let (cfg, design) = (&fitted.config, &fitted.design);
    let ckpt = gud_nn::Checkpoint::read(&run.checkpoint_path()).nn()?;
    ckpt.check_network(&cfg.network).nn()?;
    set_threads(cfg);
    let device = gud_nn::device(&cfg.train.device).nn()?;
    let score = gud_nn::NeuralScore::from_checkpoint(design, &ckpt, device, None).nn()?;
    let encoder = score.encoder();
    let (weights, parameters) = ckpt.ema_weights().nn()?;
    let shape = design.shape();
    let meta = |format: &str| -> BTreeMap<String, String> {
        BTreeMap::from([
            ("format".into(), format.into()),
            ("step".into(), ckpt.step.to_string()),
            (
                "network".into(),
                serde_json::to_string(&cfg.network).expect("the network config serialises"),
            ),
            ("gamma_channel".into(), encoder.gamma_channel().to_string()),
            (
                "shape".into(),
                format!("[{}, {}, {}]", shape.c, shape.h, shape.w),
            ),
            ("input_scale".into(), format!("{:e}", encoder.input_scale())),
            ("basis".into(), design.basis().name().into()),
            (
                "config".into(),
                toml::to_string(cfg).expect("the config serialises"),
            ),
        ])
    };
    let mut report = ExportReport {
        tensors: weights.len(),
        parameters,
        step: ckpt.step,
        check_rows: 0,
        check_decomposition_error: 0.0,
    };
    if let Some((path, rows)) = check {
        if rows == 0 {
            bail!("--check-rows 0: the check file needs at least one row");
        }
        let d = design.dim();
        gud_core::memory::check_alloc(&format!("{rows} check rows"), &[8, rows, d], 8)?;
        let chi0 = gud_core::score::whitened_training_set(design, &fitted.data)?;
        let mut rng = stream(seed, Purpose::ExportCheck, 0);
        let batch = gud_core::process::noised_batch(design.schedule(), &chi0, rows, &mut rng);
        let (x, g32, y) = score.network_io(&batch.chi_t, &batch.gamma);
        let mut eps_hat = vec![0.0; rows * d];
        let (mut base, mut scratch) = (vec![0.0; d], vec![0.0; d]);
        for (k, e) in eps_hat.chunks_exact_mut(d).enumerate() {
            let r = k * d..(k + 1) * d;
            let state =
                NoisingState::new(batch.t[k], batch.gamma[r.clone()].to_vec(), vec![0.0; d]);
            score.eps_hat(&batch.chi_t[r.clone()], &state, None, e);
            // eps_hat = eps_base + U y exactly (up to y's float32 rounding)
            encoder.base(&batch.chi_t[r.clone()], &state, &mut base);
            encoder.add_correction(&y[r], &mut scratch, &mut base);
            for (a, b) in e.iter().zip(&base) {
                report.check_decomposition_error =
                    report.check_decomposition_error.max((a - b).abs());
            }
        }
        let planes = encoder.input_planes();
        let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let f64s = |v: &[f64]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let image = |p: usize| vec![rows, shape.c * p, shape.h, shape.w];
        let entries = gud_nn::checkpoint::Entries::from([
            ("x".into(), ("F32", image(planes), f32s(&x))),
            ("gamma".into(), ("F32", vec![rows, d], f32s(&g32))),
            ("y".into(), ("F32", image(1), f32s(&y))),
            ("chi_t".into(), ("F64", vec![rows, d], f64s(&batch.chi_t))),
            ("gamma_t".into(), ("F64", vec![rows, d], f64s(&batch.gamma))),
            ("t".into(), ("F64", vec![rows], f64s(&batch.t))),
            ("eps_hat".into(), ("F64", vec![rows, d], f64s(&eps_hat))),
        ]);
        gud_nn::checkpoint::write_tensors(path, &entries, meta(CHECK_FORMAT), None)
            .nn()
            .with_context(|| format!("writing the check file {}", path.display()))?;
        report.check_rows = rows;
    }
    gud_nn::checkpoint::write_tensors(out, &weights, meta(WEIGHTS_FORMAT), None).nn()?;
    Ok(report)
}
