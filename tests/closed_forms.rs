//! The particle systems against the closed forms of SPEC §7 (T1, T2, T3), and the closed forms
//! against SPEC's check values.
//!
//! Tolerances: the ODE and closed forms are deterministic (RK4 error ~1e-12), so they are checked to
//! the digits SPEC prints (1e-6). The particle systems are random: their seed-averaged moments are
//! checked within 4 standard errors estimated from the seeds, plus an absolute floor that covers the
//! deterministic biases: explicit Euler's O(h) bias (measured in `euler_bias_is_below_the_floor`)
//! and, for the kernelized systems, the O(1/(N ε^d)) finite-N bias (see the T2 section).

use frflow::engine::cpu::CpuEngine;
use frflow::engine::{Diagnostics, Engine};
use frflow::flow::{RunOptions, run};
use frflow::model::{
    Divergence, Domain, Energy, Model, ModelSpec, Potential, QuadratureSpec, Reference, Space, Variant,
};
use frflow::oracle::{GaussianFlow, GibbsTempering, tempering_exponent, tempering_log_weights_for};
use frflow::particles::{Component, Initial, Particles};
use frflow::stepper::{Scheme, StepSize, Stepper};
use std::time::Instant;

/// SPEC §7 T2's check problem: λ = 0, τ² = 1, ε = 0.5, σ = 1, μ₀ = N(0.8, 1.5²).
fn t2_check(smoothed_target: bool) -> GaussianFlow {
    GaussianFlow { lambda: 0.0, b: 0.0, tau2: 1.0, eps2: 0.25, sigma: 1.0, m0: 0.8, s0_2: 2.25, smoothed_target }
}

/// SPEC §7 T3's check problem.
fn t3_check() -> GibbsTempering {
    GibbsTempering { sigma: 0.7, lambda: 2.0, b: 1.5, tau2: 1.0, m0: -1.0, s0_2: 1.3 * 1.3 }
}

fn model(space: Space, reference: Reference, variant: Variant, sigma: f64, eps: f64, energy: Vec<Energy>) -> Model {
    ModelSpec {
        space,
        reference,
        divergence: Divergence::Kl,
        sigma,
        epsilon: eps,
        variant,
        energy,
        quadrature: QuadratureSpec::default(),
    }
    .build()
    .expect("valid model")
}

/// Runs `engine` to `t_end` with a fixed step and returns the final diagnostics.
fn run_to(engine: &mut CpuEngine, scheme: Scheme, h: f64, t_end: f64) -> Diagnostics {
    let options = RunOptions {
        stepper: Stepper::new(scheme, StepSize::Fixed(h)).expect("valid stepper"),
        max_steps: None,
        final_time: Some(t_end),
        tolerance: None,
        every: u64::MAX / 2,
    };
    let summary = run(engine, &options, &mut [], None).expect("run succeeds");
    assert!((summary.diagnostics.time - t_end).abs() < 1e-9, "stopped at t = {}", summary.diagnostics.time);
    summary.diagnostics
}

/// Weighted mean and variance of coordinate k under normalised log-weights.
fn weighted_moments(positions: &[f64], d: usize, k: usize, log_w: &[f64]) -> (f64, f64) {
    let w: Vec<f64> = log_w.iter().map(|l| l.exp()).collect();
    let mass: f64 = w.iter().sum();
    let mean = positions.chunks_exact(d).zip(&w).map(|(x, w)| w * x[k]).sum::<f64>() / mass;
    let var = positions.chunks_exact(d).zip(&w).map(|(x, w)| w * (x[k] - mean).powi(2)).sum::<f64>() / mass;
    (mean, var)
}

/// Sample mean and standard error of the mean.
fn mean_and_se(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let s2 = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, (s2 / n).sqrt())
}

// ---------------------------------------------------------------------------------------------
// The closed forms themselves.

