//! Exact sampling (issue 16, SPEC section 9) through the library: the free field is proposed
//! exactly (closed-form observables and log Z), and a deliberately poor proposal is corrected
//! by the Metropolis chain and by reweighting (detailed balance against a long HMC run).

use gud::exact::{mcmc, McmcOptions};
use gud::Silent;
use gud_phi4::observables::{compare, measure};
use gud_phi4::{Couplings, HmcConfig, Lattice};
use std::path::Path;

fn fitted(toml: &str) -> gud::Fitted {
    let cfg = gud::config::parse(toml, Path::new("test.toml")).unwrap();
    gud::data::fit_config(cfg, "test.toml", None, &Silent).unwrap()
}

/// A Gaussian proposal: free-field data of mass `m2` on L x L, its free prior, the gaussian
/// score, exp with K = 5.
fn gaussian_proposal(l: usize, m2: f64, samples: usize) -> gud::Fitted {
    fitted(&format!(
        "[data]\nkind = 'free-field'\nsize = {l}\nm2 = {m2}\nsamples = {samples}\nseed = 3\n\
         [design]\nmean = 'zero'\nbasis = {{ kind = 'fourier' }}\nprior = {{ kind = 'free' }}\n\
         [score]\nkind = 'gaussian'\n[sampler]\nkind = 'exp'\nsteps = 5\nbatch = 16\n"
    ))
}

/// `k_hat^2 + m2` of every momentum of the L x L lattice.
fn eigenvalues(l: usize, m2: f64) -> Vec<f64> {
    let s = |n: usize| (std::f64::consts::PI * n as f64 / l as f64).sin().powi(2);
    (0..l * l)
        .map(|k| 4.0 * (s(k / l) + s(k % l)) + m2)
        .collect()
}

#[test]
fn the_free_field_is_proposed_exactly_with_its_closed_form_observables_and_log_z() {
    // S = phi^T A phi with A = -Laplacian + m2: <phi^2> = 1/V sum_k 1 / (2 a_k),
    // <M^2> = 1 / (2 m2 V), Z = prod_k sqrt(pi / a_k)
    let (l, m2) = (4, 0.5);
    let f = gaussian_proposal(l, m2, 65536);
    let score = gud::sample::build_score(&f.config, &f.design, &f.data, None).unwrap();
    let lattice = Lattice::new(l, Couplings::new(m2, 0.0).unwrap()).unwrap();
    let opts = McmcOptions {
        proposals: 4000,
        seed: 1,
        hmc_reference: 0,
        ode_tol: None,
    };
    let m = mcmc(
        &f.config,
        &f.design,
        score.as_ref(),
        &lattice,
        &opts,
        &Silent,
    )
    .unwrap();
    let r = &m.report;
    assert!(
        r.weights.acceptance > 0.99,
        "acceptance {}",
        r.weights.acceptance
    );
    assert!(
        r.weights.ess_fraction > 0.99,
        "ESS/N {}",
        r.weights.ess_fraction
    );
    let a = eigenvalues(l, m2);
    let v = (l * l) as f64;
    let phi2 = a.iter().map(|x| 0.5 / x).sum::<f64>() / v;
    let m2_exact = 0.5 / (m2 * v);
    for (name, obs) in [
        ("chain", &r.target.chain),
        ("reweighted", &r.target.reweighted),
    ] {
        for (what, est, exact) in [("<phi^2>", obs.phi2, phi2), ("<M^2>", obs.m2, m2_exact)] {
            let z = (est.value - exact) / est.error;
            assert!(
                z.abs() < 4.0,
                "{name} {what}: {} +- {} vs {exact}",
                est.value,
                est.error
            );
        }
    }
    let log_z: f64 = a
        .iter()
        .map(|x| 0.5 * (std::f64::consts::PI / x).ln())
        .sum();
    let z = (r.weights.log_z - log_z) / r.weights.log_z_error.max(1e-12);
    assert!(
        z.abs() < 4.0,
        "log Z {} +- {} vs {log_z}",
        r.weights.log_z,
        r.weights.log_z_error
    );
    // the continuous ODE (its end point at t_min keeps a little noise: still a near-exact
    // proposal) with log q from the same solve
    let ode = McmcOptions {
        proposals: 400,
        ode_tol: Some(1e-7),
        ..opts
    };
    let m = mcmc(
        &f.config,
        &f.design,
        score.as_ref(),
        &lattice,
        &ode,
        &Silent,
    )
    .unwrap();
    assert!(
        m.report.weights.acceptance > 0.95,
        "ODE acceptance {}",
        m.report.weights.acceptance
    );
    let z = (m.report.weights.log_z - log_z) / m.report.weights.log_z_error.max(1e-12);
    assert!(
        z.abs() < 4.0,
        "ODE log Z {} +- {} vs {log_z}",
        m.report.weights.log_z,
        m.report.weights.log_z_error
    );
}

