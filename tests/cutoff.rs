//! Cutoff kernel sums on a cell grid (CPU engine): against all pairs, within the bound they
//! report; the case where the bound is large stops with a named error.

#[path = "common/cutoff_problems.rs"]
mod problems;

use frflow::energy::{Interaction, Mmd};
use frflow::engine::Engine;
use frflow::engine::cells::{CellGrid, Cutoff, log_kernel_sum_cells};
use frflow::engine::cpu::{CpuEngine, log_kernel_sum};
use frflow::model::{Divergence, Domain, Gaussian, Model, Variant};
use frflow::particles::{Initial, Particles, State};
use problems::{model, npmle_case, points, space};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The cell sum against the all-pairs sum for every target: the truncation it makes is within
/// the bound it reports (plus f64 rounding, 1e-12 relative), the bound is small where the mass is
/// spread, and at δ = 1e-3 the truncation is large enough to see (so the check is not vacuous).
/// Torus and R^d, d = 1 … 4, ε from 1e-3 to 0.2, awkward N, weights spanning 1e-30 … 1, and
/// targets that are not the sources (quadrature nodes, reference points).
#[test]
fn cell_sums_are_within_their_bound_of_all_pairs() {
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let mut seen_truncation = false;
    for (d, torus, eps, n) in [
        (1, true, 1e-3, 3001),
        (1, false, 0.01, 1000),
        (2, true, 0.02, 2049),
        (2, false, 0.03, 777),
        (3, true, 0.02, 1500),
        (3, false, 0.08, 999),
        (4, true, 0.03, 1200),
        (2, true, 0.2, 500),
    ] {
        let space = space(d, torus);
        let kernel = Gaussian::new(&space, eps, true, "epsilon").unwrap();
        let sources = points(&space, n, &mut rng);
        let coeffs: Vec<f64> = (0..n).map(|_| -30.0 * std::f64::consts::LN_10 * rng.random::<f64>()).collect();
        let others = points(&space, 101, &mut rng);
        for tolerance in [1e-7, 1e-3] {
            let radius = Cutoff::radius(&kernel, tolerance);
            let Some(grid) = CellGrid::new(&space, &sources, radius) else {
                // Only the widest kernel may need no grid; then all pairs are summed.
                assert!(eps >= 0.2, "no grid at d = {d}, ε = {eps}");
                continue;
            };
            for targets in [&sources, &others] {
                let all = log_kernel_sum(&space, &kernel, targets, &sources, &coeffs);
                let (cut, bound) = log_kernel_sum_cells(&space, &kernel, &grid, tolerance, targets, &sources, &coeffs);
                for t in 0..all.len() {
                    // The cut sum is a part of the full one: S_cut ≤ S ≤ S_cut (1 + bound).
                    let lost = 1.0 - (cut[t] - all[t]).exp();
                    assert!(lost >= -1e-12, "d = {d} ε = {eps} t = {t}: cut {} above all {}", cut[t], all[t]);
                    let relative = (all[t] - cut[t]).exp() - 1.0;
                    assert!(
                        relative <= bound[t] * (1.0 + 1e-6) + 1e-12,
                        "d = {d} ε = {eps} δ = {tolerance} t = {t}: truncated {relative:e} beyond the bound {:e}",
                        bound[t]
                    );
                    seen_truncation |= relative > 1e-6;
                }
            }
        }
    }
    assert!(seen_truncation, "no case truncated anything measurable");
}

