//! Cutoff kernel sums on a cell grid on the GPU: the f32 cell sum against its f64 twin, the GPU
//! engine with a cutoff against the CPU engine with the same cutoff, and the named error where
//! the truncation bound is too large.

mod common;
#[path = "common/cutoff_problems.rs"]
mod problems;

use common::context;
use frflow::energy::{Interaction, Mmd};
use frflow::engine::Engine;
use frflow::engine::cells::{CellGrid, Cutoff};
use frflow::engine::cpu::CpuEngine;
use frflow::engine::gpu::GpuEngine;
use frflow::model::{Divergence, Domain, Gaussian, Model, Variant};
use frflow::particles::{Initial, Particles, State};
use frflow::stepper::{Scheme, StepSize, Stepper};
use problems::{model, npmle_case, points, space};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The GPU cell sum against `engine::cells::log_kernel_sum_cells` (f64) on fresh random inputs:
/// torus and R^d, d = 1 … 4, ε from 1e-3 to 0.08, awkward N, weights spanning 1e-30 … 1, targets
/// that are the sources and targets that are not (some outside the sources' box on R^d, whose
/// sums are empty: −∞ on both). Values agree to f32 accuracy, |Δ| / (1 + |value|) < 1e-5 as for
/// the all-pairs sum; the largest bound agrees to 1e-3 and, where it is clearly the largest, at
/// the same target. δ = 1e-3 makes bounds large enough to matter.
#[test]
fn gpu_cell_sums_match_their_f64_twin() {
    let Some(ctx) = context() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(23);
    for (d, torus, eps, n) in [
        (1, true, 1e-3, 2999),
        (1, false, 0.01, 1000),
        (2, true, 0.02, 2999),
        (2, false, 0.03, 1000),
        (3, true, 0.03, 1500),
        (3, false, 0.08, 999),
        (4, true, 0.04, 1200),
    ] {
        let space = space(d, torus);
        let kernel = Gaussian::new(&space, eps, true, "epsilon").unwrap();
        let sources = points(&space, n, &mut rng);
        let coeffs: Vec<f64> = (0..n).map(|_| -30.0 * std::f64::consts::LN_10 * rng.random::<f64>()).collect();
        // On R^d some of the other targets lie outside the sources' box (up to 2 beyond it).
        let others: Vec<f64> =
            points(&space, 130, &mut rng).iter().map(|x| if torus { *x } else { 2.5 * x - 1.0 }).collect();
        for tolerance in [1e-7, 1e-3] {
            let radius = Cutoff::radius(&kernel, tolerance);
            let grid = CellGrid::new(&space, &sources, radius)
                .unwrap_or_else(|| panic!("no grid at d = {d}, ε = {eps}, δ = {tolerance}"));
            for targets in [&sources, &others] {
                let (cpu, bounds) = frflow::engine::cells::log_kernel_sum_cells(
                    &space, &kernel, &grid, tolerance, targets, &sources, &coeffs,
                );
                let (gpu, (bound, at)) = frflow::engine::gpu::log_kernel_sum_cells(
                    &ctx, &space, &kernel, &grid, tolerance, targets, &sources, &coeffs,
                )
                .unwrap();
                let case = format!("d = {d} torus = {torus} ε = {eps} δ = {tolerance} targets = {}", gpu.len());
                let mut err = 0.0f64;
                for (t, (a, b)) in cpu.iter().zip(&gpu).enumerate() {
                    if *a == f64::NEG_INFINITY {
                        assert_eq!(*b, f64::NEG_INFINITY, "{case} t = {t}: an empty sum is {b}");
                        continue;
                    }
                    err = err.max((a - b).abs() / (1.0 + a.abs()));
                }
                // The bounds, over the targets with a finite one (an empty sum's is infinite on both).
                let finite = |b: &&f64| b.is_finite();
                let (cpu_at, cpu_bound) = bounds
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| finite(b))
                    .fold((0, 0.0f64), |acc, (i, b)| if *b > acc.1 { (i, *b) } else { acc });
                let second = bounds.iter().filter(finite).filter(|b| **b < cpu_bound).fold(0.0f64, |m, b| m.max(*b));
                eprintln!(
                    "{case}: value error {err:.2e}, bound {bound:.3e} at {at} (f64: {cpu_bound:.3e} at {cpu_at})"
                );
                assert!(err < 1e-5, "{case}: value error {err:e}");
                if bounds.iter().all(|b| b.is_finite()) {
                    assert!((bound - cpu_bound).abs() <= 1e-3 * cpu_bound, "{case}: bound {bound:e} vs {cpu_bound:e}");
                    if second < 0.99 * cpu_bound {
                        assert_eq!(at, cpu_at, "{case}: the largest bound's target");
                    }
                } else {
                    assert_eq!(bound, f64::INFINITY, "{case}: an empty sum's bound");
                }
            }
        }
    }
}

