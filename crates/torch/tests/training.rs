//! The network registered with the library: training stops on a monitor's request with a
//! checkpoint of that step, and the resumed run ends in the uninterrupted run's state.

use gud::data::{self, Fitted};
use gud::{Silent, StopAfter};
use std::path::Path;

fn fitted(toml: &str) -> Fitted {
    let cfg = gud::config::parse(toml, Path::new("test.toml")).unwrap();
    data::fit_config(cfg, "test.toml", None, &Silent).unwrap()
}

/// A tiny neural config: free field L = 4, a tiny U-Net, one thread.
fn tiny_neural(steps: u64) -> Fitted {
    let mut f = fitted(&format!(
        "[data]\nkind = 'free-field'\nsize = 4\nm2 = 0.5\nsamples = 256\n\
         [design]\nbasis = {{ kind = 'fourier' }}\nprior = {{ kind = 'free' }}\n\
         schedule = {{ kind = 'rg', regulator = 'sigmoid', width = 0.5 }}\n\
         [score]\nkind = 'neural'\n[sampler]\nkind = 'ode'\nsteps = 4\n\
         [network]\nwidth = 8\ngroups = 4\nembedding = 8\n\
         [train]\nsteps = {steps}\nbatch = 32\nthreads = 1\ncheckpoint_every = 100\nlog_every = 2\n"
    ));
    gud::train::resolve(&mut f.config);
    f
}

#[test]
fn a_stop_request_checkpoints_training_and_the_resumed_run_is_bit_exact() {
    gud_torch::register();
    let dir = tempfile::tempdir().unwrap();
    let f = tiny_neural(12);
    let train = |run: &gud::Run, resume: bool, m: &dyn gud::Monitor| {
        gud::train::train(run, &f.config, &f.design, &f.data, resume, m)
    };
    let full = gud::Run::new(dir.path().join("full"));
    train(&full, false, &Silent).unwrap();
    let part = gud::Run::new(dir.path().join("part"));
    let e = train(&part, false, &StopAfter::new(5)).unwrap_err();
    assert!(e.interrupted().is_some(), "{e}");
    // checkpoint_every = 100: the only checkpoint is the one the stop saved
    let ckpt = gud_nn::Checkpoint::read(&part.checkpoint_path()).unwrap();
    assert_eq!(ckpt.step, 5);
    let metrics = std::fs::read_to_string(part.metrics_path()).unwrap();
    assert_eq!(
        metrics.lines().count(),
        2,
        "steps 2 and 4 logged: {metrics}"
    );
    assert!(part.continues(&f.config).unwrap());
    let report = train(&part, true, &Silent).unwrap();
    assert_eq!((report.start_step, report.steps), (5, 12));
    assert_eq!(
        std::fs::read(full.checkpoint_path()).unwrap(),
        std::fs::read(part.checkpoint_path()).unwrap(),
        "the resumed run ends in the uninterrupted run's state, byte for byte"
    );
}

#[test]
fn the_run_directory_names_the_networks_checkpoint_file() {
    assert_eq!(gud::run::CHECKPOINT_FILE, gud_nn::CHECKPOINT_FILE);
}