#[test]
fn a_poor_proposal_is_corrected_by_the_chain_and_by_reweighting() {
    // 2 x 2 lattice, target m2 = -1, lam = 1 (a double well); the proposal is the free field of
    // m2 = 0.3: visibly wrong, corrected by detailed balance
    let l = 2;
    let couplings = Couplings::new(-1.0, 1.0).unwrap();
    let lattice = Lattice::new(l, couplings).unwrap();
    let f = gaussian_proposal(l, 0.3, 8192);
    let score = gud::sample::build_score(&f.config, &f.design, &f.data, None).unwrap();
    let opts = McmcOptions {
        proposals: 40000,
        seed: 2,
        hmc_reference: 0,
        ode_tol: None,
    };
    let m = mcmc(
        &f.config,
        &f.design,
        score.as_ref(),
        &lattice,
        &opts,
        &Silent,
    )
    .unwrap();
    let hmc_cfg = HmcConfig {
        seed: 5,
        ..HmcConfig::default()
    };
    let hmc = gud_phi4::hmc::sample(&lattice, 40000, &hmc_cfg, &Silent).unwrap();
    let reference = measure(&hmc.configs, l, Some(couplings)).unwrap();
    let z_of = |o: &gud_phi4::observables::Observables, name: &str| {
        compare(o, &reference)
            .into_iter()
            .find(|c| c.name == name)
            .unwrap()
            .z
    };
    for name in ["m2", "phi2", "phi4", "binder"] {
        let (zc, zr) = (
            z_of(&m.report.target.chain, name),
            z_of(&m.report.target.reweighted, name),
        );
        assert!(zc.abs() < 4.0, "chain {name}: z = {zc}");
        assert!(zr.abs() < 4.0, "reweighted {name}: z = {zr}");
    }
    let raw = z_of(&m.report.target.raw, "phi2");
    assert!(
        raw.abs() > 10.0,
        "the raw proposals should be visibly off: z = {raw}"
    );
    assert!(m.report.weights.acceptance < 0.9 && m.report.weights.ess_fraction < 0.9);
}

#[test]
fn bad_inputs_are_refused() {
    let f = gaussian_proposal(4, 0.5, 256);
    let score = gud::sample::build_score(&f.config, &f.design, &f.data, None).unwrap();
    let opts = McmcOptions {
        proposals: 16,
        seed: 0,
        hmc_reference: 0,
        ode_tol: None,
    };
    // a target lattice of another size
    let other = Lattice::new(6, Couplings::new(0.5, 0.0).unwrap()).unwrap();
    let e = mcmc(&f.config, &f.design, score.as_ref(), &other, &opts, &Silent).unwrap_err();
    assert!(e.to_string().contains("6 x 6"), "{e}");
    // N < 2
    let lattice = Lattice::new(4, Couplings::new(0.5, 0.0).unwrap()).unwrap();
    let one = McmcOptions {
        proposals: 1,
        ..opts
    };
    let e = mcmc(
        &f.config,
        &f.design,
        score.as_ref(),
        &lattice,
        &one,
        &Silent,
    )
    .unwrap_err();
    // the library names its parameter, never a command-line flag (issue 34)
    let e = e.to_string();
    assert!(e.contains("`proposals` = 1") && !e.contains("--"), "{e}");
    // NaN couplings never reach the sampler
    assert!(Couplings::new(f64::NAN, 1.0).is_err());
    // a stochastic sampler
    let mut sde = f.config.clone();
    sde.sampler.kind = gud_core::config::SamplerKind::Sde;
    let e = mcmc(&sde, &f.design, score.as_ref(), &lattice, &opts, &Silent).unwrap_err();
    assert!(e.to_string().contains("deterministic"), "{e}");
}