fn rate_error(cpu: &[f64], gpu: &[f64]) -> f64 {
    let scale = cpu.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-6);
    cpu.iter().zip(gpu).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max) / scale
}

/// The GPU engine with a cutoff against the CPU engine with the same cutoff (so both drop the
/// same pairs): variants A, B, C, D, D′ (their nodes on a grid of their own), KL and χ², torus
/// and R^d. Rates agree to f32 accuracy (1e-4 of
/// max |a|, as for all pairs), the reported bounds to 1e-3, both engines evaluate the same share
/// of pairs, and after five Euler steps through the device loop the log-weights agree to 1e-4.
/// `Auto` at this N sums all pairs on the GPU.
#[test]
fn gpu_engine_with_cutoff_matches_cpu_engine_with_cutoff() {
    let Some(ctx) = context() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let stepper = Stepper { scheme: Scheme::Euler, step_size: StepSize::Fixed(0.01) };
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
                let m = model(space, variant, divergence, eps, cut);
                let mut cpu = CpuEngine::new(m.clone(), particles.clone()).unwrap();
                let mut gpu = GpuEngine::new(ctx.clone(), m, particles.clone()).unwrap();
                cpu.set_state(state.clone()).unwrap();
                gpu.set_state(state).unwrap();
                let case = format!("{variant:?} {divergence:?} d = {d} torus = {torus}");
                let err = rate_error(&cpu.rates().unwrap(), &gpu.rates().unwrap());
                let (bc, bg) = (cpu.evaluate().unwrap().truncation_bound, gpu.evaluate().unwrap().truncation_bound);
                eprintln!("{case}: rate error {err:.2e}, bound {bg:.3e} (CPU {bc:.3e})");
                assert!(err < 1e-4, "{case}: rate error {err:e}");
                assert!(bc > 0.0 && (bg - bc).abs() <= 1e-3 * bc, "{case}: bound {bg:e} vs {bc:e}");
                // rates_at on the same grids, at points 0.3 ε from particles (a point far from all
                // of them has a large bound on both engines: see the next test).
                let at: Vec<f64> = particles.positions[..57 * d].iter().map(|x| x + 0.3 * eps).collect();
                let err_at = rate_error(&cpu.rates_at(&at).unwrap(), &gpu.rates_at(&at).unwrap());
                assert!(err_at < 1e-4, "{case}: rates_at error {err_at:e}");
                let fraction = gpu.cutoff_fraction().expect("cells on the GPU");
                assert!(fraction < 1.0 && Some(fraction) == cpu.cutoff_fraction(), "{case}: pairs {fraction}");
                cpu.advance(5, &stepper, None).unwrap();
                gpu.advance(5, &stepper, None).unwrap();
                let (sc, sg) = (cpu.state().unwrap(), gpu.state().unwrap());
                let lw_err = sc.log_weights.iter().zip(&sg.log_weights).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
                assert!(sg.step == 5 && lw_err < 1e-4, "{case}: max |Δ log w| = {lw_err:e} after 5 steps");
                let auto = GpuEngine::new(ctx.clone(), model(space, variant, divergence, eps, Cutoff::Auto), particles);
                assert_eq!(auto.unwrap().cutoff_fraction(), None, "{case}: Auto at N = {n}");
            }
        }
    }
}