/// The CPU engine with a cutoff against all pairs, every variant, KL and χ²: the rates agree
/// within 10 σ times the largest truncation bound the engine reports (each h is a log or a ratio
/// of at most two cutoff sums per node, and the rate subtracts a mean of the same), and the bound
/// is reported in the diagnostics. The particles and weights are in the user's order.
#[test]
fn engine_rates_with_cutoff_match_all_pairs_within_the_bound() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for variant in [Variant::Measure, Variant::MeasureTarget, Variant::Blob, Variant::Smoothed, Variant::SmoothedTarget]
    {
        for divergence in [Divergence::Kl, Divergence::Chi2] {
            for (d, torus, eps) in [(2, true, 0.03), (1, false, 0.05), (3, true, 0.03)] {
                let space = space(d, torus);
                let init = match space.domain {
                    Domain::Torus { .. } => Initial::Uniform { low: 0.0, high: 1.0 },
                    Domain::Euclidean => Initial::Gaussian { mean: vec![0.8; d], std: 0.5 },
                };
                let n = 613;
                let particles = Particles::sample(space, &init, n, 5).unwrap();
                let mut lw: Vec<f64> = (0..n).map(|_| -3.0 * rng.random::<f64>()).collect();
                frflow::stepper::normalise(&mut lw);
                let state = State { log_weights: lw, step: 0, time: 0.0 };
                let cut = Cutoff::Tolerance { tolerance: 1e-6, max_error: 1.0 };
                let mut a =
                    CpuEngine::new(model(space, variant, divergence, eps, Cutoff::None), particles.clone()).unwrap();
                let mut b = CpuEngine::new(model(space, variant, divergence, eps, cut), particles).unwrap();
                a.set_state(state.clone()).unwrap();
                b.set_state(state).unwrap();
                let (ra, rb) = (a.rates().unwrap(), b.rates().unwrap());
                let bound = b.evaluate().unwrap().truncation_bound;
                assert_eq!(a.evaluate().unwrap().truncation_bound, 0.0);
                let err = ra.iter().zip(&rb).map(|(x, y)| (x - y).abs() / (1.0 + x.abs())).fold(0.0, f64::max);
                eprintln!("{variant:?} {divergence:?} d = {d} ε = {eps}: rate error {err:.2e}, bound {bound:.2e}");
                // δ = 1e-6 over the kernel mass near a target (~w_i K(0) at this spacing; the D
                // nodes' sums, whose sources are the nodes, can be much looser).
                assert!(bound > 0.0 && bound.is_finite(), "bound {bound:e}");
                assert!(
                    err <= 10.0 * 0.7 * bound + 1e-12,
                    "{variant:?} {divergence:?} d = {d}: {err:e} vs bound {bound:e}"
                );
            }
        }
    }
}

/// A particle whose own neighbourhood holds almost no mass while the far mass dominates: the
/// bound is δ·(far mass)/(its tiny sum), far above max_error, and the run stops with the named
/// error (`kernel.cutoff`, the bound, the particle) instead of a silently wrong rate.
#[test]
fn large_far_mass_stops_with_a_named_error() {
    let space = space(1, false);
    let eps = 0.01;
    // A cluster at 0 holding the mass, and one particle 100ε away with weight 1e-30.
    let mut positions: Vec<f64> = (0..200).map(|i| 1e-4 * i as f64).collect();
    positions.push(1.0);
    let n = positions.len();
    let particles = Particles::from_positions(space, positions).unwrap();
    let cut = Cutoff::Tolerance { tolerance: 1e-7, max_error: 1e-4 };
    let mut e = CpuEngine::new(model(space, Variant::Measure, Divergence::Kl, eps, cut), particles).unwrap();
    let mut lw = vec![-(n as f64 - 1.0).ln(); n];
    lw[n - 1] = -30.0 * std::f64::consts::LN_10;
    e.set_state(State { log_weights: lw, step: 0, time: 0.0 }).unwrap();
    let err = e.evaluate().unwrap_err().to_string();
    assert!(err.contains("kernel.cutoff") && err.contains("truncation bound") && err.contains("target 200"), "{err}");
}

