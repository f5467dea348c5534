//! CLI tests: the commands run on built-in data and files, and bad input fails cleanly
//! (non-zero exit, a message naming the file and the field, no panic).

use std::path::Path;
use std::process::{Command, Output};

fn gud(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gud"))
        .args(args)
        .env("GUD_CACHE_DIR", std::env::temp_dir().join("gud-test-cache"))
        .output()
        .expect("running gud")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_clean_failure(o: &Output, needles: &[&str]) {
    let e = stderr(o);
    assert!(!o.status.success(), "expected failure, got success: {e}");
    assert!(!e.contains("panicked"), "panic instead of an error: {e}");
    for n in needles {
        assert!(e.contains(n), "error message lacks `{n}`: {e}");
    }
}

fn write_npy(path: &Path, shape: &[usize], data: &[f64]) {
    gud_io_write(path, shape, data);
}

// A minimal float64 .npy writer, independent of the code under test.
fn gud_io_write(path: &Path, shape: &[usize], data: &[f64]) {
    let dims: Vec<String> = shape.iter().map(|s| s.to_string()).collect();
    let shape_txt = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape_txt}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn run_writes_figures_and_resolved_config() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let cfg = dir.path().join("gaussian.toml");
    std::fs::write(&cfg, "[score]\nkind = 'gaussian'\n").unwrap();
    let o = gud(&[
        "run",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--samples",
        "300",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    for f in [
        "schedule.png",
        "noise.png",
        "config.toml",
        "samples.npy",
        "samples.png",
        "spectra.png",
        "report.json",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(
        report["runs"][0]["phi4"]["observables"]
            .as_array()
            .map(Vec::len),
        Some(8),
        "{report}"
    );
    assert_eq!(report["runs"][0]["sampling"]["nfe"].as_u64(), Some(20));
    // schema 2 (docs/report.md): names shared with `phi4 observe --json`, numbers as numbers
    assert_eq!(report["schema_version"], 2);
    let first = &report["runs"][0];
    assert_eq!(first["shape"], serde_json::json!([1, 8, 8]));
    let obs = first["phi4"]["observables"].as_array().unwrap();
    let names: Vec<&str> = obs.iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "abs_m",
            "m2",
            "chi",
            "chi_2pt",
            "binder",
            "phi2",
            "phi4",
            "action_density"
        ]
    );
    // chi^2 and max |z| over the independent observables: chi_2pt (= V <M^2>) is left out
    let ind: Vec<f64> = obs
        .iter()
        .filter(|o| o["independent"] == true)
        .map(|o| o["z"].as_f64().unwrap())
        .collect();
    assert_eq!(ind.len(), 7);
    let chi2 = ind.iter().map(|z| z * z).sum::<f64>() / 7.0;
    assert!((first["phi4"]["chi2_per_observable"].as_f64().unwrap() - chi2).abs() < 1e-12);
    assert!(obs[0]["samples"]["value"].is_f64() && obs[0]["reference"]["error"].is_f64());
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("chi_2pt") && stdout.contains("Binder"),
        "{stdout}"
    );
    let resolved = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(
        resolved.contains("amplitude") && resolved.contains("m2"),
        "fitted prior in resolved config:\n{resolved}"
    );
    // the resolved config is itself a valid config that reproduces the run
    let o = gud(&[
        "schedule",
        "--config",
        out.join("config.toml").to_str().unwrap(),
        "--out",
        dir.path().join("s.png").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn every_example_config_runs() {
    let dir = tempfile::tempdir().unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("phi4_L") {
            // the large lattices of exact sampling at scale: their HMC data take minutes, so
            // the configs are checked for what they promise, not run
            let cfg = gud::config::load(&p).unwrap();
            let gud::config::DataConfig::Phi4(d) = &cfg.data else {
                panic!("{name}: not phi^4 data")
            };
            assert_eq!(format!("phi4_L{}.toml", d.size), name);
            assert_eq!(d.m2, -4.0);
            n += 1;
            continue;
        }
        if p.extension().is_some_and(|e| e == "toml") {
            let out = dir
                .path()
                .join(format!("{}.png", p.file_stem().unwrap().to_string_lossy()));
            let o = gud(&[
                "noise",
                "--config",
                p.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ]);
            assert!(o.status.success(), "{}: {}", p.display(), stderr(&o));
            n += 1;
        }
    }
    assert!(n >= 3, "expected example configs in {}", examples.display());
}

#[test]
fn noise_and_schedule_on_npy_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.npy");
    let vals: Vec<f64> = (0..20 * 3 * 4 * 4)
        .map(|i| ((i * 37 % 101) as f64 / 50.0) - 1.0)
        .collect();
    write_npy(&data, &[20, 3, 4, 4], &vals);
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[design]\nbasis = { kind = 'haar' }\nprior = { kind = 'matched' }\nschedule = { kind = 'linear', ordering = 'level', a = 1.0, b = 0.5 }\n").unwrap();
    let out = dir.path().join("strip.png");
    let o = gud(&[
        "noise",
        "--config",
        cfg.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.exists() && dir.path().join("strip.config.toml").exists());
}

#[test]
fn malformed_toml_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("broken.toml");
    std::fs::write(&cfg, "[design\nbasis = ").unwrap();
    let o = gud(&[
        "schedule",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        dir.path().join("x.png").to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["broken.toml"]);
}

#[test]
fn unknown_basis_and_key_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[design]\nbasis = { kind = 'wavelets' }\n").unwrap();
    let o = gud(&[
        "schedule",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        dir.path().join("x.png").to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["c.toml", "wavelets"]);
    std::fs::write(
        &cfg,
        "[design]\nschedule = { kind = 'linear', softnes = 2 }\n",
    )
    .unwrap();
    let o = gud(&[
        "schedule",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        dir.path().join("x.png").to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["c.toml", "softnes"]);
}

#[test]
fn shape_the_basis_cannot_take() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[data]\nkind = 'free-field'\nsize = 4\nsamples = 10\n[design]\nbasis = { kind = 'haar', levels = 5 }\nprior = { kind = 'matched' }\nschedule = { kind = 'cosine' }\n").unwrap();
    let o = gud(&[
        "schedule",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        dir.path().join("x.png").to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["haar", "levels"]);
}

#[test]
fn nan_in_data_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nan.npy");
    let mut vals = vec![0.5; 5 * 4 * 4];
    vals[37] = f64::NAN;
    write_npy(&data, &[5, 4, 4], &vals);
    let o = gud(&[
        "noise",
        "--data",
        data.to_str().unwrap(),
        "--out",
        dir.path().join("x.png").to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["nan.npy", "non-finite", "sample 2"]);
}

#[test]
fn wrong_shape_and_truncated_npy() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("flat.npy");
    write_npy(&data, &[16], &[0.0; 16]);
    let o = gud(&[
        "noise",
        "--data",
        data.to_str().unwrap(),
        "--out",
        dir.path().join("x.png").to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["flat.npy", "(N, H, W)"]);
    let data = dir.path().join("cut.npy");
    write_npy(&data, &[4, 4, 4], &[0.0; 64]);
    let bytes = std::fs::read(&data).unwrap();
    std::fs::write(&data, &bytes[..bytes.len() - 8]).unwrap();
    let o = gud(&[
        "noise",
        "--data",
        data.to_str().unwrap(),
        "--out",
        dir.path().join("x.png").to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["cut.npy", "truncated"]);
}

#[test]
fn unwritable_output_directory() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "not a directory").unwrap();
    let out = blocker.join("sub");
    let o = gud(&["run", "--out", out.to_str().unwrap()]);
    assert_clean_failure(&o, &["file"]);
}

#[test]
fn phi4_sample_then_observe() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.npy");
    let o = gud(&[
        "phi4",
        "sample",
        "--size",
        "4",
        "--m2",
        "-1",
        "--lam",
        "1",
        "--samples",
        "64",
        "--chains",
        "8",
        "--seed",
        "3",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(summary["acceptance"].as_f64().unwrap() > 0.5, "{summary}");
    // tau_int in both units, named by them (issue 21): trajectories and saved configurations
    assert!(
        summary["tau_int_abs_m_trajectories"]["tau"]
            .as_f64()
            .unwrap()
            >= 0.5
    );
    let saved = summary["tau_int_abs_m_saved"]["tau"].as_f64().unwrap();
    assert!((0.4..5.0).contains(&saved), "{summary}");
    let o = gud(&[
        "phi4",
        "observe",
        out.to_str().unwrap(),
        "--m2",
        "-1",
        "--lam",
        "1",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let obs: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(obs["n"], 64);
    assert!(obs["action_density"]["value"].as_f64().unwrap().is_finite());
    // the hopping convention gives the same ensemble statistics after the exact conversion
    let o = gud(&[
        "phi4",
        "sample",
        "--size",
        "4",
        "--kappa",
        "0.3",
        "--lambda",
        "0.02",
        "--samples",
        "16",
        "--chains",
        "4",
        "--out",
        dir.path().join("h.npy").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn phi4_bad_input_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.npy");
    let o_str = out.to_str().unwrap();
    for (args, needle) in [
        (
            vec!["--size", "1", "--m2", "1", "--lam", "1", "--samples", "10"],
            "L",
        ),
        (
            vec!["--size", "4", "--m2", "1", "--lam", "1", "--samples", "-5"],
            "samples",
        ),
        (
            vec![
                "--size",
                "4",
                "--m2",
                "NaN",
                "--lam",
                "1",
                "--samples",
                "10",
            ],
            "m2",
        ),
        (
            vec!["--size", "4", "--m2", "-1", "--lam", "0", "--samples", "10"],
            "m2",
        ),
    ] {
        let mut a = vec!["phi4", "sample"];
        a.extend(args);
        a.extend(["--out", o_str]);
        let o = gud(&a);
        assert_clean_failure(&o, &[needle]);
        assert!(!out.exists(), "nothing may be written on bad input");
    }
    // observe: wrong shape, wrong dtype, truncated
    let bad = dir.path().join("bad.npy");
    write_npy(&bad, &[4, 3, 5], &[0.0; 60]);
    assert_clean_failure(
        &gud(&["phi4", "observe", bad.to_str().unwrap()]),
        &["bad.npy", "(N, L, L)"],
    );
    write_npy(&bad, &[4, 4, 4], &[0.0; 64]);
    let bytes = std::fs::read(&bad).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() - 16]).unwrap();
    assert_clean_failure(
        &gud(&["phi4", "observe", bad.to_str().unwrap()]),
        &["bad.npy", "truncated"],
    );
    let mut b2 = bytes.clone();
    let pos = b2.windows(3).position(|w| w == b"<f8").unwrap();
    b2[pos..pos + 3].copy_from_slice(b"<i8");
    std::fs::write(&bad, &b2).unwrap();
    assert_clean_failure(
        &gud(&["phi4", "observe", bad.to_str().unwrap()]),
        &["bad.npy", "float32"],
    );
}

fn stdout_json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", stderr(o));
    serde_json::from_slice(&o.stdout).expect("JSON on stdout")
}

fn read_npy(path: &Path) -> (Vec<usize>, Vec<f64>) {
    let a = gud_io::npy::read_array(path).unwrap();
    (a.shape, a.data)
}

#[test]
fn sample_on_the_phi4_default_writes_samples_config_and_grid() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.npy");
    let grid = dir.path().join("grid.png");
    let args = [
        "sample",
        "--score",
        "gaussian",
        "--samples",
        "40",
        "--steps",
        "5",
        "--out",
        out.to_str().unwrap(),
        "--grid",
        grid.to_str().unwrap(),
    ];
    let j = stdout_json(&gud(&args));
    assert_eq!(
        (
            j["nfe"].as_u64(),
            j["sampler"].as_str(),
            j["score"].as_str()
        ),
        (Some(5), Some("exp"), Some("gaussian"))
    );
    let (shape, data) = read_npy(&out);
    assert_eq!(shape, vec![40, 8, 8]);
    assert!(data.iter().all(|x| x.is_finite()));
    assert!(grid.exists());
    let resolved = std::fs::read_to_string(dir.path().join("s.config.toml")).unwrap();
    assert!(
        resolved.contains("[sampler]") && resolved.contains("exp") && resolved.contains("phi4"),
        "{resolved}"
    );
    // any sample regenerates alone: sample 3 of the run equals a run of sample 3 only
    let one = dir.path().join("one.npy");
    let j = stdout_json(&gud(&[
        "sample",
        "--score",
        "gaussian",
        "--samples",
        "1",
        "--first",
        "3",
        "--steps",
        "5",
        "--out",
        one.to_str().unwrap(),
    ]));
    assert_eq!(j["first"].as_u64(), Some(3));
    assert_eq!(read_npy(&one).1, data[3 * 64..4 * 64]);
}

#[test]
fn tune_grid_writes_a_grid_that_sample_takes_and_bad_grids_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let frag = dir.path().join("grid.toml");
    // the phi^4 default's data with the mixture base alone (no network)
    let j = stdout_json(&gud(&[
        "tune-grid",
        "--score",
        "mixture",
        "--steps",
        "5",
        "--pilot",
        "16",
        "--reference-steps",
        "40",
        "--max-trials",
        "12",
        "--out",
        frag.to_str().unwrap(),
    ]));
    let times: Vec<f64> = j["times"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_f64().unwrap())
        .collect();
    assert_eq!(times.len(), 5);
    assert!(j["rms_error"].as_f64() <= j["uniform_rms_error"].as_f64());
    let text = std::fs::read_to_string(&frag).unwrap();
    let parsed: toml::Value = toml::from_str(&text).unwrap();
    assert_eq!(
        parsed["sampler"]["times"].as_array().unwrap().len(),
        5,
        "{text}"
    );
    let out = dir.path().join("s.npy");
    let s = stdout_json(&gud(&[
        "sample",
        "--score",
        "mixture",
        "--samples",
        "8",
        "--times",
        j["times_arg"].as_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    assert_eq!(s["grid_points"].as_u64(), Some(5));
    let resolved = std::fs::read_to_string(dir.path().join("s.config.toml")).unwrap();
    assert!(resolved.contains("times = ["), "{resolved}");
    let bad = dir.path().join("bad.npy");
    let o = gud(&[
        "sample",
        "--score",
        "mixture",
        "--samples",
        "8",
        "--times",
        "0.5,0.2",
        "--out",
        bad.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["sampler.times", "t_max"]);
    assert!(!bad.exists());
    let o = gud(&["tune-grid", "--score", "mixture", "--sampler", "sde"]);
    assert_clean_failure(&o, &["sampler.kind", "deterministic"]);
}

#[test]
fn sample_with_every_sampler_score_and_projection() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.npy");
    let o = out.to_str().unwrap();
    for (score, sampler) in [
        ("gaussian", "sde"),
        ("empirical", "ode"),
        ("smoothed", "ancestral"),
        ("empirical", "exp"),
    ] {
        let j = stdout_json(&gud(&[
            "sample",
            "--score",
            score,
            "--sampler",
            sampler,
            "--samples",
            "8",
            "--steps",
            "4",
            "--out",
            o,
        ]));
        assert_eq!(j["score"].as_str(), Some(score));
        assert_eq!(j["sampler"].as_str(), Some(sampler));
    }
    // the exp sampler's order is checked
    let bad = gud(&[
        "sample",
        "--score",
        "gaussian",
        "--sampler",
        "exp",
        "--order",
        "4",
        "--samples",
        "2",
        "--out",
        o,
    ]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("sampler.order"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let j = stdout_json(&gud(&[
        "sample",
        "--score",
        "gaussian",
        "--sampler",
        "ode",
        "--time-grid",
        "uniform-gamma",
        "--steps",
        "30",
        "--projection",
        "--samples",
        "16",
        "--out",
        o,
    ]));
    assert!(j["saved_fraction"].as_f64().unwrap() > 0.0, "{j}");
    assert!(j["component_evals"].as_u64() < j["component_evals_full"].as_u64());
    // els needs the pixel basis; with it, it runs on npy data
    let cfg = dir.path().join("els.toml");
    std::fs::write(&cfg, "[design]\nbasis = { kind = 'pixel' }\nprior = { kind = 'white' }\nschedule = { kind = 'cosine' }\n[score]\nkind = 'els'\npatch = { rule = 'fixed', size = 3 }\n").unwrap();
    let data = dir.path().join("d.npy");
    let vals: Vec<f64> = (0..10 * 16)
        .map(|i| ((i * 37 % 11) as f64 - 5.0) / 3.0)
        .collect();
    write_npy(&data, &[10, 4, 4], &vals);
    let j = stdout_json(&gud(&[
        "sample",
        "--config",
        cfg.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--samples",
        "4",
        "--steps",
        "3",
        "--out",
        o,
    ]));
    assert_eq!(j["score"].as_str(), Some("els"));
    assert_clean_failure(
        &gud(&["sample", "--score", "els", "--samples", "2", "--out", o]),
        &["pixel", "fourier"],
    );
    assert_clean_failure(
        &gud(&["sample", "--patch", "fixed:3", "--samples", "2", "--out", o]),
        &["--patch", "els"],
    );
    assert_clean_failure(
        &gud(&["sample", "--sampler", "euler", "--out", o]),
        &["euler", "ancestral"],
    );
}

#[test]
fn sample_bad_training_sets_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.npy");
    let empty = dir.path().join("empty.npy");
    write_npy(&empty, &[0, 4, 4], &[]);
    let o = gud(&[
        "sample",
        "--data",
        empty.to_str().unwrap(),
        "--samples",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["empty.npy"]);
    let nan = dir.path().join("nan.npy");
    let mut vals = vec![0.5; 3 * 16];
    vals[20] = f64::NAN;
    write_npy(&nan, &[3, 4, 4], &vals);
    let o = gud(&[
        "sample",
        "--data",
        nan.to_str().unwrap(),
        "--score",
        "empirical",
        "--samples",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["nan.npy", "NaN"]);
    // a training set whose shape the config's design cannot take
    let cfg = dir.path().join("haar.toml");
    std::fs::write(&cfg, "[design]\nbasis = { kind = 'haar', levels = 4 }\n").unwrap();
    let small = dir.path().join("small.npy");
    write_npy(
        &small,
        &[3, 4, 4],
        &(0..48).map(|i| i as f64).collect::<Vec<_>>(),
    );
    let o = gud(&[
        "sample",
        "--config",
        cfg.to_str().unwrap(),
        "--data",
        small.to_str().unwrap(),
        "--samples",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["haar", "(1, 4, 4)"]);
    assert!(!out.exists(), "nothing written on failure");
}

#[test]
fn eval_compares_spectra_memorisation_and_phi4_observables() {
    let dir = tempfile::tempdir().unwrap();
    let (s, r) = (dir.path().join("s.npy"), dir.path().join("r.npy"));
    stdout_json(&gud(&[
        "sample",
        "--score",
        "gaussian",
        "--samples",
        "256",
        "--steps",
        "4",
        "--out",
        s.to_str().unwrap(),
    ]));
    let o = gud(&[
        "phi4",
        "sample",
        "--size",
        "8",
        "--m2",
        "-4",
        "--lam",
        "8",
        "--samples",
        "512",
        "--seed",
        "3",
        "--out",
        r.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let spectra = dir.path().join("spectra.png");
    let j = stdout_json(&gud(&[
        "eval",
        "--samples",
        s.to_str().unwrap(),
        "--reference",
        r.to_str().unwrap(),
        "--phi4",
        "-4,8",
        "--json",
        "--spectra",
        spectra.to_str().unwrap(),
    ]));
    assert!(spectra.exists());
    let obs = j["phi4"]["observables"].as_array().unwrap();
    assert_eq!(obs.len(), 8, "{j}");
    // the Gaussian score cannot know the quartic term: <phi^4> is off, <phi^2> is not
    let z = |name: &str| {
        obs.iter().find(|o| o["name"] == name).unwrap()["z"]
            .as_f64()
            .unwrap()
    };
    assert!(z("phi4").abs() > 5.0 && z("phi2").abs() < 5.0, "{obs:?}");
    assert!(j["memorisation"]["memorised_fraction"].as_f64().unwrap() < 0.05);
    assert!(j["sliced_wasserstein"].as_f64().unwrap() > 0.0);
    // the table form
    let o = gud(&[
        "eval",
        "--samples",
        s.to_str().unwrap(),
        "--reference",
        r.to_str().unwrap(),
    ]);
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("sliced Wasserstein")
    );
    // shapes that differ are named
    let other = dir.path().join("other.npy");
    write_npy(&other, &[4, 4, 4], &[0.1; 64]);
    assert_clean_failure(
        &gud(&[
            "eval",
            "--samples",
            other.to_str().unwrap(),
            "--reference",
            r.to_str().unwrap(),
        ]),
        &["other.npy", "r.npy", "(1, 8, 8)"],
    );
    assert_clean_failure(
        &gud(&[
            "eval",
            "--samples",
            s.to_str().unwrap(),
            "--reference",
            r.to_str().unwrap(),
            "--phi4",
            "4",
        ]),
        &["M2,LAM"],
    );
}

/// Built without the network (`--no-default-features`), every command that needs it says so
/// and writes nothing; the analytic commands are tested above either way.
#[test]
#[cfg(not(feature = "nn"))]
fn without_the_network_neural_commands_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_neural_config(dir.path(), 2);
    let run = dir.path().join("run");
    let out = dir.path().join("s.npy");
    let (c, r, s) = (
        cfg.to_str().unwrap(),
        run.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    for args in [
        vec!["train", "--config", c, "--out", r],
        vec!["run", c, "--out", r],
        vec!["sample", "--config", c, "--out", s],
    ] {
        let o = gud(&args);
        assert_clean_failure(&o, &["built without", "feature `nn`"]);
    }
    assert!(!run.join("checkpoint.safetensors").exists() && !out.exists());
    assert!(
        !run.join("schedule.png").exists(),
        "gud run wrote figures first"
    );
}

/// The `gud` binary links no libtorch (issue 21: `gud --version` took 0.5 s loading it); with
/// the network built, `gud-torch` next to it does, and `gud train` runs there.
#[test]
#[cfg(all(feature = "nn", target_os = "linux"))]
fn gud_itself_links_no_libtorch_and_hands_the_network_to_gud_torch() {
    let needs = |exe: &Path, lib: &str| {
        let bytes = std::fs::read(exe).unwrap();
        bytes.windows(lib.len()).any(|w| w == lib.as_bytes())
    };
    let front = Path::new(env!("CARGO_BIN_EXE_gud"));
    let torch = Path::new(env!("CARGO_BIN_EXE_gud-torch"));
    for lib in ["libtorch_cpu.so", "libc10.so"] {
        assert!(needs(torch, lib), "gud-torch should link {lib}");
        assert!(
            !needs(front, lib),
            "gud names {lib}: it would load libtorch"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let (_, run) = trained_tiny_run(dir.path(), 2);
    assert!(run.join("checkpoint.safetensors").exists());
}

/// `gud train` of [`tiny_neural_config`] with `steps` steps into `dir`/run: (config, run).
#[cfg(feature = "nn")]
fn trained_tiny_run(dir: &Path, steps: u64) -> (std::path::PathBuf, std::path::PathBuf) {
    let cfg = tiny_neural_config(dir, steps);
    let run = dir.join("run");
    let o = gud(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    (cfg, run)
}

/// A neural config small enough for a test: free field L = 4, a tiny U-Net, one thread.
fn tiny_neural_config(dir: &Path, steps: u64) -> std::path::PathBuf {
    let cfg = dir.join("tiny.toml");
    std::fs::write(
        &cfg,
        format!(
            "[data]\nkind = 'free-field'\nsize = 4\nm2 = 0.5\nsamples = 256\n\
             [design]\nbasis = {{ kind = 'fourier' }}\nprior = {{ kind = 'free' }}\n\
             schedule = {{ kind = 'rg', regulator = 'sigmoid', width = 0.5 }}\n\
             [score]\nkind = 'neural'\n[sampler]\nkind = 'ode'\nsteps = 4\n\
             [network]\nwidth = 8\ngroups = 4\nembedding = 8\n\
             [train]\nsteps = {steps}\nbatch = 32\nthreads = 1\ncheckpoint_every = 4\nlog_every = 2\n"
        ),
    )
    .unwrap();
    cfg
}

#[test]
#[cfg(feature = "nn")]
fn train_resume_equals_uninterrupted_and_sample_from_run() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_neural_config(dir.path(), 400);
    let (full, part) = (dir.path().join("full"), dir.path().join("part"));
    let c = cfg.to_str().unwrap();
    let o = gud(&["train", "--config", c, "--out", full.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The same run interrupted by Ctrl-C (SIGINT) once its first checkpoint exists, then resumed.
    let child = Command::new(env!("CARGO_BIN_EXE_gud"))
        .args(["train", "--config", c, "--out", part.to_str().unwrap()])
        .env("GUD_CACHE_DIR", std::env::temp_dir().join("gud-test-cache"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ckpt = part.join("checkpoint.safetensors");
    while !ckpt.exists() {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(stderr(&o).contains("--resume"), "{}", stderr(&o));
    let o = gud(&["train", "--out", part.to_str().unwrap(), "--resume"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("resuming"), "{}", stderr(&o));
    let metrics = std::fs::read_to_string(part.join("metrics.jsonl")).unwrap();
    let steps: Vec<u64> = metrics
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(
        steps,
        (1..=200).map(|k| 2 * k).collect::<Vec<u64>>(),
        "{metrics}"
    );
    let mut samples = Vec::new();
    for run in [&full, &part] {
        let out = run.join("s.npy");
        let o = gud(&[
            "sample",
            "--run",
            run.to_str().unwrap(),
            "--samples",
            "20",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(summary["score"], "neural");
        samples.push(std::fs::read(&out).unwrap());
    }
    assert_eq!(
        samples[0], samples[1],
        "resumed run differs from the uninterrupted one"
    );
    // A run directory is never overwritten by a fresh run.
    let o = gud(&["train", "--config", c, "--out", full.to_str().unwrap()]);
    assert_clean_failure(&o, &["already holds a checkpoint", "--resume"]);
}

/// name -> (dtype, shape, bytes)
#[cfg(feature = "nn")]
type Tensors = std::collections::BTreeMap<String, (String, Vec<usize>, Vec<u8>)>;

/// The tensors of a safetensors file (read by the safetensors crate: any reader must accept
/// gud's files) and its metadata.
#[cfg(feature = "nn")]
fn read_safetensors(path: &Path) -> (Tensors, std::collections::BTreeMap<String, String>) {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tensors = file
        .tensors()
        .into_iter()
        .map(|(name, t)| {
            let dtype = format!("{:?}", t.dtype());
            (name, (dtype, t.shape().to_vec(), t.data().to_vec()))
        })
        .collect();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().clone().unwrap_or_default();
    (tensors, meta.into_iter().collect())
}

#[test]
#[cfg(feature = "nn")]
fn export_writes_the_ema_weights_under_pytorch_names_and_a_check_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_, run) = trained_tiny_run(dir.path(), 8);
    let (w, check) = (
        dir.path().join("w.safetensors"),
        dir.path().join("c.safetensors"),
    );
    let o = gud(&[
        "export",
        "--run",
        run.to_str().unwrap(),
        "--out",
        w.to_str().unwrap(),
        "--check",
        check.to_str().unwrap(),
        "--check-rows",
        "5",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report = stdout_json(&o);
    let (ckpt, _) = read_safetensors(&run.join("checkpoint.safetensors"));
    let (weights, meta) = read_safetensors(&w);
    // exactly the EMA group, renamed, bytes unchanged
    let ema: std::collections::BTreeMap<_, _> = ckpt
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("ema.")?.to_string(), v.clone())))
        .collect();
    assert_eq!(weights, ema);
    assert!(weights.contains_key("down.0.0.conv1.weight") && weights.contains_key("in.weight"));
    assert_eq!(report["tensors"], weights.len());
    let params: usize = weights
        .values()
        .map(|(_, s, _)| s.iter().product::<usize>())
        .sum();
    assert_eq!(report["parameters"], params);
    assert_eq!(meta["format"], "gud-weights/1");
    assert_eq!(meta["shape"], "[1, 4, 4]");
    assert_eq!(meta["gamma_channel"], "false");
    assert!(meta["config"].contains("[network]"));
    let (rows, cmeta) = read_safetensors(&check);
    assert_eq!(cmeta["format"], "gud-export-check/1");
    assert_eq!(rows["x"].1, vec![5, 1, 4, 4]);
    assert_eq!(rows["eps_hat"].1, vec![5, 16]);
    let err = report["check_decomposition_error"].as_f64().unwrap();
    assert!(err < 1e-5, "eps_hat != base + U y: {err}");
    // the output never replaces an input: the checkpoint is refused as --out
    let before = std::fs::read(run.join("checkpoint.safetensors")).unwrap();
    let o = gud(&[
        "export",
        "--run",
        run.to_str().unwrap(),
        "--out",
        run.join("checkpoint.safetensors").to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["checkpoint.safetensors"]);
    assert_eq!(
        std::fs::read(run.join("checkpoint.safetensors")).unwrap(),
        before
    );
    let o = gud(&[
        "export",
        "--run",
        dir.path().join("nope").to_str().unwrap(),
        "--out",
        w.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["nope"]);
}

#[test]
#[cfg(feature = "nn")]
fn bad_runs_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, run) = trained_tiny_run(dir.path(), 2);
    let ckpt = run.join("checkpoint.safetensors");
    let bytes = std::fs::read(&ckpt).unwrap();
    std::fs::write(&ckpt, &bytes[..bytes.len() - 100]).unwrap();
    let out = dir.path().join("s.npy");
    let o = gud(&[
        "sample",
        "--run",
        run.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["checkpoint.safetensors", "corrupt or truncated"]);
    assert!(!out.exists());
    // The neural score without a run.
    let o = gud(&[
        "sample",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["needs a trained run"]);
    // An unwritable run directory.
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "x").unwrap();
    let o = gud(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        blocker.join("run").to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["file"]);
    // A network config that does not fit the data (16 groups do not divide width 8).
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("groups = 4", "groups = 16"),
    )
    .unwrap();
    let o = gud(&[
        "train",
        "--config",
        bad.to_str().unwrap(),
        "--out",
        dir.path().join("r2").to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["network.groups"]);
}

#[test]
#[cfg(feature = "nn")]
fn run_trains_then_samples_at_each_budget() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let cfg = tiny_neural_config(dir.path(), 12);
    let c = cfg.to_str().unwrap();
    let o = gud(&[
        "run",
        c,
        "--out",
        out.to_str().unwrap(),
        "--samples",
        "300",
        "--nfe",
        "3,6",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("trained the network"));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["runs"].as_array().unwrap().len(), 2);
    assert_eq!(report["runs"][0]["sampling"]["nfe"], 3);
    assert_eq!(report["runs"][0]["sampling"]["score"], "neural");
    assert_eq!(report["training"]["steps"], 12);
    for f in [
        "train/checkpoint.safetensors",
        "train/metrics.jsonl",
        "samples_nfe3.npy",
        "samples.npy",
        "samples.png",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    // A second run of the same config reuses the finished training run; another config is refused.
    let o = gud(&[
        "run",
        c,
        "--out",
        out.to_str().unwrap(),
        "--samples",
        "50",
        "--nfe",
        "3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let other = dir.path().join("other.toml");
    std::fs::write(
        &other,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("steps = 12", "steps = 13"),
    )
    .unwrap();
    let o = gud(&[
        "run",
        other.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--samples",
        "50",
    ]);
    assert_clean_failure(&o, &["another config"]);
}

fn fixture(p: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(p)
}

#[test]
fn nll_elbo_and_ode_agree_on_gaussian_data() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ff.toml");
    std::fs::write(
        &cfg,
        "[data]\nkind = 'free-field'\nsize = 4\nm2 = 0.5\nsamples = 4096\n\
         [design]\nmean = 'zero'\nbasis = { kind = 'fourier' }\nprior = { kind = 'free' }\n\
         [score]\nkind = 'gaussian'\n",
    )
    .unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "nll",
            "--config",
            cfg.to_str().unwrap(),
            "--samples",
            "1000",
        ];
        args.extend_from_slice(extra);
        args.push("--json");
        let o = gud(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout_json(&o)
    };
    // exact Gaussian kernels: E[-ELBO] = NLL up to the prior's mismatch (tiny at t = 1)
    let elbo = run(&[
        "--method",
        "elbo",
        "--steps",
        "20",
        "--posterior-variance",
        "gaussian",
    ]);
    // a tight solver tolerance: the two augmented systems take different adaptive steps, and at
    // the default 1e-5 their solver errors alone differ by ~2e-5 nats
    let ode = run(&["--method", "ode", "--tol", "1e-7"]);
    let hutch = run(&[
        "--method",
        "ode",
        "--tol",
        "1e-7",
        "--divergence",
        "hutchinson",
        "--probes",
        "2",
    ]);
    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap();
    let d = 16.0;
    assert_eq!(elbo["dim"], 16);
    assert_eq!(ode["divergence"], "exact");
    assert!(elbo["elbo_terms"]["diffusion"].as_f64().unwrap() > 0.0);
    // same test samples; the standard errors include the data's spread, so this is loose
    let diff = f(&elbo, "nats") - f(&ode, "nats");
    let tol = 4.0 * f(&elbo, "nats_se").hypot(f(&ode, "nats_se"));
    assert!(diff.abs() < tol, "ELBO {elbo} vs ODE {ode}");
    // the Gaussian score's Jacobian is diagonal: Rademacher probes are exact
    assert!((f(&hutch, "nats") - f(&ode, "nats")).abs() < 1e-6 * d);
    assert!(f(&hutch, "hutchinson_se") < 1e-9);
    let bpd = f(&ode, "nats_per_dim") / std::f64::consts::LN_2;
    assert!((f(&ode, "bits_per_dim") - bpd).abs() < 1e-12);
    assert_eq!(ode["dequantized"], false);
    // held-out data of another shape are refused
    let npy = dir.path().join("wrong.npy");
    write_npy(&npy, &[3, 5, 5], &vec![0.0; 75]);
    let o = gud(&[
        "nll",
        "--config",
        cfg.to_str().unwrap(),
        "--data",
        npy.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["shape"]);
}

#[test]
fn nll_on_8_bit_images_reports_bits_with_the_dequantisation_offset() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("fm.toml");
    let images = fixture("fashion-mnist/t10k-64-images-idx3-ubyte.gz");
    std::fs::write(
        &cfg,
        format!(
            "[data]\nkind = 'images'\ntrain = '{}'\nresize = [8, 8]\n\
             [design]\nbasis = {{ kind = 'pca' }}\nprior = {{ kind = 'white' }}\n\
             schedule = {{ kind = 'linear', ordering = 'variance', a = 1.0 }}\n\
             [score]\nkind = 'gaussian'\n",
            images.display()
        ),
    )
    .unwrap();
    let o = gud(&[
        "nll",
        "--config",
        cfg.to_str().unwrap(),
        "--samples",
        "32",
        "--steps",
        "50",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = stdout_json(&o);
    assert_eq!(r["dequantized"], true);
    assert_eq!(r["samples"], 32);
    let nats = r["nats_per_dim"].as_f64().unwrap();
    let bits = r["bits_per_dim"].as_f64().unwrap();
    assert!(
        (bits - (nats / std::f64::consts::LN_2 + 7.0)).abs() < 1e-9,
        "{r}"
    );
    assert!(
        bits > 0.0 && bits < 8.0,
        "a Gaussian model of 8-bit images: {bits} bits/dim"
    );
    // a corrupt image file in the config is named
    let bad = dir.path().join("bad.toml");
    let cut = dir.path().join("cut-idx3-ubyte");
    std::fs::write(&cut, [0u8, 0, 8, 3, 0, 0, 0, 9]).unwrap();
    std::fs::write(
        &bad,
        format!(
            "[data]\nkind = 'images'\ntrain = '{}'\n[score]\nkind = 'gaussian'\n",
            cut.display()
        ),
    )
    .unwrap();
    let o = gud(&["nll", "--config", bad.to_str().unwrap()]);
    assert_clean_failure(&o, &["cut-idx3-ubyte", "IDX"]);
}

#[test]
fn extend_slides_a_column_window_and_reports_seams() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cols.toml");
    std::fs::write(
        &cfg,
        "[data]\nkind = 'free-field'\nsize = 6\nm2 = 0.5\nsamples = 256\n\
         [design]\nmean = 'zero'\nbasis = { kind = 'pixel' }\nprior = { kind = 'white' }\n\
         schedule = { kind = 'sequential', ordering = 'column', softness = 1.5 }\n\
         [score]\nkind = 'empirical'\n",
    )
    .unwrap();
    let out = dir.path().join("wide.npy");
    let grid = dir.path().join("wide.png");
    let o = gud(&[
        "extend",
        "--config",
        cfg.to_str().unwrap(),
        "--width",
        "18",
        "--samples",
        "5",
        "--out",
        out.to_str().unwrap(),
        "--grid",
        grid.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = stdout_json(&o);
    let (shape, data) = read_npy(&out);
    assert_eq!(shape, vec![5, 6, 18]);
    assert!(data.iter().all(|v| v.is_finite()));
    assert!(grid.exists() && dir.path().join("wide.config.toml").exists());
    assert_eq!(r["periods"], 12);
    assert_eq!(r["seams"]["joins"], 2);
    let seam = r["seams"]["seam"].as_f64().unwrap();
    assert!(seam.is_finite() && seam > 0.0, "{r}");
    // a width that is not W + k * stride, and a schedule that is not column-wise
    let o = gud(&[
        "extend",
        "--config",
        cfg.to_str().unwrap(),
        "--width",
        "17",
        "--stride",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["width"]);
    let other = dir.path().join("rg.toml");
    std::fs::write(
        &other,
        "[data]\nkind = 'free-field'\nsize = 4\n[score]\nkind = 'gaussian'\n",
    )
    .unwrap();
    let o = gud(&[
        "extend",
        "--config",
        other.to_str().unwrap(),
        "--width",
        "8",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["sequential"]);
}

#[test]
#[cfg(feature = "nn")]
fn sweep_trains_one_network_on_a_family_and_writes_a_heat_map() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("family.toml");
    std::fs::write(
        &cfg,
        "[data]\nkind = 'free-field'\nsize = 4\nm2 = 0.5\nsamples = 128\n\
         [design]\nbasis = { kind = 'fourier' }\nprior = { kind = 'matched' }\n\
         schedule = { kind = 'linear', ordering = 'frequency', a = 1.0 }\n\
         [score]\nkind = 'neural'\n[sampler]\nsteps = 3\n\
         [network]\nwidth = 8\ngroups = 4\nembedding = 8\n\
         [train]\nsteps = 4\nbatch = 16\nthreads = 1\nlog_every = 2\n",
    )
    .unwrap();
    let out = dir.path().join("sweep");
    let o = gud(&[
        "sweep",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--a",
        "0.5,1.5",
        "--r",
        "0,1",
        "--nll-samples",
        "16",
        "--elbo-steps",
        "4",
        "--samples",
        "16",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = std::fs::read_to_string(out.join("sweep.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "{csv}");
    assert!(csv.lines().skip(1).all(|l| l
        .split(',')
        .nth(2)
        .unwrap()
        .parse::<f64>()
        .unwrap()
        .is_finite()));
    assert!(out.join("sweep.png").exists() && out.join("train/checkpoint.safetensors").exists());
    let saved = std::fs::read_to_string(out.join("config.toml")).unwrap();
    let family = saved
        .split("[train.family]")
        .nth(1)
        .expect("a family section");
    assert!(family.contains("0.5") && family.contains("1.5"), "{saved}");
    // any member of the family samples from the run; the written config names that member
    let npy = dir.path().join("member.npy");
    let o = gud(&[
        "sample",
        "--run",
        out.join("train").to_str().unwrap(),
        "--a",
        "0.7",
        "--r",
        "0.5",
        "--samples",
        "8",
        "--out",
        npy.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let member = std::fs::read_to_string(dir.path().join("member.config.toml")).unwrap();
    assert!(
        member.contains("a = 0.7") && member.contains("r = 0.5"),
        "{member}"
    );
    // a schedule without a softness cannot be swept
    let rg = dir.path().join("rg.toml");
    std::fs::write(
        &rg,
        "[data]\nkind = 'free-field'\nsize = 4\n[score]\nkind = 'gaussian'\n",
    )
    .unwrap();
    let o = gud(&[
        "sweep",
        rg.to_str().unwrap(),
        "--out",
        out.join("rg").to_str().unwrap(),
        "--samples",
        "0",
    ]);
    assert_clean_failure(&o, &["sequential"]);
}

#[test]
#[cfg(feature = "nn")]
fn classifier_trains_on_labelled_images_and_gives_a_frechet_distance() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("fm.toml");
    let images = fixture("fashion-mnist/t10k-64-images-idx3-ubyte.gz");
    let labels = fixture("fashion-mnist/t10k-64-labels-idx1-ubyte.gz");
    std::fs::write(
        &cfg,
        format!(
            "[data]\nkind = 'images'\ntrain = '{}'\ntrain_labels = '{}'\n\
             [design]\nbasis = {{ kind = 'pixel' }}\nprior = {{ kind = 'white' }}\n\
             [score]\nkind = 'gaussian'\n[train]\nthreads = 1\n",
            images.display(),
            labels.display()
        ),
    )
    .unwrap();
    let model = dir.path().join("clf.safetensors");
    let o = gud(&[
        "classifier",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
        "--steps",
        "150",
        "--batch",
        "32",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = stdout_json(&o);
    assert_eq!(r["classes"], 10);
    // 64 images seen ~75 times each: a CNN fits them far above chance (0.1)
    let acc = r["test_accuracy"].as_f64().unwrap();
    assert!(acc > 0.5, "accuracy {acc}");
    let eval = |samples: &Path| {
        let o = gud(&[
            "eval",
            "--samples",
            samples.to_str().unwrap(),
            "--reference",
            images.to_str().unwrap(),
            "--classifier",
            model.to_str().unwrap(),
            "--json",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout_json(&o)["classifier_frechet"].as_f64().unwrap()
    };
    let same = eval(&images);
    let other = eval(&fixture("png-gray"));
    // identical sets: 0 up to the square root of a rank-deficient covariance (64 images, 128
    // features: eigenvalues ~1e-9 have roots ~3e-5)
    assert!(other > 1e-3, "different sets: {other}");
    assert!(
        same.abs() < 1e-3 * other,
        "identical sets: {same} (different: {other})"
    );
    // unlabelled images cannot train a classifier; a corrupt classifier file is named
    let unlabelled = dir.path().join("u.toml");
    std::fs::write(
        &unlabelled,
        format!(
            "[data]\nkind = 'images'\ntrain = '{}'\n[score]\nkind = 'gaussian'\n",
            images.display()
        ),
    )
    .unwrap();
    let o = gud(&[
        "classifier",
        "--config",
        unlabelled.to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["labels"]);
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"not a model").unwrap();
    let o = gud(&[
        "eval",
        "--samples",
        images.to_str().unwrap(),
        "--reference",
        images.to_str().unwrap(),
        "--classifier",
        junk.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["junk.safetensors"]);
}

#[test]
fn image_example_configs_parse() {
    // their data come from `make data`, which the tests do not run: parse them only
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/images");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "toml") {
            let cfg = gud::config::load(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert!(matches!(cfg.data, gud::config::DataConfig::Images(_)));
            n += 1;
        }
    }
    assert!(n >= 2);
}

// ---- issue 20: reliability regressions, each named after the failure it fixes ----

/// A small analytic config (free field, L = 4, gaussian score) in `dir`.
fn tiny_gaussian_config(dir: &Path) -> std::path::PathBuf {
    let cfg = dir.join("g.toml");
    std::fs::write(
        &cfg,
        "[data]\nkind = 'free-field'\nsize = 4\nm2 = 0.5\nsamples = 64\n\
         [design]\nmean = 'zero'\nbasis = { kind = 'fourier' }\nprior = { kind = 'free' }\n\
         [score]\nkind = 'gaussian'\n[sampler]\nkind = 'exp'\nsteps = 4\n",
    )
    .unwrap();
    cfg
}

fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn issue20_absurd_sizes_are_errors_that_say_how_much_memory_not_aborts() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_gaussian_config(dir.path());
    let c = cfg.to_str().unwrap();
    let out = dir.path().join("x.npy");
    let o_ = out.to_str().unwrap();
    let o = gud(&[
        "sample",
        "--config",
        c,
        "--samples",
        "1000000000000",
        "--out",
        o_,
    ]);
    assert_clean_failure(&o, &["1000000000000 samples", "memory", "TiB"]);
    let big = dir.path().join("big.toml");
    std::fs::write(&big, "[data]\nkind = 'free-field'\nsize = 1000000\n").unwrap();
    let o = gud(&["sample", "--config", big.to_str().unwrap(), "--out", o_]);
    assert_clean_failure(&o, &["big.toml", "1000000 x 1000000", "memory"]);
    let phi4 = |size: &str, samples: &str| {
        gud(&[
            "phi4",
            "sample",
            "--size",
            size,
            "--m2",
            "-4",
            "--lam",
            "8",
            "--samples",
            samples,
            "--out",
            o_,
        ])
    };
    assert_clean_failure(
        &phi4("1000000", "10"),
        &["1000000 x 1000000 lattice", "memory"],
    );
    assert_clean_failure(
        &phi4("8", "1000000000000"),
        &["1000000000000 configurations", "memory"],
    );
    let cols = dir.path().join("cols.toml");
    std::fs::write(
        &cols,
        "[data]\nkind = 'free-field'\nsize = 4\nm2 = 0.5\nsamples = 16\n\
         [design]\nmean = 'zero'\nbasis = { kind = 'pixel' }\nprior = { kind = 'white' }\n\
         schedule = { kind = 'sequential', ordering = 'column', softness = 1.5 }\n",
    )
    .unwrap();
    let o = gud(&[
        "extend",
        "--config",
        cols.to_str().unwrap(),
        "--width",
        "1000000000",
        "--stride",
        "1",
        "--samples",
        "100000",
        "--out",
        o_,
    ]);
    assert_clean_failure(&o, &["width 1000000000", "memory"]);
    assert!(!out.exists());
}

#[test]
fn issue20_first_near_2_pow_64_is_refused_not_wrapped_to_sample_0() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_gaussian_config(dir.path());
    let out = dir.path().join("x.npy");
    let o = gud(&[
        "sample",
        "--config",
        cfg.to_str().unwrap(),
        "--first",
        "18446744073709551615",
        "--samples",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["first", "18446744073709551615"]);
    assert!(!out.exists());
}

#[test]
fn issue20_free_field_training_data_and_sampler_noise_are_independent_streams() {
    // gud run used to report "memorised 100%": data sample k and sampler draw k were the same
    // ChaCha8 stream, and the gaussian score maps a draw to exactly that free-field sample
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_gaussian_config(dir.path());
    let out = dir.path().join("run");
    let o = gud(&[
        "run",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--samples",
        "64",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let m = &report["runs"][0]["memorisation"];
    let fraction = m["memorised_fraction"].as_f64().unwrap();
    assert!(fraction < 0.5, "samples copy the training set: {m}");
    assert!(m["median_relative_distance"].as_f64().unwrap() > 0.1, "{m}");
}

#[test]
fn issue20_missing_sections_take_the_documented_defaults() {
    // examples/free_field.toml names no [score]: the documented default is `gaussian` (it used
    // to be the phi^4 job's `neural`, which cannot be sampled without a run)
    let dir = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/free_field.toml");
    let out = dir.path().join("s.npy");
    let o = gud(&[
        "sample",
        "--config",
        example.to_str().unwrap(),
        "--samples",
        "8",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let resolved = std::fs::read_to_string(dir.path().join("s.config.toml")).unwrap();
    let v: toml::Table = toml::from_str(&resolved).unwrap();
    assert_eq!(v["score"]["kind"].as_str(), Some("gaussian"), "{resolved}");
    assert_eq!(v["network"]["global"].as_bool(), Some(false), "{resolved}");
    assert!(v["train"].get("min_snr").is_none(), "{resolved}");
    assert!(v["train"].get("stable_target").is_none(), "{resolved}");
}

#[test]
fn issue20_an_output_never_overwrites_an_input() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_gaussian_config(dir.path());
    let data = dir.path().join("a.npy");
    let values: Vec<f64> = (0..64).map(|i| (i as f64 * 0.37).sin()).collect();
    write_npy(&data, &[4, 4, 4], &values);
    let before = std::fs::read(&data).unwrap();
    let cfg_before = std::fs::read(&cfg).unwrap();
    let (c, d) = (cfg.to_str().unwrap(), data.to_str().unwrap());
    for args in [
        vec![
            "sample",
            "--config",
            c,
            "--data",
            d,
            "--samples",
            "2",
            "--out",
            d,
        ],
        vec![
            "sample",
            "--config",
            c,
            "--samples",
            "2",
            "--out",
            "x.npy",
            "--grid",
            c,
        ],
        vec!["eval", "--samples", d, "--reference", d, "--grid", d],
        vec!["schedule", "--config", c, "--out", c],
    ] {
        let o = gud(&args);
        assert_clean_failure(&o, &["also an input"]);
    }
    assert_eq!(std::fs::read(&data).unwrap(), before);
    assert_eq!(std::fs::read(&cfg).unwrap(), cfg_before);
    assert!(!Path::new("x.npy").exists());
}

#[test]
fn issue20_a_failing_command_leaves_its_outputs_as_they_were() {
    // o.npy used to be replaced before the failing o.config.toml was written
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_gaussian_config(dir.path());
    let out = dir.path().join("o.npy");
    std::fs::write(&out, b"the previous result").unwrap();
    std::fs::create_dir(dir.path().join("o.config.toml")).unwrap();
    let o = gud(&[
        "sample",
        "--config",
        cfg.to_str().unwrap(),
        "--samples",
        "4",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["o.config.toml", "directory"]);
    assert_eq!(std::fs::read(&out).unwrap(), b"the previous result");
    assert_eq!(dir_names(dir.path()), ["g.toml", "o.config.toml", "o.npy"]);
}

#[test]
fn issue20_a_254_byte_output_name_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join(format!("{}.npy", "p".repeat(250)));
    let o = gud(&[
        "phi4",
        "sample",
        "--size",
        "4",
        "--m2",
        "-1",
        "--lam",
        "1",
        "--samples",
        "8",
        "--out",
        out.to_str().unwrap(),
        "--chains",
        "4",
        "--therm",
        "10",
        "--sep",
        "1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(read_npy(&out).0, vec![8, 4, 4]);
}

/// Starts gud with `args`, waits until `ready` exists (or `wait_ms` passed), sends `signal`.
fn signal_midway(args: &[&str], ready: Option<&Path>, wait_ms: u64, signal: &str) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_gud"))
        .args(args)
        .env("GUD_CACHE_DIR", std::env::temp_dir().join("gud-test-cache"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    loop {
        std::thread::sleep(std::time::Duration::from_millis(20));
        let waited = start.elapsed().as_millis() as u64 >= wait_ms;
        if ready.map_or(waited, |p| p.exists() || start.elapsed().as_secs() > 120) {
            break;
        }
    }
    Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn issue20_sigterm_and_sigint_stop_sampling_and_hmc_cleanly_with_130_or_143() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_gaussian_config(dir.path());
    let out = dir.path().join("s.npy");
    let args = [
        "sample",
        "--config",
        cfg.to_str().unwrap(),
        "--samples",
        "20000000",
        "--batch",
        "256",
        "--out",
        out.to_str().unwrap(),
    ];
    let o = signal_midway(&args, None, 1500, "-TERM");
    assert_eq!(o.status.code(), Some(143), "{}", stderr(&o));
    assert!(stderr(&o).contains("interrupted"), "{}", stderr(&o));
    let hmc_out = dir.path().join("h.npy");
    let args = [
        "phi4",
        "sample",
        "--size",
        "32",
        "--m2",
        "-4",
        "--lam",
        "8",
        "--samples",
        "100000",
        "--out",
        hmc_out.to_str().unwrap(),
    ];
    // phi4 sample used to exit 1 on Ctrl-C where every other command exits 130
    let o = signal_midway(&args, None, 1000, "-INT");
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    let o = signal_midway(&args, None, 1000, "-TERM");
    assert_eq!(o.status.code(), Some(143), "{}", stderr(&o));
    assert_eq!(dir_names(dir.path()), ["g.toml"], "nothing written");
}

#[test]
fn issue20_threads_flag_is_accepted_everywhere_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_gaussian_config(dir.path());
    let out = dir.path().join("s.npy");
    let (c, o_) = (cfg.to_str().unwrap(), out.to_str().unwrap());
    let o = gud(&[
        "--threads",
        "0",
        "sample",
        "--config",
        c,
        "--samples",
        "4",
        "--out",
        o_,
    ]);
    assert_clean_failure(&o, &["--threads"]);
    let o = gud(&[
        "sample",
        "--threads",
        "1",
        "--config",
        c,
        "--samples",
        "4",
        "--out",
        o_,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let one = std::fs::read(&out).unwrap();
    let o = gud(&[
        "sample",
        "--threads",
        "2",
        "--config",
        c,
        "--samples",
        "4",
        "--out",
        o_,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(&out).unwrap(),
        one,
        "analytic samples do not depend on threads"
    );
    let o = gud(&[
        "sample",
        "--config",
        c,
        "--samples",
        "4",
        "--batch",
        "3",
        "--out",
        o_,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(&out).unwrap(),
        one,
        "nor on the batch (README, guarantees)"
    );
}

#[test]
fn issue20_messages_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_gaussian_config(dir.path());
    let c = cfg.to_str().unwrap();
    // nll --tol 0 said "non-finite drift"
    let o = gud(&[
        "nll",
        "--config",
        c,
        "--method",
        "ode",
        "--tol",
        "0",
        "--samples",
        "4",
    ]);
    assert_clean_failure(&o, &["tol", "(0, 1]"]);
    // an OS error's text is printed once
    let missing = dir.path().join("missing.toml");
    let o = gud(&[
        "sample",
        "--config",
        missing.to_str().unwrap(),
        "--out",
        "x.npy",
    ]);
    assert_clean_failure(&o, &["missing.toml", "No such file"]);
    assert_eq!(
        stderr(&o).matches("No such file").count(),
        1,
        "{}",
        stderr(&o)
    );
    // ranges print as a person writes them, not 2.2250738585072014e-308
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[data]\nkind = 'free-field'\nsize = 4\nm2 = -1.0\n").unwrap();
    let o = gud(&[
        "sample",
        "--config",
        bad.to_str().unwrap(),
        "--out",
        "x.npy",
    ]);
    assert_clean_failure(&o, &["bad.toml", "data.m2", "> 0"]);
    assert!(!stderr(&o).contains("e-308"), "{}", stderr(&o));
    // an error inside [data] names the key and its line (it pointed at line 1)
    std::fs::write(&bad, "# c\n[data]\nkind = 'free-field'\nsize = 'eight'\n").unwrap();
    let o = gud(&[
        "sample",
        "--config",
        bad.to_str().unwrap(),
        "--out",
        "x.npy",
    ]);
    assert_clean_failure(&o, &["bad.toml", "`size`", "line 4"]);
}

#[test]
#[cfg(feature = "nn")]
fn issue20_training_runs_refuse_what_would_lose_or_misdescribe_them() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_neural_config(dir.path(), 4);
    let run = dir.path().join("run");
    let (c, r) = (cfg.to_str().unwrap(), run.to_str().unwrap());
    // --steps 0 exited 0 and wrote no checkpoint
    let o = gud(&["train", "--config", c, "--out", r, "--steps", "0"]);
    assert_clean_failure(&o, &["--steps 0"]);
    let o = gud(&["train", "--config", c, "--out", r]);
    assert!(o.status.success(), "{}", stderr(&o));
    let config_before = std::fs::read(run.join("config.toml")).unwrap();
    // --resume --steps below the checkpoint's step did nothing, exited 0, rewrote config.toml
    let o = gud(&["train", "--out", r, "--resume", "--steps", "2"]);
    assert_clean_failure(&o, &["at step 4", "--steps"]);
    assert_eq!(
        std::fs::read(run.join("config.toml")).unwrap(),
        config_before
    );
    // a config.toml edited after training (width 8 -> 16) sampled with the checkpoint's network
    let edited = String::from_utf8(config_before.clone())
        .unwrap()
        .replace("width = 8", "width = 16");
    std::fs::write(run.join("config.toml"), edited).unwrap();
    let out = dir.path().join("s.npy");
    let o = gud(&[
        "sample",
        "--run",
        r,
        "--samples",
        "4",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_clean_failure(
        &o,
        &[
            "checkpoint.safetensors",
            "differs from the config's [network]",
        ],
    );
    assert!(!out.exists());
    // classifier --lr nan printed a C++ stack trace
    let o = gud(&[
        "classifier",
        "--config",
        c,
        "--out",
        "clf.safetensors",
        "--lr",
        "NaN",
    ]);
    assert_clean_failure(&o, &["--lr"]);
    assert!(!stderr(&o).contains("Exception"), "{}", stderr(&o));
}

#[test]
#[cfg(feature = "nn")]
fn issue20_a_run_directory_is_locked_and_sigterm_leaves_a_resumable_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_neural_config(dir.path(), 100000);
    let run = dir.path().join("run");
    let (c, r) = (cfg.to_str().unwrap(), run.to_str().unwrap());
    let child = Command::new(env!("CARGO_BIN_EXE_gud"))
        .args(["train", "--config", c, "--out", r])
        .env("GUD_CACHE_DIR", std::env::temp_dir().join("gud-test-cache"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ckpt = run.join("checkpoint.safetensors");
    let start = std::time::Instant::now();
    while !ckpt.exists() && start.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // two runs into one directory: the second is refused (both used to exit 0, one lost)
    let o = gud(&["train", "--out", r, "--resume"]);
    assert_clean_failure(&o, &["in use by another gud process"]);
    // SIGTERM (Slurm, systemd, timeout) saved nothing; now it checkpoints like Ctrl-C
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(143), "{}", stderr(&o));
    assert!(stderr(&o).contains("--resume"), "{}", stderr(&o));
    let step = |p: &Path| {
        let b = std::fs::read(p).unwrap();
        let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
        let h: serde_json::Value = serde_json::from_slice(&b[8..8 + n]).unwrap();
        h["__metadata__"]["step"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    let at = step(&ckpt);
    assert!(at >= 4, "the checkpoint holds step {at}");
    let o = gud(&[
        "train",
        "--out",
        r,
        "--resume",
        "--steps",
        &(at + 2).to_string(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(step(&ckpt), at + 2);
}

/// Every file under `dir` with its bytes (to check that no input changed).
fn snapshot(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                out.push((p, bytes));
            }
        }
    }
    out.sort();
    out
}

/// The commands that read a file of this corpus entry, with `{}` for it; `{out}` is an output
/// in an empty directory, `{good}` a valid data set, `{cfg}` a valid config, `{run}` a run
/// directory whose checkpoint is the entry.
fn commands_reading(name: &str) -> Vec<Vec<&'static str>> {
    let data = vec![
        vec!["eval", "--samples", "{}", "--reference", "{good}"],
        vec![
            "eval",
            "--samples",
            "{good}",
            "--reference",
            "{}",
            "--grid",
            "{out}/g.png",
        ],
        vec![
            "sample",
            "--config",
            "{cfg}",
            "--data",
            "{}",
            "--out",
            "{out}/s.npy",
        ],
        vec!["phi4", "observe", "{}"],
        vec!["schedule", "--data", "{}", "--out", "{out}/s.png"],
        vec![
            "tune-grid",
            "--config",
            "{cfg}",
            "--data",
            "{}",
            "--steps",
            "3",
            "--out",
            "{out}/g.toml",
        ],
        vec![
            "nll",
            "--config",
            "{cfg}",
            "--data",
            "{}",
            "--out",
            "{out}/n.json",
        ],
    ];
    let configs = vec![
        vec![
            "sample",
            "--config",
            "{}",
            "--samples",
            "4",
            "--out",
            "{out}/s.npy",
        ],
        vec!["schedule", "--config", "{}", "--out", "{out}/s.png"],
        vec!["noise", "--config", "{}", "--out", "{out}/n.png"],
        vec![
            "phi4",
            "mcmc",
            "--config",
            "{}",
            "--m2",
            "-1",
            "--lam",
            "1",
            "--proposals",
            "4",
            "--hmc",
            "0",
            "--out",
            "{out}/c.npy",
        ],
        vec![
            "tune-grid",
            "--config",
            "{}",
            "--steps",
            "3",
            "--out",
            "{out}/g.toml",
        ],
        vec!["data", "--config", "{}", "--out", "{out}/d.npy"],
        vec!["data", "--config", "{}", "--test", "--out", "{out}/d.npy"],
        vec!["run", "{}", "--out", "{out}/run", "--samples", "4"],
        vec![
            "nll",
            "--config",
            "{}",
            "--samples",
            "4",
            "--out",
            "{out}/n.json",
        ],
        vec![
            "extend",
            "--config",
            "{}",
            "--width",
            "8",
            "--samples",
            "2",
            "--out",
            "{out}/e.npy",
        ],
        #[cfg(feature = "nn")]
        vec![
            "train",
            "--config",
            "{}",
            "--out",
            "{out}/train",
            "--steps",
            "1",
        ],
    ];
    let checkpoints = vec![
        #[cfg(feature = "nn")]
        vec![
            "sample",
            "--run",
            "{run}",
            "--samples",
            "4",
            "--out",
            "{out}/s.npy",
        ],
        #[cfg(feature = "nn")]
        vec![
            "eval",
            "--samples",
            "{good}",
            "--reference",
            "{good}",
            "--classifier",
            "{}",
        ],
        #[cfg(feature = "nn")]
        vec!["export", "--run", "{run}", "--out", "{out}/w.safetensors"],
        #[cfg(feature = "nn")]
        vec![
            "phi4",
            "mcmc",
            "--run",
            "{run}",
            "--m2",
            "-1",
            "--lam",
            "1",
            "--proposals",
            "4",
            "--hmc",
            "0",
            "--out",
            "{out}/c.npy",
        ],
        #[cfg(feature = "nn")]
        vec![
            "tune-grid",
            "--run",
            "{run}",
            "--steps",
            "3",
            "--out",
            "{out}/g.toml",
        ],
    ];
    match name.split('_').next() {
        Some("cfg") => configs,
        Some("st") => checkpoints,
        _ => data,
    }
}

#[test]
fn bad_input_corpus_fails_cleanly_everywhere() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/bad-inputs");
    let manifest = std::fs::read_to_string(corpus.join("expected.txt")).unwrap();
    let before = snapshot(&corpus);
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.npy");
    let values: Vec<f64> = (0..8 * 16).map(|i| (i as f64 * 0.61).sin()).collect();
    write_npy(&good, &[8, 4, 4], &values);
    let cfg = tiny_gaussian_config(dir.path());
    // (entry, expectation, command template, run directory)
    let mut jobs = Vec::new();
    let mut listed = 0;
    for line in manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, expect) = line.split_once('\t').expect("name<TAB>expectation");
        assert!(
            corpus.join(name).exists(),
            "{name} is in expected.txt, not in the corpus"
        );
        listed += 1;
        let run = dir.path().join(format!("run-{name}"));
        if name.starts_with("st_") {
            // a run directory whose config is fine and whose checkpoint is this file
            std::fs::create_dir_all(&run).unwrap();
            std::fs::copy(tiny_neural_config(dir.path(), 4), run.join("config.toml")).unwrap();
            std::fs::copy(corpus.join(name), run.join("checkpoint.safetensors")).unwrap();
        }
        for template in commands_reading(name) {
            jobs.push((name, expect, template, run.clone()));
        }
    }
    let check = |k: usize, (name, expect, template, run): &(&str, &str, Vec<&str>, _)| {
        let out = dir.path().join(format!("out-{k}"));
        std::fs::create_dir_all(&out).unwrap();
        let run: &std::path::PathBuf = run;
        let args: Vec<String> = template
            .iter()
            .map(|a| {
                a.replace("{out}", out.to_str().unwrap())
                    .replace("{good}", good.to_str().unwrap())
                    .replace("{cfg}", cfg.to_str().unwrap())
                    .replace("{run}", run.to_str().unwrap())
                    .replace("{}", corpus.join(name).to_str().unwrap())
            })
            .collect();
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = gud(&argv);
        let e = stderr(&o);
        let what = format!("`gud {}` on {name}", template.join(" "));
        assert!(!o.status.success(), "{what} succeeded: {e}");
        assert_eq!(
            o.status.code(),
            Some(1),
            "{what}: not a clean error exit: {e}"
        );
        assert!(!e.contains("panicked"), "{what} panicked: {e}");
        let shown = if name.starts_with("st_") && template.contains(&"{run}") {
            "checkpoint.safetensors"
        } else {
            name
        };
        assert!(
            e.contains(shown),
            "{what}: the message does not name the file: {e}"
        );
        assert!(
            expect.split('|').any(|x| e.contains(x)),
            "{what}: the message lacks `{expect}`: {e}"
        );
        assert_eq!(
            snapshot(&out),
            Vec::new(),
            "{what} wrote {:?}",
            dir_names(&out)
        );
    };
    // four at a time: most of a run is the process starting
    std::thread::scope(|scope| {
        for lane in 0..4 {
            let (jobs, check) = (&jobs, &check);
            scope.spawn(move || {
                for (k, job) in jobs.iter().enumerate().skip(lane).step_by(4) {
                    check(k, job);
                }
            });
        }
    });
    let entries = std::fs::read_dir(&corpus).unwrap().count() - 1; // less expected.txt
    assert_eq!(
        listed, entries,
        "every corpus entry is listed in expected.txt"
    );
    assert!(jobs.len() >= 150, "only {} command runs", jobs.len());
    assert_eq!(snapshot(&corpus), before, "an input of the corpus changed");
}

/// Removes every `wall_s` (timings differ between runs) from a report.
fn without_timings(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            m.remove("wall_s");
            m.values_mut().for_each(without_timings);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(without_timings),
        _ => {}
    }
}

#[test]
fn issue18_the_library_main_job_returns_the_binary_report() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_gaussian_config(dir.path());
    let out = dir.path().join("run");
    let o = gud(&[
        "run",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--samples",
        "48",
        "--seed",
        "5",
        "--nfe",
        "3,6",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(out.join("report.json")).unwrap();
    let mut binary: serde_json::Value = serde_json::from_str(&text).unwrap();
    let fitted = gud::data::fit(Some(&cfg), None, &gud::Silent).unwrap();
    let opts = gud::job::JobOptions {
        seed: 5,
        samples: 48,
        nfe: vec![3, 6],
    };
    let report = gud::job::run(
        &fitted,
        &gud::Run::new(out.join("train")),
        false,
        &opts,
        &gud::Silent,
    )
    .unwrap();
    // through text as the binary's file, so that both see the same float parsing
    let text = serde_json::to_string_pretty(&report.to_json()).unwrap();
    let mut library: serde_json::Value = serde_json::from_str(&text).unwrap();
    without_timings(&mut binary);
    without_timings(&mut library);
    assert_eq!(binary["runs"].as_array().unwrap().len(), 2);
    assert_eq!(binary, library);
}

#[test]
fn issue16_phi4_mcmc_corrects_a_gaussian_proposal_and_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_gaussian_config(dir.path());
    let c = cfg.to_str().unwrap();
    let out = dir.path().join("chain.npy");
    let o = gud(&[
        "phi4",
        "mcmc",
        "--config",
        c,
        "--m2",
        "-1",
        "--lam",
        "1",
        "--proposals",
        "500",
        "--hmc",
        "0",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["proposals"], 500);
    let acc = r["acceptance"].as_f64().unwrap();
    assert!(acc > 0.0 && acc < 1.0, "{acc}");
    assert_eq!(read_npy(&out).0, vec![500, 4, 4]);
    assert_eq!(
        read_npy(&dir.path().join("chain.weights.npy")).0,
        vec![500, 2]
    );
    assert_eq!(
        read_npy(&dir.path().join("chain.proposals.npy")).0,
        vec![500, 4, 4]
    );
    assert!(dir.path().join("chain.config.toml").exists());
    let bad_out = dir.path().join("bad.npy");
    let b = bad_out.to_str().unwrap();
    for (args, needles) in [
        (
            vec!["--size", "6", "--m2", "-1", "--lam", "1"],
            vec!["--size 6", "L = 4"],
        ),
        (
            vec!["--m2", "-1", "--lam", "1", "--proposals", "0"],
            vec!["--proposals"],
        ),
        (vec!["--m2", "nan", "--lam", "1"], vec!["m2"]),
        (vec![], vec!["couplings"]),
        (
            vec!["--m2", "-1", "--lam", "1", "--sampler", "sde"],
            vec!["deterministic"],
        ),
    ] {
        let mut all = vec!["phi4", "mcmc", "--config", c, "--hmc", "0", "--out", b];
        all.extend(args);
        assert_clean_failure(&gud(&all), &needles);
        assert!(!bad_out.exists());
    }
}

#[test]
fn issue16_gud_run_on_phi4_data_adds_the_exact_stage_and_a_switch_turns_it_off() {
    let dir = tempfile::tempdir().unwrap();
    let body = "[data]\nkind = 'phi4'\nsize = 4\nm2 = -1.0\nlam = 1.0\nsamples = 256\n\
                [design]\nmean = 'zero'\nbasis = { kind = 'fourier' }\nprior = { kind = 'free' }\n\
                [score]\nkind = 'gaussian'\n[sampler]\nkind = 'exp'\nsteps = 5\n\
                [exact]\nproposals = 200\n";
    let cfg = dir.path().join("p.toml");
    std::fs::write(&cfg, body).unwrap();
    let out = dir.path().join("run");
    let args = |o: &Path| {
        vec![
            "run".to_string(),
            cfg.display().to_string(),
            "--out".into(),
            o.display().to_string(),
            "--samples".into(),
            "64".into(),
        ]
    };
    let o = Command::new(env!("CARGO_BIN_EXE_gud"))
        .args(args(&out))
        .env("GUD_CACHE_DIR", std::env::temp_dir().join("gud-test-cache"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("exact (SPEC 9)"));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(r["exact"]["report"]["proposals"], 200);
    let acc = r["exact"]["report"]["acceptance"].as_f64().unwrap();
    assert!(acc > 0.0 && acc <= 1.0, "{acc}");
    assert_eq!(r["exact"]["chain"].as_array().unwrap().len(), 8);
    std::fs::write(&cfg, format!("{body}enabled = false\n")).unwrap();
    let off = dir.path().join("off");
    let o = Command::new(env!("CARGO_BIN_EXE_gud"))
        .args(args(&off))
        .env("GUD_CACHE_DIR", std::env::temp_dir().join("gud-test-cache"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(off.join("report.json")).unwrap()).unwrap();
    assert!(r.get("exact").is_none());
}

#[test]
fn issue21_data_writes_the_training_and_held_out_sets() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ff.toml");
    std::fs::write(
        &cfg,
        "[data]\nkind = 'free-field'\nsize = 4\nm2 = 0.5\nsamples = 64\nseed = 3\n",
    )
    .unwrap();
    let (train, test) = (dir.path().join("train.npy"), dir.path().join("test.npy"));
    let c = cfg.to_str().unwrap();
    let o = gud(&["data", "--config", c, "--out", train.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = gud(&[
        "data",
        "--config",
        c,
        "--test",
        "--out",
        test.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (shape, a) = read_npy(&train);
    let (shape_t, b) = read_npy(&test);
    assert_eq!((shape.clone(), shape_t), (vec![64, 4, 4], vec![64, 4, 4]));
    assert_ne!(a, b, "the held-out set is an independent draw");
    assert!(dir.path().join("train.config.toml").exists());
    // the training set is the config's: sampling on it with --data equals sampling on the config
    let (s1, s2) = (dir.path().join("s1.npy"), dir.path().join("s2.npy"));
    let common = ["--score", "gaussian", "--steps", "4", "--samples", "8"];
    let mut a1 = vec!["sample", "--config", c, "--out", s1.to_str().unwrap()];
    a1.extend(common);
    let mut a2 = vec!["sample", "--config", c, "--data", train.to_str().unwrap()];
    a2.extend(["--out", s2.to_str().unwrap()]);
    a2.extend(common);
    assert!(gud(&a1).status.success() && gud(&a2).status.success());
    // float32 data: the designs agree to float32 precision
    let (_, x1) = read_npy(&s1);
    let (_, x2) = read_npy(&s2);
    for (p, q) in x1.iter().zip(&x2) {
        assert!((p - q).abs() < 1e-4, "{p} vs {q}");
    }
}

#[test]
fn issue21_one_flag_language() {
    let dir = tempfile::tempdir().unwrap();
    let d = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
    // two independent HMC sets (seeds 1 and 2) of a 4 x 4 lattice with the given couplings
    let hmc_pair = |couplings: [&str; 4], names: [&str; 2]| {
        for (seed, f) in [("1", names[0]), ("2", names[1])] {
            let mut args = vec!["phi4", "sample", "--size", "4"];
            args.extend(couplings);
            let out = d(f);
            args.extend(["--samples", "200", "--seed", seed, "--out", &out]);
            let o = gud(&args);
            assert!(o.status.success(), "{}", stderr(&o));
        }
    };
    hmc_pair(["--m2", "-4", "--lam", "8"], ["gen.npy", "ref.npy"]);
    // eval: --generated (a file) with --m2/--lam equals the older --samples / --phi4 form
    let new = gud(&[
        "eval",
        "--generated",
        &d("gen.npy"),
        "--reference",
        &d("ref.npy"),
        "--m2",
        "-4",
        "--lam",
        "8",
        "--json",
    ]);
    let old = gud(&[
        "eval",
        "--samples",
        &d("gen.npy"),
        "--reference",
        &d("ref.npy"),
        "--phi4",
        "-4,8",
        "--json",
    ]);
    assert!(new.status.success(), "{}", stderr(&new));
    assert_eq!(stdout_json(&new)["phi4"], stdout_json(&old)["phi4"]);
    assert!(stdout_json(&new)["phi4"].is_object());
    // the hopping convention: kappa = 0.25, lambda = 0.5 is m2 = -4, lam = 8, and its files
    // hold varphi = phi / sqrt(kappa) = 2 phi (exact in binary)
    hmc_pair(
        ["--kappa", "0.25", "--lambda", "0.5"],
        ["gen_h.npy", "ref_h.npy"],
    );
    let hop = gud(&[
        "eval",
        "--generated",
        &d("gen_h.npy"),
        "--reference",
        &d("ref_h.npy"),
        "--kappa",
        "0.25",
        "--lambda",
        "0.5",
        "--json",
    ]);
    assert_eq!(stdout_json(&hop)["phi4"], stdout_json(&new)["phi4"]);
    // list defaults print as they parse
    let help = String::from_utf8_lossy(&gud(&["noise", "--help"]).stdout).into_owned();
    let default = help
        .split("[default: ")
        .nth(1)
        .and_then(|s| s.split(']').next())
        .expect("noise --times has a default")
        .to_string();
    let o = gud(&[
        "noise",
        "--times",
        &default,
        "--data",
        &d("gen.npy"),
        "--out",
        &d("n.png"),
    ]);
    assert!(o.status.success(), "default `{default}`: {}", stderr(&o));
    // run and sweep take --config as every other command does, not both forms at once
    let o = gud(&["run", "--config", &d("missing.toml"), "--out", &d("r")]);
    assert_clean_failure(&o, &["missing.toml"]);
    let o = gud(&["run", &d("a.toml"), "--config", &d("b.toml")]);
    assert_clean_failure(&o, &["cannot be used with"]);
    let o = gud(&["sweep", "--config", &d("missing.toml"), "--out", &d("s")]);
    assert_clean_failure(&o, &["missing.toml"]);
}

/// `gud ARGS` must fail at once (well under `secs`), cleanly, naming every needle and none of
/// the `absent` texts.
fn fails_fast(args: &[&str], secs: f64, needles: &[&str], absent: &[&str]) {
    let start = std::time::Instant::now();
    let o = gud(args);
    let took = start.elapsed().as_secs_f64();
    assert_clean_failure(&o, needles);
    let e = stderr(&o);
    for a in absent {
        assert!(!e.contains(a), "`gud {}` says `{a}`: {e}", args.join(" "));
    }
    assert!(took < secs, "`gud {}` took {took:.1} s", args.join(" "));
}

#[test]
fn issue34_exact_sampling_and_tuned_grids_refuse_bad_settings_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_gaussian_config(dir.path());
    let c = cfg.to_str().unwrap();
    let out = dir.path().join("o.npy");
    let o = out.to_str().unwrap();
    let mcmc = [
        "phi4", "mcmc", "--config", c, "--m2", "-1", "--lam", "1", "--hmc", "0",
    ];
    // a huge count is a memory error before the first proposal, not a 417,000-hour ETA
    let mut a = mcmc.to_vec();
    a.extend(["--proposals", "1000000000000", "--out", o]);
    fails_fast(&a, 20.0, &["memory", "1000000000000"], &[]);
    let mut a = mcmc.to_vec();
    a.extend(["--proposals", "16", "--batch", "0", "--out", o]);
    fails_fast(&a, 20.0, &["--batch", "at least 1"], &["proposals` = 1"]);
    // tune-grid: an order exp does not have, and zero trials, are errors, not a written grid
    let tune = ["tune-grid", "--config", c, "--steps", "4", "--out", o];
    for order in ["0", "9"] {
        let mut a = tune.to_vec();
        a.extend(["--order", order]);
        fails_fast(&a, 20.0, &["order", order], &[]);
    }
    let mut a = tune.to_vec();
    a.extend(["--max-trials", "0"]);
    fails_fast(&a, 20.0, &["--max-trials", "at least 1"], &[]);
    assert!(!out.exists(), "a refused command wrote {o}");
}

#[test]
fn issue34_data_test_without_a_held_out_part_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let npy = dir.path().join("train.npy");
    write_npy(
        &npy,
        &[8, 4, 4],
        &(0..128).map(|i| (i as f64 * 0.3).sin()).collect::<Vec<_>>(),
    );
    let cfg = dir.path().join("npy.toml");
    std::fs::write(
        &cfg,
        format!("[data]\nkind = 'npy'\npath = '{}'\n", npy.display()),
    )
    .unwrap();
    let out = dir.path().join("test.npy");
    let (c, o) = (cfg.to_str().unwrap(), out.to_str().unwrap());
    fails_fast(
        &["data", "--config", c, "--test", "--out", o],
        20.0,
        &["held-out", "train.npy"],
        &[],
    );
    assert_eq!(dir_names(dir.path()), vec!["npy.toml", "train.npy"]);
    // the training set itself is still written
    let o2 = gud(&["data", "--config", c, "--out", o]);
    assert!(o2.status.success(), "{}", stderr(&o2));
}

#[test]
fn issue34_every_output_name_is_checked_before_the_first_rename() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_gaussian_config(dir.path());
    // a legal 254-byte .npy name whose .config.toml beside it would be 262 bytes
    let out = dir.path().join(format!("{}.npy", "s".repeat(250)));
    let o = gud(&[
        "sample",
        "--config",
        cfg.to_str().unwrap(),
        "--samples",
        "4",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["file name is 262 bytes", "at most 255"]);
    assert_eq!(
        dir_names(dir.path()),
        vec!["g.toml"],
        "a partial output was left"
    );
}

#[test]
fn issue34_an_output_that_is_a_symlink_is_refused_and_its_target_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_gaussian_config(dir.path());
    let target = dir.path().join("target.npy");
    std::fs::write(&target, b"keep me").unwrap();
    let cases = [
        ("to-file.npy", target.clone()),
        ("dangling.npy", dir.path().join("missing.npy")),
        ("loop.npy", dir.path().join("loop.npy")),
    ];
    for (name, to) in &cases {
        let link = dir.path().join(name);
        std::os::unix::fs::symlink(to, &link).unwrap();
        let o = gud(&[
            "sample",
            "--config",
            cfg.to_str().unwrap(),
            "--samples",
            "4",
            "--out",
            link.to_str().unwrap(),
        ]);
        assert_clean_failure(&o, &["symbolic link", name]);
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_link(&link).unwrap(), *to);
    }
    assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
    assert!(!dir.path().join("missing.npy").exists());
}

#[test]
fn issue34_messages_name_the_users_input_not_internals() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_gaussian_config(dir.path());
    let c = cfg.to_str().unwrap();
    let out = dir.path().join("o.npy");
    let o = out.to_str().unwrap();
    // a patch rule as it was written, not a Debug dump
    let a = [
        "sample", "--config", c, "--score", "els", "--patch", "fixed:0", "--out", o,
    ];
    fails_fast(&a, 20.0, &["fixed:0"], &["Fixed {", "size:"]);
    // zero-variance data and zero directions are not "empty data sets"
    let flat = dir.path().join("flat.npy");
    write_npy(&flat, &[8, 4, 4], &[0.0; 128]);
    let a = [
        "sample",
        "--config",
        c,
        "--data",
        flat.to_str().unwrap(),
        "--out",
        o,
    ];
    fails_fast(&a, 20.0, &["zero variance"], &["empty data set"]);
    let good = dir.path().join("good.npy");
    write_npy(
        &good,
        &[8, 4, 4],
        &(0..128).map(|i| (i as f64 * 0.7).cos()).collect::<Vec<_>>(),
    );
    let g = good.to_str().unwrap();
    let a = [
        "eval",
        "--samples",
        g,
        "--reference",
        g,
        "--directions",
        "0",
    ];
    fails_fast(&a, 20.0, &["directions"], &["empty data set"]);
    // a directory where files cannot be created says so
    let a = [
        "sample",
        "--config",
        c,
        "--samples",
        "4",
        "--out",
        "/proc/o.npy",
    ];
    fails_fast(&a, 20.0, &["/proc", "files can be created"], &[]);
    // an output directory that is a file
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let inside = file.join("o.npy");
    let a = [
        "sample",
        "--config",
        c,
        "--samples",
        "4",
        "--out",
        inside.to_str().unwrap(),
    ];
    fails_fast(&a, 20.0, &["a-file", "not a directory"], &[]);
    assert!(!out.exists());
}

#[test]
#[cfg(feature = "nn")]
fn issue34_a_failed_train_leaves_no_new_run_directory() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_neural_config(dir.path(), 4);
    let c = cfg.to_str().unwrap();
    // the config as --out: a file, not a run directory
    let o = gud(&["train", "--config", c, "--out", c]);
    assert_clean_failure(&o, &["tiny.toml", "is a file, not a directory"]);
    // a config that fails the trainer's checks leaves no directory behind
    let bad = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("batch = 32", "batch = 0");
    std::fs::write(&bad, text).unwrap();
    let run = dir.path().join("run");
    let o = gud(&[
        "train",
        "--config",
        bad.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["batch"]);
    assert!(!run.exists(), "left {:?}", dir_names(&run));
}

#[test]
fn issue32_a_flow_trained_small_proposes_exactly_at_any_size() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_gaussian_config(dir.path());
    let c = cfg.to_str().unwrap();
    let flow = dir.path().join("f.safetensors");
    let f = flow.to_str().unwrap();
    let target = ["--m2", "-1", "--lam", "1"];
    let mut a = vec![
        "phi4", "flow", "--config", c, "--steps", "30", "--batch", "16",
    ];
    a.extend(target);
    a.extend([
        "--stages", "2", "--layers", "1", "--hidden", "4", "--json", "--out", f,
    ]);
    let o = gud(&a);
    assert!(o.status.success(), "{}", stderr(&o));
    let p = stdout_json(&o);
    assert_eq!(p["l"], 4);
    assert!(dir.path().join("f.config.toml").exists());
    assert_eq!(p["training"]["steps"], 30);
    // the flow proposes on the 4 x 4 design it was trained on, and on an 8 x 8 one
    let big = dir.path().join("big.toml");
    std::fs::write(
        &big,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("size = 4", "size = 8"),
    )
    .unwrap();
    for config in [c, big.to_str().unwrap()] {
        let out = dir.path().join("chain.npy");
        let mut a = vec![
            "phi4",
            "mcmc",
            "--config",
            config,
            "--flow",
            f,
            "--proposals",
            "256",
        ];
        a.extend(target);
        a.extend(["--hmc", "0", "--json", "--out", out.to_str().unwrap()]);
        let o = gud(&a);
        assert!(o.status.success(), "{config}: {}", stderr(&o));
        let r = stdout_json(&o);
        assert_eq!(r["sampling"]["sampler"], "flow");
        let ess = r["ess_fraction"].as_f64().unwrap();
        assert!(ess > 0.0 && ess <= 1.0, "{ess}");
        assert_eq!(r["non_finite"], 0);
    }
    // a file that is not a flow, and a flow with diffusion flags, are refused by name
    let bogus = dir.path().join("bogus.safetensors");
    std::fs::write(&bogus, b"not a flow").unwrap();
    let out = dir.path().join("x.npy");
    let o = out.to_str().unwrap();
    let mut a = vec![
        "phi4",
        "mcmc",
        "--config",
        c,
        "--flow",
        bogus.to_str().unwrap(),
    ];
    a.extend(target);
    a.extend(["--out", o]);
    assert_clean_failure(&gud(&a), &["bogus.safetensors", "not a gud flow"]);
    let mut a = vec!["phi4", "mcmc", "--config", c, "--flow", f, "--steps", "4"];
    a.extend(target);
    a.extend(["--out", o]);
    assert_clean_failure(&gud(&a), &["--flow", "--steps"]);
    // continuing a flow (--init) keeps its architecture
    let more = dir.path().join("more.safetensors");
    let mut a = vec![
        "phi4", "flow", "--config", c, "--steps", "5", "--batch", "8",
    ];
    a.extend(target);
    a.extend(["--init", f, "--out", more.to_str().unwrap()]);
    let o = gud(&a);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!out.exists());
}

#[test]
fn issue32_gud_runs_exact_stage_can_propose_with_a_flow_and_writes_it() {
    let dir = tempfile::tempdir().unwrap();
    let body = "[data]\nkind = 'phi4'\nsize = 4\nm2 = -1.0\nlam = 1.0\nsamples = 256\n\
                [design]\nmean = 'zero'\nbasis = { kind = 'fourier' }\nprior = { kind = 'free' }\n\
                [score]\nkind = 'gaussian'\n[sampler]\nkind = 'exp'\nsteps = 5\n\
                [exact]\nproposals = 200\nproposal = 'flow'\n\
                flow = { stages = 2, layers = 1, hidden = 4 }\n\
                flow_training = { steps = 20, batch = 16 }\n";
    let cfg = dir.path().join("p.toml");
    std::fs::write(&cfg, body).unwrap();
    let out = dir.path().join("run");
    let o = gud(&[
        "run",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--samples",
        "64",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(r["exact"]["report"]["sampling"]["sampler"], "flow");
    assert_eq!(r["exact"]["flow"]["training"]["steps"], 20);
    assert_eq!(r["exact"]["report"]["non_injective"], 0);
    assert!(out.join("flow.safetensors").exists());
    // the written flow proposes again through gud phi4 mcmc
    let chain = dir.path().join("c.npy");
    let o = gud(&[
        "phi4",
        "mcmc",
        "--config",
        cfg.to_str().unwrap(),
        "--flow",
        out.join("flow.safetensors").to_str().unwrap(),
        "--proposals",
        "64",
        "--hmc",
        "0",
        "--out",
        chain.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn issue32_sigterm_stops_flow_training_with_the_flow_so_far_and_init_continues_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_gaussian_config(dir.path());
    let flow = dir.path().join("f.safetensors");
    let args = [
        "phi4",
        "flow",
        "--config",
        cfg.to_str().unwrap(),
        "--m2",
        "-1",
        "--lam",
        "1",
        "--steps",
        "100000000",
        "--out",
        flow.to_str().unwrap(),
    ];
    let o = signal_midway(&args, None, 1500, "-TERM");
    assert_eq!(o.status.code(), Some(143), "{}", stderr(&o));
    assert!(stderr(&o).contains("--init"), "{}", stderr(&o));
    // the flow so far is a complete file that a new run continues
    let more = dir.path().join("more.safetensors");
    let o = gud(&[
        "phi4",
        "flow",
        "--config",
        cfg.to_str().unwrap(),
        "--m2",
        "-1",
        "--lam",
        "1",
        "--steps",
        "3",
        "--init",
        flow.to_str().unwrap(),
        "--out",
        more.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn issue33_shards_of_proposals_merge_into_the_single_runs_chain() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_gaussian_config(dir.path());
    let c = cfg.to_str().unwrap();
    let target = ["--m2", "-1", "--lam", "1", "--seed", "5"];
    let single = dir.path().join("single.npy");
    let mut a = vec![
        "phi4",
        "mcmc",
        "--config",
        c,
        "--proposals",
        "100",
        "--hmc",
        "0",
        "--json",
    ];
    a.extend(target);
    a.extend(["--out", single.to_str().unwrap()]);
    let o = gud(&a);
    assert!(o.status.success(), "{}", stderr(&o));
    let one = stdout_json(&o);
    let mut shards = Vec::new();
    for (k, (first, count)) in [(0, 30), (30, 45), (75, 25)].iter().enumerate() {
        let s = dir.path().join(format!("s{k}.npz"));
        let (f, n) = (first.to_string(), count.to_string());
        let mut a = vec![
            "phi4", "propose", "--config", c, "--first", &f, "--count", &n,
        ];
        a.extend(target);
        a.extend(["--out", s.to_str().unwrap()]);
        let o = gud(&a);
        assert!(o.status.success(), "{}", stderr(&o));
        shards.push(s);
    }
    let merged = dir.path().join("merged.npy");
    let mut a = vec![
        "phi4",
        "mcmc",
        "--hmc",
        "0",
        "--json",
        "--out",
        merged.to_str().unwrap(),
        "--from",
    ];
    // in another order than their ranges
    for s in [&shards[2], &shards[0], &shards[1]] {
        a.push(s.to_str().unwrap());
    }
    let o = gud(&a);
    assert!(o.status.success(), "{}", stderr(&o));
    let two = stdout_json(&o);
    for key in [
        "acceptance",
        "ess_fraction",
        "log_z",
        "log_z_error",
        "chain",
        "reweighted",
    ] {
        assert_eq!(one[key], two[key], "{key}");
    }
    assert_eq!(
        std::fs::read(&single).unwrap(),
        std::fs::read(&merged).unwrap()
    );
    // a missing range is an error that names the shard after the gap
    let gap = dir.path().join("gap.npy");
    let o = gud(&[
        "phi4",
        "mcmc",
        "--hmc",
        "0",
        "--out",
        gap.to_str().unwrap(),
        "--from",
        shards[0].to_str().unwrap(),
        shards[2].to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["s2.npz", "gap"]);
    assert!(!gap.exists());
}

#[test]
fn issue33_a_killed_shard_job_leaves_nothing_and_its_rerun_alone_gives_the_same_shard() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_gaussian_config(dir.path());
    let c = cfg.to_str().unwrap();
    let args = |out: &Path| -> Vec<String> {
        [
            "phi4", "propose", "--config", c, "--m2", "-1", "--lam", "1", "--seed", "5", "--first",
            "1000", "--count", "120000", "--out",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([out.to_str().unwrap().to_string()])
        .collect()
    };
    // Slurm's scancel and a time limit send SIGTERM: the job stops, its shard is not written
    let killed = dir.path().join("shard.npz");
    let killed_args = args(&killed);
    let killed_args: Vec<&str> = killed_args.iter().map(String::as_str).collect();
    let o = signal_midway(&killed_args, None, 400, "-TERM");
    assert!(!o.status.success(), "the job finished before the kill");
    assert!(!killed.exists());
    assert_eq!(dir_names(dir.path()), ["g.toml"], "a partial file was left");
    // its rerun alone, and a run that was never killed: the same shard but for the seconds
    let o = gud(&args(&killed).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    let reference = dir.path().join("reference.npz");
    let o = gud(&args(&reference)
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    let (a, b) = (
        gud::shard::read(&killed).unwrap(),
        gud::shard::read(&reference).unwrap(),
    );
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a.fields), bits(&b.fields));
    assert_eq!(bits(&a.log_q), bits(&b.log_q));
    assert_eq!(bits(&a.log_p), bits(&b.log_p));
    let untimed = |s: &gud::shard::Shard| gud::shard::ShardProvenance {
        wall_s: 0.0,
        ..s.provenance.clone()
    };
    assert_eq!(untimed(&a), untimed(&b));
}