#[test]
fn a_proposal_with_a_non_finite_log_q_is_a_counted_rejection() {
    // log w = -inf for every proposal with a non-finite log q: rejected and counted
    let lattice = Lattice::new(2, Couplings::new(1.0, 0.0).unwrap()).unwrap();
    let log_p = gud_core::exact::log_densities(&lattice, &[0.1; 12]);
    let lw = gud_core::exact::log_weights(&log_p, &[0.0, f64::NAN, f64::INFINITY]);
    assert_eq!(lw[1], f64::NEG_INFINITY);
    assert_eq!(lw[2], f64::NEG_INFINITY);
    let chain = gud_core::exact::independence_metropolis(&lw, 0).unwrap();
    assert_eq!(
        (chain.non_finite, chain.accepted, chain.states.len()),
        (2, 0, 3)
    );
}

/// Runs `f` with the exp proposer (K = 5) of a 4 x 4 Gaussian proposal and a phi^4 target at
/// m2 = -1, lam = 1 (the weights differ and the chain rejects).
fn with_gaussian_proposer(f: impl FnOnce(&dyn gud_core::exact::Proposer, &Lattice)) {
    let fitted = gaussian_proposal(4, 0.5, 256);
    let score =
        gud::sample::build_score(&fitted.config, &fitted.design, &fitted.data, None).unwrap();
    let lattice = Lattice::new(4, Couplings::new(-1.0, 1.0).unwrap()).unwrap();
    let proposal = gud::exact::Proposal::Score {
        score: score.as_ref(),
        config: Box::new(fitted.config.clone()),
        tol: None,
    };
    proposal
        .with(&fitted.design, |p| {
            f(p, &lattice);
            Ok(())
        })
        .unwrap();
}

/// The report without its timings (the only fields a merge of shards may change).
fn without_timings(r: &gud::exact::McmcReport) -> serde_json::Value {
    let mut v = serde_json::to_value(r).unwrap();
    for k in [
        "wall_s",
        "s_per_proposal",
        "s_per_effective_sample",
        "s_per_sample_without_log_q",
        "log_q_cost_ratio",
    ] {
        v.as_object_mut().unwrap().remove(k);
    }
    v
}

#[test]
fn issue33_any_split_into_shards_gives_the_single_runs_chain_weights_and_report_bit_for_bit() {
    use gud::shard::{mcmc_from_shards, propose_shard, read, write, ShardSpec};
    with_gaussian_proposer(|proposer, lattice| {
        let n = 300;
        let opts = McmcOptions {
            proposals: n,
            seed: 9,
            hmc_reference: 0,
            ode_tol: None,
        };
        let single = gud::exact::mcmc_with(proposer, lattice, &opts, &Silent).unwrap();
        assert!(
            single.report.weights.acceptance < 0.99,
            "the test needs rejections"
        );
        let dir = tempfile::tempdir().unwrap();
        let spec = |first: u64, count: usize| ShardSpec {
            fingerprint: "f00d".into(),
            proposer: "exp, 5 points, gaussian".into(),
            config: String::new(),
            seed: 9,
            first,
            count,
        };
        for cuts in [
            vec![300],
            vec![1, 299],
            vec![128, 100, 72],
            vec![7, 13, 50, 30, 200],
        ] {
            let mut shards = Vec::new();
            let mut first = 0u64;
            for (k, &c) in cuts.iter().enumerate() {
                let s = propose_shard(proposer, lattice, &spec(first, c), &Silent).unwrap();
                let path = dir.path().join(format!("s{k}.npz"));
                write(&path, &s).unwrap();
                shards.push((path.clone(), read(&path).unwrap()));
                first += c as u64;
            }
            // in any order
            shards.reverse();
            let merged = mcmc_from_shards(shards, 0, &Silent).unwrap();
            assert_eq!(merged.chain.states, single.chain.states, "{cuts:?}");
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&merged.proposals.log_q), bits(&single.proposals.log_q));
            assert_eq!(bits(&merged.log_p), bits(&single.log_p));
            assert_eq!(
                bits(&merged.proposals.fields),
                bits(&single.proposals.fields)
            );
            assert_eq!(
                without_timings(&merged.report),
                without_timings(&single.report),
                "{cuts:?}"
            );
        }
        // gaps, overlaps, duplicates and shards of another run are errors naming the shard
        let make = |name: &str, first: u64, count: usize, fp: &str| {
            let mut s = propose_shard(proposer, lattice, &spec(first, count), &Silent).unwrap();
            s.provenance.fingerprint = fp.into();
            let path = dir.path().join(name);
            write(&path, &s).unwrap();
            (path.clone(), read(&path).unwrap())
        };
        let a = make("a.npz", 0, 10, "f00d");
        for (bad, needle) in [
            (make("gap.npz", 12, 5, "f00d"), "gap"),
            (make("over.npz", 5, 10, "f00d"), "overlaps"),
            (make("dup.npz", 0, 10, "f00d"), "overlaps or repeats"),
            (make("other.npz", 10, 5, "beef"), "another run"),
        ] {
            let name = bad.0.file_name().unwrap().to_string_lossy().into_owned();
            let e = mcmc_from_shards(vec![a.clone(), bad], 0, &Silent)
                .unwrap_err()
                .to_string();
            assert!(e.contains(&name) && e.contains(needle), "{e}");
        }
    })
}