/// `auto` never stops a run on a truncation bound: the targets whose neighbourhood holds too
/// little of the mass are summed over all sources instead. The case above, spread out, with N = 16500 (above
/// the CPU's all-pairs limit, so `auto` uses cells): it evaluates and steps, and its rates equal
/// all pairs' to 1e-9 of max |a| (the cells drop only pairs below δ = 1e-10 of K(0) at the other
/// targets, and the isolated one is exact).
#[test]
fn auto_cutoff_sums_isolated_targets_over_all_pairs() {
    let space = space(1, false);
    // A cluster over [0, 1.65) holding the mass, and one particle far from it with weight 1e-30.
    let mut positions: Vec<f64> = (0..16_499).map(|i| 1e-4 * i as f64).collect();
    positions.push(3.0);
    let n = positions.len();
    let particles = Particles::from_positions(space, positions).unwrap();
    let mut lw = vec![-(n as f64 - 1.0).ln(); n];
    lw[n - 1] = -30.0 * std::f64::consts::LN_10;
    let state = State { log_weights: lw, step: 0, time: 0.0 };
    let rates = |cutoff: Cutoff| {
        let mut e =
            CpuEngine::new(model(space, Variant::Measure, Divergence::Kl, 0.01, cutoff), particles.clone()).unwrap();
        e.set_state(state.clone()).unwrap();
        let d = e.evaluate().unwrap();
        (e.rates().unwrap(), d.truncation_bound, e.cutoff_fraction())
    };
    let (auto, bound, fraction) = rates(Cutoff::Auto);
    let (all, _, none) = rates(Cutoff::None);
    assert!(fraction.is_some_and(|f| f < 0.5) && none.is_none(), "{fraction:?}");
    assert!(bound <= 1e-4, "{bound}");
    let scale = all.iter().fold(0.0f64, |m, a| m.max(a.abs()));
    let worst = auto.iter().zip(&all).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(worst <= 1e-9 * scale, "{worst:e} of {scale:e}");
    // And a run takes its steps.
    let mut e = CpuEngine::new(model(space, Variant::Measure, Divergence::Kl, 0.01, Cutoff::Auto), particles).unwrap();
    e.set_state(state).unwrap();
    let stepper =
        frflow::stepper::Stepper::new(frflow::stepper::Scheme::Exponential, frflow::stepper::StepSize::Fixed(0.1))
            .unwrap();
    assert_eq!(e.advance(3, &stepper, None).unwrap(), 3);
}

/// `[kernel] cutoff` in a config: the three forms, and a tolerance outside (0, 1) named.
#[test]
fn cutoff_config_forms() {
    use frflow::config::Config;
    let text = |cutoff: &str| {
        format!(
            "sigma = 1.0\n[domain]\nkind = \"torus\"\ndim = 2\nside = 1.0\n[reference]\nkind = \"uniform\"\n\
             [kernel]\nepsilon = 0.05\nvariant = \"A\"\n{cutoff}\n[particles]\nn = 100\n[time]\nsteps = 1\n"
        )
    };
    let dir = std::env::temp_dir();
    let build = |c: &str| Config::from_str(&text(c), "cutoff").and_then(|c| c.build(&dir));
    assert_eq!(build("").unwrap().model.cutoff, Cutoff::Auto);
    assert_eq!(build("cutoff = \"none\"").unwrap().model.cutoff, Cutoff::None);
    assert_eq!(build("cutoff = \"auto\"").unwrap().model.cutoff, Cutoff::Auto);
    assert_eq!(
        build("cutoff = { tolerance = 1e-6 }").unwrap().model.cutoff,
        Cutoff::Tolerance { tolerance: 1e-6, max_error: 1e-4 }
    );
    let err = build("cutoff = { tolerance = 2.0 }").unwrap_err().to_string();
    assert!(err.contains("kernel.cutoff.tolerance") && err.contains('2'), "{err}");
}