/// A particle whose neighbourhood holds almost no mass while the far mass dominates (the CPU
/// engine's case in tests/cutoff.rs): the GPU engine stops with the same named error, the bound
/// and the particle, from an evaluation and from inside the device loop of a step.
#[test]
fn gpu_large_far_mass_stops_with_the_named_error() {
    let Some(ctx) = context() else { return };
    let space = space(1, false);
    let mut positions: Vec<f64> = (0..200).map(|i| 1e-4 * i as f64).collect();
    positions.push(1.0);
    let n = positions.len();
    let particles = Particles::from_positions(space, positions).unwrap();
    let cut = Cutoff::Tolerance { tolerance: 1e-7, max_error: 1e-4 };
    let mut lw = vec![-(n as f64 - 1.0).ln(); n];
    lw[n - 1] = -30.0 * std::f64::consts::LN_10;
    let state = State { log_weights: lw, step: 3, time: 0.3 };
    let stepper = Stepper { scheme: Scheme::Exponential, step_size: StepSize::Fixed(0.1) };
    for stepping in [false, true] {
        let m = model(space, Variant::Measure, Divergence::Kl, 0.01, cut);
        let mut e = GpuEngine::new(ctx.clone(), m, particles.clone()).unwrap();
        e.set_state(state.clone()).unwrap();
        let err = if stepping { e.advance(2, &stepper, None).unwrap_err() } else { e.evaluate().unwrap_err() };
        let err = err.to_string();
        assert!(
            err.contains("kernel.cutoff") && err.contains("truncation bound") && err.contains("target 200 in step 3"),
            "{err}"
        );
        // The state is the one before the failed evaluation.
        assert_eq!(e.state().unwrap().step, 3);
    }
    // rates_at at a point whose neighbourhood is empty (its sum is 0, the bound infinite), on both
    // engines; a point near the cluster is fine.
    let m = model(space, Variant::Measure, Divergence::Kl, 0.01, cut);
    let mut cpu = CpuEngine::new(m.clone(), particles.clone()).unwrap();
    let mut gpu = GpuEngine::new(ctx.clone(), m, particles).unwrap();
    assert!(gpu.rates_at(&[0.005]).unwrap()[0].is_finite());
    for e in [&mut cpu as &mut dyn Engine, &mut gpu] {
        let err = e.rates_at(&[0.5]).unwrap_err().to_string();
        assert!(err.contains("kernel.cutoff") && err.contains("at target 0 in step 0"), "{err}");
    }
}

/// `auto` never stops a run on a truncation bound: on the GPU the engine falls back to all pairs
/// at the state it reached and says so in its name. The far-mass case above under `auto` (cells
/// from N = 100 through the test hook `GpuOptions::auto_cells_above`): an evaluation, a step
/// and `rates_at` at a point with no mass near all succeed, and the rates match the CPU engine
/// summing all pairs (f32 against f64, 1e-4 of max |a|).
#[test]
fn gpu_auto_cutoff_falls_back_to_all_pairs() {
    use frflow::engine::gpu::GpuOptions;
    let Some(ctx) = context() else { return };
    let space = space(1, false);
    let mut positions: Vec<f64> = (0..200).map(|i| 1e-4 * i as f64).collect();
    positions.push(1.0);
    let n = positions.len();
    let particles = Particles::from_positions(space, positions).unwrap();
    let mut lw = vec![-(n as f64 - 1.0).ln(); n];
    lw[n - 1] = -30.0 * std::f64::consts::LN_10;
    let state = State { log_weights: lw, step: 3, time: 0.3 };
    let stepper = Stepper { scheme: Scheme::Exponential, step_size: StepSize::Fixed(0.1) };
    let options = GpuOptions { auto_cells_above: 100, ..GpuOptions::default() };
    let m = model(space, Variant::Measure, Divergence::Kl, 0.01, Cutoff::Auto);
    let mut cpu = CpuEngine::new(Model { cutoff: Cutoff::None, ..m.clone() }, particles.clone()).unwrap();
    cpu.set_state(state.clone()).unwrap();
    for stepping in [false, true] {
        let mut e = GpuEngine::with_options(ctx.clone(), m.clone(), particles.clone(), options.clone()).unwrap();
        assert!(e.cutoff_fraction().is_some(), "auto uses cells above the hook's N");
        e.set_state(state.clone()).unwrap();
        if stepping {
            assert_eq!(e.advance(2, &stepper, None).unwrap(), 2);
            assert_eq!(e.state().unwrap().step, 5);
        } else {
            e.evaluate().unwrap();
            let (a, b) = (e.rates().unwrap(), cpu.rates().unwrap());
            assert!(rate_error(&b, &a) < 1e-4, "{}", rate_error(&b, &a));
        }
        assert!(e.name().contains("all pairs from step 3"), "{}", e.name());
        assert!(e.cutoff_fraction().is_none());
    }
    let mut e = GpuEngine::with_options(ctx.clone(), m, particles, options).unwrap();
    assert!(e.rates_at(&[0.5]).unwrap()[0].is_finite());
    assert!(e.name().contains("all pairs from step 0"), "{}", e.name());
}