#[test]
fn issue33_one_stage_for_any_target_a_plain_density_gives_the_phi4_chain_and_weights() {
    use gud::exact::{run, Density, RunOptions};
    with_gaussian_proposer(|proposer, lattice| {
        let opts = McmcOptions {
            proposals: 200,
            seed: 5,
            hmc_reference: 0,
            ode_tol: None,
        };
        let phi4 = gud::exact::mcmc_with(proposer, lattice, &opts, &Silent).unwrap();
        let plain = run(
            &Density(lattice),
            proposer,
            &RunOptions {
                proposals: 200,
                seed: 5,
            },
            &Silent,
        )
        .unwrap();
        assert_eq!(plain.chain.states, phi4.chain.states);
        let json = |v| serde_json::to_value(v).unwrap();
        assert_eq!(json(&plain.report.weights), json(&phi4.report.weights));
        // no observables: the cost per effective sample is the cost per proposal over ESS/N
        let r = &plain.report;
        assert_eq!(
            r.s_per_effective_sample,
            r.s_per_proposal / r.weights.ess_fraction
        );
        // the phi^4 target's flattened record keeps every key of the report in one object
        let v = serde_json::to_value(&phi4.report).unwrap();
        for key in [
            "acceptance",
            "ess_fraction",
            "l",
            "lam",
            "chain",
            "reweighted",
            "sampling",
        ] {
            assert!(v.get(key).is_some(), "{key} missing from {v}");
        }
        // a target of another size is refused before the first proposal
        let small = Lattice::new(2, Couplings::new(-1.0, 1.0).unwrap()).unwrap();
        let e = gud::exact::mcmc_with(proposer, &small, &opts, &Silent).unwrap_err();
        assert!(e.to_string().contains("2 x 2 lattice of 4 values"), "{e}");
    })
}

#[test]
fn issue33_scalar_observables_are_the_closed_form_means_with_their_errors() {
    use gud::exact::ScalarObservables;
    use gud_core::exact::Chain;
    // two observables of 6 proposals; the chain visits 0 0 2 3 3 5
    let values = [
        1.0, 10.0, 2.0, 20.0, 3.0, 30.0, 4.0, 40.0, 5.0, 50.0, 6.0, 60.0,
    ];
    let names = vec!["a".to_string(), "b".to_string()];
    let chain = Chain {
        states: vec![0, 0, 2, 3, 3, 5],
        accepted: 3,
        longest_rejection_run: 1,
        non_finite: 1,
    };
    let log_w = [0.0, f64::NEG_INFINITY, 2f64.ln(), 0.0, 0.0, 0.0];
    let m = ScalarObservables::measure(&values, &names, &chain, &log_w).unwrap();
    let (name, a) = &m.observables[0];
    assert_eq!(name, "a");
    let close = |x: f64, y: f64| assert!((x - y).abs() < 1e-12, "{x} != {y}");
    close(a.raw.value, 3.5);
    // the standard error of a mean of independent values: sd / sqrt(n)
    close(a.raw.error, (3.5f64 / 6.0).sqrt());
    // the chain's states a = 1 1 3 4 4 6 (bins of one: tau of 6 states is cut at 1/2)
    close(a.chain.value, 19.0 / 6.0);
    // sum w a / sum w with w = 1 0 2 1 1 1
    close(a.reweighted.value, (1.0 + 6.0 + 4.0 + 5.0 + 6.0) / 6.0);
    close(
        m.observables[1].1.reweighted.value,
        10.0 * a.reweighted.value,
    );
    // wrong sizes and non-finite values are errors
    assert!(ScalarObservables::measure(&values[..10], &names, &chain, &log_w).is_err());
    let mut bad = values;
    bad[3] = f64::NAN;
    let e = ScalarObservables::measure(&bad, &names, &chain, &log_w).unwrap_err();
    assert!(e.to_string().contains("\"b\" of proposal 1"), "{e}");
}
