//! `gud eval`: generated samples against a reference set (SPEC section 8), with the library's
//! [`gud::eval`].

use anyhow::{bail, Context, Result};
use clap::Args;
use gud::eval::{classifier_frechet, evaluate, EvalReport};
use gud_core::Dataset;
use gud_io::figures::{plot_lines, LinePanel, Series};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Generated samples (.npy; `--samples` is accepted as its older name).
    #[arg(long, alias = "samples")]
    pub generated: PathBuf,
    /// Reference samples of the data law (.npy), e.g. HMC configurations.
    #[arg(long)]
    pub reference: PathBuf,
    /// Training set for the memorisation metric (default: the reference).
    #[arg(long)]
    pub train: Option<PathBuf>,
    /// Lattice phi^4 couplings `M2,LAM`: compare every observable (docs/phi4.md).
    #[arg(long, allow_hyphen_values = true, value_parser = parse_couplings, conflicts_with_all = ["m2", "kappa"])]
    pub phi4: Option<(f64, f64)>,
    /// The phi^4 couplings (`--m2 M --lam LAM`, or `--kappa K --lambda L` with files in the
    /// hopping normalisation): compare every observable; the same as --phi4 M2,LAM.
    #[command(flatten)]
    pub couplings: crate::shared::CouplingArgs,
    /// Random directions of the sliced Wasserstein distance.
    #[arg(long, default_value_t = 128)]
    pub directions: usize,
    /// Seed of the random directions and subsamples of the metrics.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// A classifier from `gud classifier`: add the Frechet distance of its features (a
    /// stand-in for FID, comparable across runs with the same classifier file).
    #[arg(long)]
    pub classifier: Option<PathBuf>,
    /// Resize image files (IDX, PNG folders, uint8 .npy) read as samples/reference to `H,W`.
    #[arg(long, value_delimiter = ',')]
    pub resize: Option<Vec<usize>>,
    /// Use only the first N images of each image file read.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Write a grid of the first generated samples (.png, .svg or .pdf).
    #[arg(long)]
    pub grid: Option<PathBuf>,
    /// Write the power spectra and their log-ratio (.png, .svg or .pdf).
    #[arg(long)]
    pub spectra: Option<PathBuf>,
}

fn parse_couplings(s: &str) -> Result<(f64, f64), String> {
    let bad = || format!("expected `M2,LAM` (e.g. -4,8), got `{s}`");
    let (a, b) = s.split_once(',').ok_or_else(bad)?;
    let m2 = a.trim().parse::<f64>().map_err(|_| bad())?;
    let lam = b.trim().parse::<f64>().map_err(|_| bad())?;
    Ok((m2, lam))
}

fn read(path: &std::path::Path, what: &str, a: &EvalArgs) -> Result<Dataset> {
    if a.resize.as_ref().is_some_and(|r| r.len() != 2) {
        bail!("--resize needs H,W");
    }
    let opts = gud_io::images::ImageOptions {
        resize: a.resize.as_ref().map(|r| [r[0], r[1]]),
        limit: a.limit,
        ..Default::default()
    };
    gud_io::images::read_images(path, None, &opts)
        .with_context(|| format!("reading the {what} {}", path.display()))
}

pub fn eval(a: &EvalArgs) -> Result<()> {
    let mut outputs = gud_io::atomic::Outputs::new(
        [
            Some(&a.generated),
            Some(&a.reference),
            a.train.as_ref(),
            a.classifier.as_ref(),
        ]
        .into_iter()
        .flatten(),
    );
    let grid_out = a.grid.as_ref().map(|g| outputs.stage(g)).transpose()?;
    let spectra_out = a.spectra.as_ref().map(|g| outputs.stage(g)).transpose()?;
    let mut gen = read(&a.generated, "samples", a)?;
    let mut reference = read(&a.reference, "reference", a)?;
    if gen.shape() != reference.shape() {
        bail!(
            "{} holds samples of shape {} but the reference {} holds {}",
            a.generated.display(),
            gen.shape(),
            a.reference.display(),
            reference.shape()
        );
    }
    // the hopping convention's files hold varphi = phi / sqrt(kappa): rescale every set
    let (couplings, factor) = match a.couplings.resolve()? {
        Some((c, factor)) => (Some((c.m2, c.lam)), factor),
        None => (a.phi4, 1.0),
    };
    let scale = |d: Dataset| -> Result<Dataset> {
        if factor == 1.0 {
            return Ok(d);
        }
        let v = d.as_slice().iter().map(|x| x * factor).collect();
        Ok(Dataset::new(d.shape(), v)?)
    };
    gen = scale(gen)?;
    reference = scale(reference)?;
    let train = match &a.train {
        Some(p) => scale(read(p, "training set", a)?)?,
        None => reference.clone(),
    };
    let mut report = evaluate(&gen, &reference, &train, a.directions, a.seed, couplings)?;
    if let Some(c) = &a.classifier {
        report.classifier_frechet = Some(classifier_frechet(c, &gen, &reference)?);
    }
    if let Some(p) = &grid_out {
        let title = format!("samples: {}", a.generated.display());
        let map = crate::plots::colormap(&reference);
        crate::plots::sample_grid(p, &title, &gen, 16, map)?;
    }
    if let Some(p) = &spectra_out {
        plot_spectra(p, "power spectra", &report)?;
    }
    outputs.commit()?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(
            &a.generated.display().to_string(),
            &a.reference.display().to_string(),
            &report,
        );
    }
    Ok(())
}