#[test]
fn t2_ode_reproduces_spec_check_values() {
    // SPEC prints 6–7 significant digits; RK4's error here is ~1e-12, so 1e-6 tests the printed digits.
    let (m, v) = t2_check(false).at(4.0);
    assert!((m - 0.0115443).abs() < 1e-6, "A mean {m}");
    assert!((v - 0.798198).abs() < 1e-6, "A variance {v}");
    let (m, v) = t2_check(true).at(4.0);
    assert!((m - 0.0132497).abs() < 1e-6, "B mean {m}");
    assert!((v - 1.040290).abs() < 1e-6, "B variance {v}");
    // SPEC's stationary variances: τ² − ε² for A and D, τ² for B and D′.
    assert!((t2_check(false).stationary_variance_without_potential().unwrap() - 0.75).abs() < 1e-15);
    assert!((t2_check(true).stationary_variance_without_potential().unwrap() - 1.0).abs() < 1e-15);
}

#[test]
fn t3_closed_form_reproduces_spec_check_values_and_is_the_t2_limit() {
    let (m, v) = t3_check().at(3.0);
    assert!((m - 1.066865).abs() < 1e-6, "T3 mean {m}");
    assert!((v - 0.289246).abs() < 1e-6, "T3 variance {v}");
    // T2 (variant A) with ε = 1e-4 differs from T3 by O(ε²) = 1e-8 (SPEC T4); 1e-6 leaves room
    // for the constant while still failing for any O(ε) or larger discrepancy.
    let g = t3_check();
    for st in [false, true] {
        let f = GaussianFlow {
            lambda: g.lambda,
            b: g.b,
            tau2: g.tau2,
            eps2: 1e-8,
            sigma: g.sigma,
            m0: g.m0,
            s0_2: g.s0_2,
            smoothed_target: st,
        };
        for t in [0.5, 3.0, 10.0] {
            let (m2, v2) = f.at(t);
            let (m3, v3) = g.at(t);
            assert!((m2 - m3).abs() < 1e-6 && (v2 - v3).abs() < 1e-6, "t={t}: T2 ({m2}, {v2}) vs T3 ({m3}, {v3})");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// T2: the kernelized particle systems against the ODE.
//
// Measured behaviour that sets the tolerances (seeded, so reproducible):
// - The interacting system corrects its own sampling noise (its fixed point depends on the sample
//   only through K_ε μᴺ), so the seed-to-seed spread of its moments is small: SE ≈ 1e-3 (d = 1) to
//   3e-3 (d = 2) at N = 1024 — five to ten times below that of plain importance weighting.
// - That exposes two deterministic biases. Explicit Euler at h = 0.01 is off by ≈ 2·|moments(h) −
//   moments(h/2)| ≲ 2e-3 (`euler_bias_is_below_the_floor` checks < 2e-3 each), hence
//   T2_EULER_FLOOR = 4e-3. The finite-N bias of the kernel estimate (the self-interaction
//   K_ε(0)/N, which penalises isolated particles in the tails, and the Jensen bias of log K_ε μᴺ)
//   lowers the variance: for B in d = 2 the seed-averaged variance bias was −0.058, −0.035,
//   −0.017, −0.006 at N = 256, 512, 1024, 2048, i.e. ≈ 4.5/(N ε^d); the mean moved by about half
//   that. The floor finite_n_floor = 5/(N ε^d) covers it (0.013 in d = 1 and 0.026 in d = 2 at
//   N = 768). Even so the tolerance (≲ 0.06) stays far below the A-versus-B gap in the variance
//   at T = 2 (0.928 vs 1.166), so swapping the variants, or getting ε, σ or τ visibly wrong, fails.

/// Particles per λ = 0 run: N = 2048 as the acceptance asks. The CPU engine keeps the N×N kernel
/// matrix in memory (positions never move), so each of the 32 runs of 200 steps is 200
/// matrix–vector products. FRFLOW_T2_N overrides N (the finite-N floor follows 1/N).
fn t2_particles() -> usize {
    std::env::var("FRFLOW_T2_N").ok().and_then(|s| s.parse().ok()).unwrap_or(2048)
}

const T2_SEEDS: u64 = 8;
const T2_H: f64 = 0.01;

/// Floor for the O(h) bias of explicit Euler at h = 0.01 (see above).
const T2_EULER_FLOOR: f64 = 4e-3;

/// Floor for the O(1/(N ε^d)) finite-N bias of the kernelized particle system (see above).
fn finite_n_floor(n: usize, eps: f64, d: usize) -> f64 {
    5.0 / (n as f64 * eps.powi(d as i32))
}

/// One T2 comparison: `variant` on R^d with π = N(0, 1), σ = 1, ε = 0.5, μ₀ = N(0.8, 1.5²) and
/// U = λ|x − b|²/2 (none when λ = 0), N particles, Euler h = 0.01 to time `t_end`, 8 seeds.
fn t2_particle_check(variant: Variant, d: usize, lambda: f64, n: usize, t_end: f64) {
    let start = Instant::now();
    let (eps, b) = (0.5, 0.5);
    let ode = GaussianFlow { lambda, b, ..t2_check(variant.smooths_reference()) };
    let (m_ode, v_ode) = ode.at(t_end);
    let space = Space::new(d, Domain::Euclidean).unwrap();
    let init = Initial::Gaussian { mean: vec![0.8; d], std: 1.5 };
    let energy = if lambda > 0.0 {
        vec![Energy::Potential(Potential::Quadratic { strength: lambda, center: vec![b; d] })]
    } else {
        vec![]
    };
    // Per coordinate: the interacting system's moments, and the closed-form reference system's
    // (SPEC §4: w̄_i ∝ μ_t(X_i)/μ₀(X_i)) on the same positions.
    let (mut means, mut vars) = (vec![Vec::new(); d], vec![Vec::new(); d]);
    let (mut ref_means, mut ref_vars) = (vec![Vec::new(); d], vec![Vec::new(); d]);
    for seed in 0..T2_SEEDS {
        let particles = Particles::sample(space, &init, n, 1000 * d as u64 + seed).unwrap();
        let positions = particles.positions.clone();
        let reference = Reference::Gaussian { mean: vec![0.0; d], std: 1.0 };
        let mut engine = CpuEngine::new(model(space, reference, variant, 1.0, eps, energy.clone()), particles).unwrap();
        let diag = run_to(&mut engine, Scheme::Euler, T2_H, t_end);
        let ref_lw = ode.reference_log_weights(t_end, &positions, d);
        for k in 0..d {
            let (rm, rv) = weighted_moments(&positions, d, k, &ref_lw);
            means[k].push(diag.mean[k]);
            vars[k].push(diag.variance[k]);
            ref_means[k].push(rm);
            ref_vars[k].push(rv);
        }
    }
    let floor = T2_EULER_FLOOR + finite_n_floor(n, eps, d);
    let name = variant.name();
    for k in 0..d {
        let (m, m_se) = mean_and_se(&means[k]);
        let (v, v_se) = mean_and_se(&vars[k]);
        let (rm, rm_se) = mean_and_se(&ref_means[k]);
        let (rv, rv_se) = mean_and_se(&ref_vars[k]);
        eprintln!(
            "T2 {name} d={d} λ={lambda} k={k} N={n} T={t_end}: ODE ({m_ode:.5}, {v_ode:.5}); interacting mean \
             {m:.5} ± {m_se:.5}, var {v:.5} ± {v_se:.5}; reference mean {rm:.5} ± {rm_se:.5}, var {rv:.5} ± {rv_se:.5}"
        );
        assert!((m - m_ode).abs() <= 4.0 * m_se + floor, "{name} d={d}: mean {m} ± {m_se} vs ODE {m_ode}");
        assert!((v - v_ode).abs() <= 4.0 * v_se + floor, "{name} d={d}: var {v} ± {v_se} vs ODE {v_ode}");
        // The reference weights are exact importance weights of μ_t: only the O(1/N) bias of self-
        // normalisation (≪ their SE, 5e-3 to 2e-2) and no Euler or kernel bias, so no floor.
        assert!((rm - m_ode).abs() <= 4.0 * rm_se, "{name} d={d}: reference mean {rm} ± {rm_se} vs ODE {m_ode}");
        assert!((rv - v_ode).abs() <= 4.0 * rv_se, "{name} d={d}: reference var {rv} ± {rv_se} vs ODE {v_ode}");
    }
    eprintln!("T2 {name} d={d} λ={lambda} N={n}: {:.1} s", start.elapsed().as_secs_f64());
}

#[test]
fn t2_particles_match_ode_a_1d() {
    t2_particle_check(Variant::Measure, 1, 0.0, t2_particles(), 2.0);
}

#[test]
fn t2_particles_match_ode_b_1d() {
    t2_particle_check(Variant::MeasureTarget, 1, 0.0, t2_particles(), 2.0);
}

#[test]
fn t2_particles_match_ode_a_2d() {
    t2_particle_check(Variant::Measure, 2, 0.0, t2_particles(), 2.0);
}

#[test]
fn t2_particles_match_ode_b_2d() {
    t2_particle_check(Variant::MeasureTarget, 2, 0.0, t2_particles(), 2.0);
}

#[test]
fn t2_particles_match_ode_d_and_dprime_with_potential() {
    // D and D′ follow the same ODEs as A and B (SPEC §7 T2). Their quadrature makes a step 2Q = 10
    // times dearer, so this runs small: N = 256, T = 1, d = 1, with a potential (λ = 1, b = 0.5)
    // to exercise the λ terms as well.
    t2_particle_check(Variant::Smoothed, 1, 1.0, 256, 1.0);
    t2_particle_check(Variant::SmoothedTarget, 1, 1.0, 256, 1.0);
}

#[test]
fn t2_particles_match_ode_a_with_potential() {
    t2_particle_check(Variant::Measure, 1, 1.0, 512, 2.0);
}

#[test]
fn euler_bias_is_below_the_floor() {
    // Same positions at h and h/2: the difference is about half the O(h) bias at h, so checking it
    // against half the floor makes the floor a 2× bound on the Euler bias.
    let space = Space::new(1, Domain::Euclidean).unwrap();
    let init = Initial::Gaussian { mean: vec![0.8], std: 1.5 };
    for variant in [Variant::Measure, Variant::MeasureTarget] {
        let mut out = Vec::new();
        for h in [T2_H, T2_H / 2.0] {
            let particles = Particles::sample(space, &init, 256, 77).unwrap();
            let reference = Reference::Gaussian { mean: vec![0.0], std: 1.0 };
            let mut e = CpuEngine::new(model(space, reference, variant, 1.0, 0.5, vec![]), particles).unwrap();
            out.push(run_to(&mut e, Scheme::Euler, h, 2.0));
        }
        let dm = out[0].mean[0] - out[1].mean[0];
        let dv = out[0].variance[0] - out[1].variance[0];
        eprintln!("T2 Euler h = {T2_H} vs h/2, {}: mean {dm:.2e}, var {dv:.2e}", variant.name());
        assert!(dm.abs() < T2_EULER_FLOOR / 2.0 && dv.abs() < T2_EULER_FLOOR / 2.0, "{dm} {dv}");
    }
    // T3 at its h = 2e-3: the Euler bias must be far below T3_FLOOR.
    let mut out = Vec::new();
    for h in [T3_H, T3_H / 2.0] {
        let mut e = t3_engine(5_000, 300);
        out.push(run_to(&mut e, Scheme::Euler, h, 3.0));
    }
    let (dm, dv) = (out[0].mean[0] - out[1].mean[0], out[0].variance[0] - out[1].variance[0]);
    eprintln!("T3 Euler h = {T3_H} vs h/2: mean {dm:.2e}, var {dv:.2e}");
    assert!(dm.abs() < T3_FLOOR / 2.0 && dv.abs() < T3_FLOOR / 2.0, "{dm} {dv}");
}

// ---------------------------------------------------------------------------------------------
// T3: the unkernelized (known-density) flow against the closed form.

const T3_H: f64 = 2e-3;

/// Floor for T3's Euler bias at h = 2e-3 (measured ≈ 1e-5; checked < 5e-4 in
/// `euler_bias_is_below_the_floor`).
const T3_FLOOR: f64 = 1e-3;

fn t3_engine(n: usize, seed: u64) -> CpuEngine {
    let space = Space::new(1, Domain::Euclidean).unwrap();
    let g = t3_check();
    let energy = vec![Energy::Potential(Potential::Quadratic { strength: g.lambda, center: vec![g.b] })];
    let reference = Reference::Gaussian { mean: vec![0.0], std: g.tau2.sqrt() };
    let init = Initial::Gaussian { mean: vec![g.m0], std: g.s0_2.sqrt() };
    let particles = Particles::sample(space, &init, n, seed).unwrap();
    CpuEngine::new(model(space, reference, Variant::Exact, g.sigma, 0.5, energy), particles).unwrap()
}

#[test]
fn t3_exact_particles_match_closed_form() {
    // The exact variant's weights are importance weights μ_t/μ₀ (no kernel, no self-correction),
    // so the seed spread is that of importance sampling: SE ≈ 4e-3 at N = 10 000 over 8 seeds.
    // The largest rate at t = 0 is ≈ 80 (particles far in μ₀'s left tail), so h·max a ≈ 0.16.
    let start = Instant::now();
    let (m3, v3) = t3_check().at(3.0);
    let (mut means, mut vars) = (Vec::new(), Vec::new());
    for seed in 0..8 {
        let mut engine = t3_engine(10_000, 300 + seed);
        let diag = run_to(&mut engine, Scheme::Euler, T3_H, 3.0);
        means.push(diag.mean[0]);
        vars.push(diag.variance[0]);
    }
    let (m, m_se) = mean_and_se(&means);
    let (v, v_se) = mean_and_se(&vars);
    eprintln!(
        "T3: mean {m:.6} ± {m_se:.6} (closed form {m3:.6}), var {v:.6} ± {v_se:.6} (closed form {v3:.6}); {:.1} s",
        start.elapsed().as_secs_f64()
    );
    assert!((m - m3).abs() <= 4.0 * m_se + T3_FLOOR, "T3 mean {m} ± {m_se} vs {m3}");
    assert!((v - v3).abs() <= 4.0 * v_se + T3_FLOOR, "T3 var {v} ± {v_se} vs {v3}");
}

// ---------------------------------------------------------------------------------------------
// T1: tempering weights of the exact variant with a linear F.

/// Two linear-F problems with μ₀'s density known: R^1 with a Gaussian π, a double well and a
/// two-component μ₀; the 2-torus with a uniform π, a cosine potential and a uniform μ₀.
fn t1_engines() -> Vec<(&'static str, CpuEngine)> {
    let line = Space::new(1, Domain::Euclidean).unwrap();
    let init = Initial::Mixture(vec![
        Component { weight: 0.3, mean: vec![-1.0], std: 0.5 },
        Component { weight: 0.7, mean: vec![1.2], std: 0.7 },
    ]);
    let energy = vec![Energy::Potential(Potential::DoubleWell { height: 0.25, scale: 1.0 })];
    let reference = Reference::Gaussian { mean: vec![0.3], std: 1.5 };
    let p = Particles::sample(line, &init, 3000, 11).unwrap();
    let a = CpuEngine::new(model(line, reference, Variant::Exact, 1.0, 0.3, energy), p).unwrap();
    let torus = Space::new(2, Domain::Torus { side: 1.0 }).unwrap();
    let energy = vec![Energy::Potential(Potential::Cosine { amplitude: 0.6, frequency: 2 })];
    let p = Particles::sample(torus, &Initial::Uniform { low: 0.0, high: 1.0 }, 3000, 12).unwrap();
    let b = CpuEngine::new(model(torus, Reference::Uniform, Variant::Exact, 1.3, 0.1, energy), p).unwrap();
    vec![("R^1 double well", a), ("T^2 cosine", b)]
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

#[test]
fn t1_exponential_step_is_exact_tempering() {
    // With the exact variant and linear F, a_i = σ(log w_i − r_i) + c with r = log μ*/μ₀, so the
    // exponential step log w ← log w − h a − log Z is explicit Euler on a linear ODE and gives
    // exactly log w_k = β_k r + const with β_k = 1 − (1 − σh)^k, i.e. T1 at the effective time
    // t_k = −k log(1 − σh)/σ. Only rounding separates them: ~1e-16 per step on log-weights of
    // size ≲ 30 over 400 steps, so 1e-10 is tight yet safe.
    for (name, mut engine) in t1_engines() {
        let sigma = engine.model().sigma;
        let (h, t_end) = (0.01, 4.0);
        run_to(&mut engine, Scheme::Exponential, h, t_end);
        let state = engine.state().unwrap();
        let t_eff = -(state.step as f64) * (-sigma * h).ln_1p() / sigma;
        let want = tempering_log_weights_for(engine.model(), engine.particles(), t_eff).unwrap();
        let err = max_abs_diff(&want, &state.log_weights);
        // Against T1 at the true time, the gap is exactly (β_k − β(t))·(r_i − const): O(h).
        let at_t = tempering_log_weights_for(engine.model(), engine.particles(), t_end).unwrap();
        let r = tempering_log_weights_for(engine.model(), engine.particles(), f64::INFINITY).unwrap();
        let spread =
            r.iter().copied().fold(f64::NEG_INFINITY, f64::max) - r.iter().copied().fold(f64::INFINITY, f64::min);
        let beta_gap = (tempering_exponent(sigma, t_eff) - tempering_exponent(sigma, t_end)).abs();
        let err_t = max_abs_diff(&at_t, &state.log_weights);
        eprintln!(
            "T1 exponential, {name}: {} steps, vs T1(t_k) {err:.2e}, vs T1(t) {err_t:.2e} (bound {:.2e})",
            state.step,
            beta_gap * spread
        );
        assert!(err < 1e-10, "{name}: {err}");
        assert!(err_t <= beta_gap * spread + 1e-10, "{name}: {err_t} vs {}", beta_gap * spread);
        // The oracle is sharp enough to see the O(h) time shift: the identity above can fail.
        assert!(err_t > 1e3 * err, "{name}: {err_t} vs {err}");
    }
}

#[test]
fn t1_euler_weights_converge_to_tempering() {
    // Explicit Euler's log-step is log(1 − h a) = −h a − δ with 0 ≤ δ ≤ (h a)²/(2(1 − h a)), on
    // top of the exponential step, which is exact T1 at t_k (above). The linear part contracts
    // differences by (1 − σh) per step and shifts all particles alike, so the normalised
    // log-weights differ from T1(t) by at most
    //     2 Σ_k δ_max,k + |β_k − β(t)| · spread(r),   with |a_i| ≤ σ (1 − σh)^k · spread(r),
    // i.e. ≤ 2 · h σ spread² / (4 (1 − h max a)) · (1 + O(h)) + O(h) spread. The test checks this
    // (loose, worst-case) bound, first-order convergence (halving h halves the error), and that
    // the Richardson extrapolation 2 log w(h/2) − log w(h) removes the O(h) term: what remains,
    // O(h²), must be ≥ 10× below the error at h/2. Together these pin the weights to T1 up to the
    // Euler error itself.
    for (name, _) in t1_engines() {
        let mut errs = Vec::new();
        let mut finals = Vec::new();
        let mut want = Vec::new();
        for h in [0.004, 0.002] {
            let mut engine = t1_engines().into_iter().find(|(n, _)| *n == name).unwrap().1;
            let sigma = engine.model().sigma;
            let t_end = 4.0;
            let max_rate0 = engine.evaluate().unwrap().max_rate;
            run_to(&mut engine, Scheme::Euler, h, t_end);
            let state = engine.state().unwrap();
            want = tempering_log_weights_for(engine.model(), engine.particles(), t_end).unwrap();
            let err = max_abs_diff(&want, &state.log_weights);
            let r = tempering_log_weights_for(engine.model(), engine.particles(), f64::INFINITY).unwrap();
            let spread =
                r.iter().copied().fold(f64::NEG_INFINITY, f64::max) - r.iter().copied().fold(f64::INFINITY, f64::min);
            let t_eff = -(state.step as f64) * (-sigma * h).ln_1p() / sigma;
            let beta_gap = (tempering_exponent(sigma, t_eff) - tempering_exponent(sigma, t_end)).abs();
            let bound = 1.1 * h * sigma * spread * spread / (2.0 * (1.0 - h * max_rate0)) + beta_gap * spread;
            eprintln!("T1 Euler, {name}, h = {h}: max |Δ log w| = {err:.3e} (bound {bound:.3e})");
            assert!(err <= bound, "{name}, h = {h}: {err} > {bound}");
            errs.push(err);
            finals.push(state.log_weights);
        }
        let extrapolated: Vec<f64> = finals[0].iter().zip(&finals[1]).map(|(a, b)| 2.0 * b - a).collect();
        let err_r = max_abs_diff(&want, &extrapolated);
        eprintln!("T1 Euler, {name}: Richardson-extrapolated max |Δ log w| = {err_r:.3e}");
        assert!(err_r < errs[1] / 10.0, "{name}: extrapolated error {err_r} vs {}", errs[1]);
        let ratio = errs[0] / errs[1];
        assert!((1.8..2.2).contains(&ratio), "{name}: error ratio {ratio} for h → h/2 (first order expected)");
    }
}
