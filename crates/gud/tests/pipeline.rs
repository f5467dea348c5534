//! The pipeline as a library: every long loop stops on a monitor's request with the typed
//! interruption (issue 18), training resumes bit-exact from the checkpoint a stop leaves, and
//! the main job runs without the binary.

use gud::data::{self, Fitted};
use gud::nll::{Method, NllOptions};
use gud::{Silent, StopAfter};
use std::path::Path;

fn fitted(toml: &str) -> Fitted {
    let cfg = gud::config::parse(toml, Path::new("test.toml")).unwrap();
    data::fit_config(cfg, "test.toml", None, &Silent).unwrap()
}

/// The free field L = 4 with its exact (gaussian) score, the exp sampler in batches of 8.
const GAUSSIAN: &str = "[data]\nkind = 'free-field'\nsize = 4\nm2 = 0.5\nsamples = 64\n\
    [design]\nmean = 'zero'\nbasis = { kind = 'fourier' }\nprior = { kind = 'free' }\n\
    [score]\nkind = 'gaussian'\n[sampler]\nkind = 'exp'\nsteps = 4\nbatch = 8\n";

/// Counts progress reports and never stops.
fn counter() -> StopAfter {
    StopAfter::new(usize::MAX)
}

#[test]
fn a_stop_request_ends_sampling_after_the_current_batch() {
    let f = fitted(GAUSSIAN);
    let score = gud::sample::build_score(&f.config, &f.design, &f.data, None).unwrap();
    let all = counter();
    let (fields, _) =
        gud::sample::draw(&f.config, &f.design, score.as_ref(), 0, 0, 64, &all).unwrap();
    assert_eq!(fields.len(), 64 * 16);
    let per_batch = all.reports() / 8;
    assert!(per_batch >= 4, "{} reports", all.reports());
    let stop = StopAfter::new(1);
    let e = gud::sample::draw(&f.config, &f.design, score.as_ref(), 0, 0, 64, &stop).unwrap_err();
    assert!(e.interrupted().is_some(), "{e}");
    assert_eq!(stop.reports(), per_batch, "stopped after the first batch");
}

#[test]
fn a_stop_request_ends_hmc_between_rounds() {
    let lat = gud_phi4::Lattice::new(4, gud_phi4::Couplings::new(-4.0, 8.0).unwrap()).unwrap();
    let cfg = gud_phi4::HmcConfig::default();
    let stop = StopAfter::new(2);
    let e = gud_phi4::hmc::sample(&lat, 64, &cfg, &stop).unwrap_err();
    assert!(matches!(e, gud_phi4::Phi4Error::Interrupted), "{e}");
    assert_eq!(stop.reports(), 2);
    assert!(gud::Error::from(e).interrupted().is_some());
}

#[test]
fn a_stop_request_ends_the_ode_likelihood_after_the_current_batch() {
    let f = fitted(GAUSSIAN);
    let score = gud::sample::build_score(&f.config, &f.design, &f.data, None).unwrap();
    let test = f.data.head(4);
    let opts = NllOptions {
        method: Method::Ode,
        batch: 1,
        ..NllOptions::default()
    };
    let full = gud::nll::nll(&f.design, score.as_ref(), &test, &opts, &Silent).unwrap();
    assert_eq!(full.samples, 4);
    assert!(full.nats.is_finite());
    let stop = StopAfter::new(2);
    let e = gud::nll::nll(&f.design, score.as_ref(), &test, &opts, &stop).unwrap_err();
    assert!(e.interrupted().is_some(), "{e}");
    assert_eq!(stop.reports(), 2, "two of four samples, then the stop");
}

#[test]
fn the_main_job_of_an_analytic_score_samples_and_evaluates_each_budget() {
    let f = fitted(GAUSSIAN);
    let run = gud::Run::new("never-created");
    let opts = gud::job::JobOptions {
        seed: 1,
        samples: 32,
        nfe: vec![3, 6],
    };
    let m = counter();
    let report = gud::job::run(&f, &run, false, &opts, &m).unwrap();
    assert!(report.training.is_none());
    assert_eq!(report.runs.len(), 2);
    assert_eq!(report.runs[0].sampling.nfe, 3);
    assert_eq!(report.runs[1].sampling.nfe, 6);
    for r in &report.runs {
        assert_eq!(r.samples.len(), 32);
        assert_eq!(r.eval.samples, 32);
        assert!(r.eval.phi4.is_none(), "free-field data have no couplings");
    }
    assert!(m.reports() > 0, "the monitor heard the sampling");
    assert!(!Path::new("never-created").exists());
    let json = report.to_json();
    assert!(json["training"].is_null());
    assert_eq!(json["runs"][1]["sampling"]["nfe"], 6);
}

/// Without a registered network (`gud_torch::register()`), what needs it says so by a typed
/// error; the library links no libtorch.
#[test]
fn without_a_registered_network_training_and_the_neural_score_name_what_needed_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = fitted(GAUSSIAN);
    gud::train::resolve(&mut f.config);
    let run = gud::Run::new(dir.path().join("run"));
    let e = gud::train::train(&run, &f.config, &f.design, &f.data, false, &Silent).unwrap_err();
    assert_eq!(e.no_network(), Some("training the neural score"), "{e}");
    assert!(e.to_string().contains("gud_torch::register()"), "{e}");
    let e = gud::sample::build_score(&f.config, &f.design, &f.data, Some(&run))
        .err()
        .unwrap();
    assert_eq!(e.no_network(), Some("the neural score"), "{e}");
    let e = gud::job::prepare(&mut f, &run).unwrap_err();
    assert!(e.no_network().is_some(), "{e}");
    assert!(!run.dir().exists(), "nothing was written");
}