pub fn print_report(samples: &str, reference: &str, r: &EvalReport) {
    println!(
        "{} ({} samples) against {} ({} samples), shape {}",
        samples,
        r.samples,
        reference,
        r.reference,
        gud_core::Shape::new(r.shape[0], r.shape[1], r.shape[2])
    );
    println!("  power spectrum log-ratio per |n| bin:");
    for (k, l) in r.spectrum_radius.iter().zip(&r.spectrum_log_ratio) {
        println!("    |n| = {k:5.2}  {l:+.4}");
    }
    println!("  max |log ratio|            {:.4}", r.max_abs_log_ratio);
    println!(
        "  sliced Wasserstein         {:.4}  (reference half vs half: {:.4})",
        r.sliced_wasserstein, r.sliced_wasserstein_floor
    );
    if let Some(f) = r.classifier_frechet {
        println!("  classifier Frechet distance {f:.4}  (features of `gud classifier`, not Inception FID)");
    }
    let m = &r.memorisation;
    println!(
        "  nearest-neighbour ratio    mean {:.3}, median {:.3}; memorised (ratio < 1/3) {:.1}%",
        m.mean_ratio,
        m.median_ratio,
        100.0 * m.memorised_fraction
    );
    if let Some(p) = &r.phi4 {
        println!(
            "  phi^4 (m2 = {}, lam = {}): samples vs reference",
            p.m2, p.lam
        );
        println!(
            "    {:<9} {:>24} {:>24} {:>7}",
            "", "samples", "reference", "z"
        );
        for c in &p.observables {
            println!(
                "    {:<9} {:>12.5} +- {:<9.5} {:>12.5} +- {:<9.5} {:>+7.2}",
                c.label,
                c.samples.value,
                c.samples.error,
                c.reference.value,
                c.reference.error,
                c.z
            );
        }
        println!(
            "    <M> of samples {:.5} +- {:.5} (z = {:+.2} against Z2 symmetry)",
            p.magnetisation.value, p.magnetisation.error, p.magnetisation_z
        );
        println!(
            "    chi^2 / observable {:.2}, max |z| {:.2}",
            p.chi2_per_observable, p.max_abs_z
        );
    }
}

/// The radially averaged power spectra of samples and reference and their ratio, both in
/// log10, against the radius |n| of the lattice momentum index.
pub fn plot_spectra(path: &std::path::Path, title: &str, r: &EvalReport) -> Result<()> {
    let x = r.spectrum_radius.clone();
    let panels = [
        LinePanel {
            title: "radially averaged power P(|n|)".into(),
            x_label: "|n| (momentum index)".into(),
            y_label: "log10 P".into(),
            log_y: true,
            series: vec![
                Series {
                    label: "samples".into(),
                    x: x.clone(),
                    y: r.spectrum_samples.clone(),
                    error: Some(r.spectrum_samples_error.clone()),
                },
                Series {
                    label: "reference".into(),
                    x: x.clone(),
                    y: r.spectrum_reference.clone(),
                    error: Some(r.spectrum_reference_error.clone()),
                },
            ],
        },
        LinePanel {
            title: "P_samples / P_reference".into(),
            x_label: "|n| (momentum index)".into(),
            y_label: "log10 ratio".into(),
            log_y: false,
            series: vec![Series {
                label: "log10 ratio (band: +-1 standard error)".into(),
                x,
                y: r.spectrum_log_ratio
                    .iter()
                    .map(|l| l / std::f64::consts::LN_10)
                    .collect(),
                error: Some(
                    r.spectrum_log_ratio_error
                        .iter()
                        .map(|e| e / std::f64::consts::LN_10)
                        .collect(),
                ),
            }],
        },
    ];
    plot_lines(path, title, &panels)?;
    Ok(())
}