/// The cell sum's bookkeeping under stress: a workgroup of 8 (so every neighbourhood's source
/// stream spans many tiles and crosses cell ranges inside a tile, and a cell's targets fill
/// several blocks) and at most 3 workgroups per grid dimension (the blocks' grid folded into
/// 2-D), bounds-checked shaders; variant C (two cell sums per evaluation, two bound slots) on
/// the torus and R^d in d = 2, against the CPU engine with the same cutoff.
#[test]
fn gpu_cell_sums_with_small_workgroups_and_a_folded_grid() {
    use frflow::engine::gpu::GpuOptions;
    let Some(ctx) = context() else { return };
    let options = GpuOptions {
        kernel_workgroup: 8,
        max_workgroups_per_dimension: Some(3),
        checked_shaders: true,
        ..Default::default()
    };
    for torus in [true, false] {
        let space = space(2, torus);
        let init = if torus {
            Initial::Uniform { low: 0.0, high: 1.0 }
        } else {
            Initial::Gaussian { mean: vec![0.8; 2], std: 0.5 }
        };
        let particles = Particles::sample(space, &init, 1001, 8).unwrap();
        let m =
            model(space, Variant::Blob, Divergence::Kl, 0.03, Cutoff::Tolerance { tolerance: 1e-6, max_error: 1.0 });
        let mut cpu = CpuEngine::new(m.clone(), particles.clone()).unwrap();
        let mut gpu = GpuEngine::with_options(ctx.clone(), m, particles, options.clone()).unwrap();
        let err = rate_error(&cpu.rates().unwrap(), &gpu.rates().unwrap());
        let (bc, bg) = (cpu.evaluate().unwrap().truncation_bound, gpu.evaluate().unwrap().truncation_bound);
        eprintln!("torus = {torus}: rate error {err:.2e}, bound {bg:.3e} (CPU {bc:.3e})");
        assert!(err < 1e-4, "torus = {torus}: rate error {err:e}");
        assert!(bc > 0.0 && (bg - bc).abs() <= 1e-3 * bc, "torus = {torus}: bound {bg:e} vs {bc:e}");
    }
}