/// The energies' kernel sums (interaction, MMD: their own widths) use cells too: with a cutoff
/// the rates match all pairs within 10 times the reported bound (relative to 1 + |rate|), the
/// energy terms' sums being bounded like the ε-kernel's.
#[test]
fn energy_kernel_sums_use_cells_within_the_bound() {
    use frflow::model::{Energy, Points};
    use std::sync::Arc;
    let space = space(2, true);
    let particles = Particles::sample(space, &Initial::Uniform { low: 0.0, high: 1.0 }, 801, 9).unwrap();
    let sample = Arc::new(Points { dim: 2, values: points(&space, 60, &mut ChaCha8Rng::seed_from_u64(4)) });
    let energy =
        vec![Energy::Interaction(Interaction { strength: 0.4, width: 0.02 }), Energy::Mmd(Mmd { width: 0.03, sample })];
    let build =
        |cutoff| Model { energy: energy.clone(), ..model(space, Variant::Measure, Divergence::Kl, 0.02, cutoff) };
    let mut a = CpuEngine::new(build(Cutoff::None), particles.clone()).unwrap();
    let mut b = CpuEngine::new(build(Cutoff::Tolerance { tolerance: 1e-5, max_error: 1.0 }), particles).unwrap();
    let (ra, rb) = (a.rates().unwrap(), b.rates().unwrap());
    let bound = b.evaluate().unwrap().truncation_bound;
    let err = ra.iter().zip(&rb).map(|(x, y)| (x - y).abs() / (1.0 + x.abs())).fold(0.0, f64::max);
    eprintln!("interaction + MMD: rate error {err:.2e}, bound {bound:.2e}, pairs {:?}", b.cutoff_fraction());
    assert!(bound > 0.0 && err <= 10.0 * bound + 1e-12, "{err:e} vs {bound:e}");
    assert!(b.cutoff_fraction().is_some_and(|f| f < 0.2));
}

/// The trace carries the bound: `truncation_bound` is the last column of `trace.csv`, and a row
/// of a cutoff run's diagnostics fills it with the engine's value.
#[test]
fn the_trace_records_the_truncation_bound() {
    use frflow::observe::Trace;
    let space = space(2, true);
    let particles = Particles::sample(space, &Initial::Uniform { low: 0.0, high: 1.0 }, 500, 2).unwrap();
    let cut = Cutoff::Tolerance { tolerance: 1e-8, max_error: 1.0 };
    let mut e = CpuEngine::new(model(space, Variant::Measure, Divergence::Kl, 0.02, cut), particles).unwrap();
    let d = e.evaluate().unwrap();
    assert!(d.truncation_bound > 0.0);
    let header = Trace::header(2);
    let row = Trace::record(&d);
    assert_eq!(header.last().map(String::as_str), Some("truncation_bound"), "{header:?}");
    assert_eq!(header.len(), row.len());
    assert_eq!(row.last().unwrap().parse::<f64>().unwrap(), d.truncation_bound);
}

/// The NPMLE's two sums (observations ← particles, particles ← observations) use cells too, each
/// over its own sources: with a cutoff the rates match all pairs within 10 times the reported
/// bound (relative to 1 + |rate|), and some pairs were dropped.
#[test]
fn npmle_sums_use_cells_within_the_bound() {
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let (none, particles) = npmle_case(&mut rng, Cutoff::None);
    let cut = Model { cutoff: Cutoff::Tolerance { tolerance: 1e-6, max_error: 1.0 }, ..none.clone() };
    let mut a = CpuEngine::new(none, particles.clone()).unwrap();
    let mut b = CpuEngine::new(cut, particles).unwrap();
    let mut lw: Vec<f64> = (0..901).map(|_| -2.0 * rng.random::<f64>()).collect();
    frflow::stepper::normalise(&mut lw);
    let state = State { log_weights: lw, step: 0, time: 0.0 };
    a.set_state(state.clone()).unwrap();
    b.set_state(state).unwrap();
    let (ra, rb) = (a.rates().unwrap(), b.rates().unwrap());
    let bound = b.evaluate().unwrap().truncation_bound;
    let err = ra.iter().zip(&rb).map(|(x, y)| (x - y).abs() / (1.0 + x.abs())).fold(0.0, f64::max);
    eprintln!("NPMLE: rate error {err:.2e}, bound {bound:.2e}");
    assert!(bound > 0.0 && err > 0.0, "no pair was dropped (bound {bound:e}, error {err:e})");
    assert!(err <= 10.0 * bound + 1e-12, "{err:e} vs {bound:e}");
}