/// `frflow bench --cutoff` on the GPU engine: the step row reports the pairs it evaluated
/// (fewer than the all-pairs count its pairs/s is based on) and its truncation bound, and on a
/// software adapter the all-pairs rows are timed at N = 4096 beside a step at a larger N.
#[test]
fn gpu_bench_reports_the_cutoff_step_beside_capped_all_pairs_rows() {
    let Some(ctx) = context() else { return };
    let dir = std::env::temp_dir().join(format!("frflow-gpu-bench-cutoff-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("bench.json");
    let device = std::env::var("FRFLOW_DEVICE").unwrap_or_else(|_| "llvmpipe".into());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_frflow"))
        .args(["bench", "--engine", "gpu", "--device", &device, "--n", "5000", "--d", "2", "--epsilon", "0.01"])
        .args(["--cutoff", "1e-10", "--variant", "A", "--repeats", "1", "--min-batch-seconds", "0.01", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let rows = report["rows"].as_array().unwrap();
    let all_pairs_n = if ctx.is_software() { 4096 } else { 5000 };
    for r in rows.iter().filter(|r| r["kind"] != "step") {
        assert_eq!(r["n"], all_pairs_n, "{r}");
    }
    let step = rows.iter().find(|r| r["kind"] == "step").unwrap();
    assert_eq!(step["n"], 5000);
    let (pairs, evaluated) = (step["pairs"].as_f64().unwrap(), step["pairs_evaluated"].as_f64().unwrap());
    assert!(evaluated > 0.0 && evaluated < 0.2 * pairs, "{evaluated} of {pairs}");
    let bound = step["truncation_bound"].as_f64().unwrap();
    assert!(bound > 0.0 && bound < 1e-4, "{bound}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The energies' kernel sums (interaction, MMD: their own widths, so their own grids) use cells
/// on the GPU too: against the CPU engine with the same cutoff, rates (also at other points)
/// agree to f32 accuracy, the bound (the largest over the ε-kernel's and the energies' sums) to
/// 1e-3, and both evaluate the same share of pairs; with only an energy kernel (the exact
/// variant), its grid gives the share.
#[test]
fn gpu_energy_kernel_sums_use_cells() {
    use frflow::model::{Energy, Points};
    use std::sync::Arc;
    let Some(ctx) = context() else { return };
    let space = space(2, true);
    let particles = Particles::sample(space, &Initial::Uniform { low: 0.0, high: 1.0 }, 801, 9).unwrap();
    let sample = Arc::new(Points { dim: 2, values: points(&space, 60, &mut ChaCha8Rng::seed_from_u64(4)) });
    let energy =
        vec![Energy::Interaction(Interaction { strength: 0.4, width: 0.02 }), Energy::Mmd(Mmd { width: 0.03, sample })];
    let cut = Cutoff::Tolerance { tolerance: 1e-5, max_error: 1.0 };
    for variant in [Variant::Measure, Variant::Exact] {
        let m = Model { energy: energy.clone(), ..model(space, variant, Divergence::Kl, 0.02, cut) };
        let mut cpu = CpuEngine::new(m.clone(), particles.clone()).unwrap();
        let mut gpu = GpuEngine::new(ctx.clone(), m, particles.clone()).unwrap();
        let err = rate_error(&cpu.rates().unwrap(), &gpu.rates().unwrap());
        let (bc, bg) = (cpu.evaluate().unwrap().truncation_bound, gpu.evaluate().unwrap().truncation_bound);
        eprintln!(
            "{variant:?}: rate error {err:.2e}, bound {bg:.3e} (CPU {bc:.3e}), pairs {:?}",
            gpu.cutoff_fraction()
        );
        assert!(err < 1e-4, "{variant:?}: rate error {err:e}");
        assert!(bc > 0.0 && (bg - bc).abs() <= 1e-3 * bc, "{variant:?}: bound {bg:e} vs {bc:e}");
        assert!(gpu.cutoff_fraction().is_some_and(|f| f < 0.2) && gpu.cutoff_fraction() == cpu.cutoff_fraction());
        if variant == Variant::Measure {
            let at: Vec<f64> = particles.positions[..40].iter().map(|x| x + 0.006).collect();
            let err_at = rate_error(&cpu.rates_at(&at).unwrap(), &gpu.rates_at(&at).unwrap());
            assert!(err_at < 1e-4, "rates_at error {err_at:e}");
        }
    }
}

/// The NPMLE's two sums use cells on the GPU as on the CPU (the particles' grid for its
/// observations, a grid over its observations for the particles and `rates_at`'s points): the
/// rates agree with the CPU engine's under the same cutoff to f32 accuracy, and so does the bound.
#[test]
fn gpu_npmle_sums_use_cells() {
    let Some(ctx) = context() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let (m, particles) = npmle_case(&mut rng, Cutoff::Tolerance { tolerance: 1e-6, max_error: 1.0 });
    let mut cpu = CpuEngine::new(m.clone(), particles.clone()).unwrap();
    let mut gpu = GpuEngine::new(ctx, m, particles.clone()).unwrap();
    let err = rate_error(&cpu.rates().unwrap(), &gpu.rates().unwrap());
    let (bc, bg) = (cpu.evaluate().unwrap().truncation_bound, gpu.evaluate().unwrap().truncation_bound);
    eprintln!("NPMLE: rate error {err:.2e}, bound {bg:.3e} (CPU {bc:.3e})");
    assert!(err < 1e-4, "rate error {err:e}");
    assert!(bc > 0.0 && (bg - bc).abs() <= 1e-3 * bc, "bound {bg:e} vs {bc:e}");
    let at: Vec<f64> = particles.positions[..40].iter().map(|x| x + 0.003).collect();
    let err_at = rate_error(&cpu.rates_at(&at).unwrap(), &gpu.rates_at(&at).unwrap());
    assert!(err_at < 1e-4, "rates_at error {err_at:e}");
}
