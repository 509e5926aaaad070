//! The mean-field energies of SPEC §5 on the GPU engine, against f64: δF/δm and F for each
//! energy (interaction, MMD, two-layer network, NPMLE), the NPMLE's EM step, the descent of
//! V_ε along gradient flows, and `rates_at`. Runs on whatever adapter `FRFLOW_DEVICE` names or on
//! lavapipe (`llvmpipe`); without one the tests print a notice and pass, unless
//! `FRFLOW_REQUIRE_GPU=1`, when they fail.
//!
//! The f64 twins below are named after the shaders that do the same work (net_forward,
//! net_residuals, net_backward, npmle_coefficients, energy_accumulate) and compose into
//! `energy_derivative`, which is first checked against the CPU engine (to 1e-9) so that the
//! twins are the CPU reference written out stage by stage.
//!
//! Tolerances: the device computes in f32 (unit roundoff 6e-8). A log kernel sum carries an
//! absolute error of a few 1e-7 (its O(10) log2 exponents are each rounded), so exp of it is off
//! by a few 1e-7 relative; the network's sums of M or N terms w·c·tanh add ~1e-7 of their
//! absolute sum. δF is compared relative to max_i |δF_i| with 1e-4, two orders of magnitude above
//! that, and F relative to the magnitude of its terms with 1e-4.

use frflow::Error;
use frflow::energy::{
    Accumulate, Interaction, Mmd, Npmle, TwoLayerNet, energy_accumulate, net_backward, net_forward, net_residuals,
    npmle_coefficients, pair_sum,
};
use frflow::engine::Engine;
use frflow::engine::cpu::{CpuEngine, log_kernel_sum};
use frflow::engine::gpu::{GpuContext, GpuEngine};
use frflow::model::{
    Divergence, Domain, Energy, Gaussian, Model, ModelSpec, Points, Potential, QuadratureSpec, Reference, Space,
    Variant,
};
use frflow::particles::{Initial, Particles, State, standard_normal};
use frflow::stepper::{Scheme, StepSize, Stepper};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

mod common;
use common::context;

// ---------------------------------------------------------------------------------------------
// f64 twins of the energy shaders.

/// The energy of a test problem.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Potential,
    Interaction,
    Mmd,
    Network,
    Npmle,
}

/// δF/δm at the particles and F(μᴺ), composed from the twins as the engine composes the passes.
fn energy_derivative(model: &Model, pos: &[f64], lw: &[f64]) -> (Vec<f64>, f64) {
    let (space, d) = (&model.space, model.space.dim);
    let n = pos.len() / d;
    let w: Vec<f64> = lw.iter().map(|l| l.exp()).collect();
    let mut energy = vec![(0.0, 0.0); n];
    let mut f_rest = 0.0;
    for e in &model.energy {
        match e {
            Energy::Potential(u) => {
                for (x, e) in pos.chunks_exact(d).zip(energy.iter_mut()) {
                    let v = u.value(space, x);
                    e.0 += v;
                    e.1 += v;
                }
            }
            Energy::Interaction(Interaction { strength, width }) => {
                let k = Gaussian::new(space, *width, false, "w").unwrap();
                let l1 = log_kernel_sum(space, &k, pos, pos, lw);
                energy_accumulate(Accumulate::Interaction { strength: *strength }, &l1, &[], &mut energy);
            }
            Energy::Mmd(Mmd { width, sample }) => {
                let k = Gaussian::new(space, *width, false, "w").unwrap();
                let m = sample.len();
                let lm = vec![-(m as f64).ln(); m];
                let l1 = log_kernel_sum(space, &k, pos, pos, lw);
                let nu = log_kernel_sum(space, &k, pos, &sample.values, &lm);
                let cnn = log_kernel_sum(space, &k, &sample.values, &sample.values, &lm);
                f_rest += 0.5 * cnn.iter().map(|v| (v - (m as f64).ln()).exp()).sum::<f64>();
                energy_accumulate(Accumulate::Mmd, &l1, &nu, &mut energy);
            }
            Energy::TwoLayerNet(TwoLayerNet { inputs, targets, penalty }) => {
                let f = net_forward(pos, d, &w, inputs);
                let (r, data) = net_residuals(&f, targets);
                f_rest += data;
                let (l1, l2) = net_backward(pos, d, inputs, &r, *penalty);
                energy_accumulate(Accumulate::Linear, &l1, &l2, &mut energy);
            }
            Energy::Npmle(Npmle { observations, noise }) => {
                let k = Gaussian::new(space, *noise, true, "s").unwrap();
                let log_p = log_kernel_sum(space, &k, &observations.values, pos, lw);
                let (coeffs, data) = npmle_coefficients(&log_p);
                f_rest += data;
                let l1 = log_kernel_sum(space, &k, pos, &observations.values, &coeffs);
                energy_accumulate(Accumulate::Npmle, &l1, &[], &mut energy);
            }
            Energy::Pair(kernel) => {
                let l1 = pair_sum(kernel, d, pos, pos, &w);
                let l2: Vec<f64> = l1.iter().map(|v| 0.5 * v).collect();
                energy_accumulate(Accumulate::Linear, &l1, &l2, &mut energy);
            }
            Energy::Custom(term) => {
                let (f, dfdm) = term.evaluate(pos, &w, pos, d).unwrap();
                energy.iter_mut().zip(dfdm).for_each(|(e, v)| e.0 += v);
                f_rest += f;
            }
        }
    }
    let f = w.iter().zip(&energy).map(|(w, e)| w * e.1).sum::<f64>() + f_rest;
    (energy.into_iter().map(|e| e.0).collect(), f)
}

// ---------------------------------------------------------------------------------------------
// Problems.

/// One energy problem: an energy of one kind with M data points, N particles.
#[derive(Clone, Debug)]
struct Problem {
    kind: Kind,
    torus: bool,
    dim: usize,
    n: usize,
    m: usize,
    variant: Variant,
    divergence: Divergence,
    sigma: f64,
    epsilon: f64,
    /// Add a potential term too.
    potential: bool,
    seed: u64,
}

impl Problem {
    fn new(kind: Kind, torus: bool, dim: usize, n: usize, m: usize) -> Self {
        Problem {
            kind,
            torus,
            dim,
            n,
            m,
            variant: Variant::Blob,
            divergence: Divergence::Kl,
            sigma: 0.0,
            epsilon: 0.3,
            potential: false,
            seed: 3,
        }
    }

    fn space(&self) -> Space {
        let domain = if self.torus { Domain::Torus { side: 2.0 } } else { Domain::Euclidean };
        Space::new(self.dim, domain).unwrap()
    }

    /// Data of `m` rows of `cols` columns: uniform on the torus, N(0.3, 0.8²) on R^d.
    fn data(&self, rng: &mut ChaCha8Rng, m: usize, cols: usize) -> Vec<f64> {
        (0..m * cols)
            .map(|_| if self.torus { 2.0 * rng.random::<f64>() } else { 0.3 + 0.8 * standard_normal(rng) })
            .collect()
    }

    fn energy(&self, kind: Kind, rng: &mut ChaCha8Rng) -> Energy {
        let d = self.dim;
        match kind {
            Kind::Potential => Energy::Potential(if self.torus {
                Potential::Cosine { amplitude: 0.8, frequency: 2 }
            } else {
                Potential::DoubleWell { height: 0.3, scale: 0.8 }
            }),
            // Width 0.45 against L = 2 needs periodic images on the torus.
            Kind::Interaction => Energy::Interaction(Interaction { strength: 0.7, width: 0.45 }),
            Kind::Mmd => {
                let sample = Points { dim: d, values: self.data(rng, self.m, d) };
                Energy::Mmd(Mmd { width: 0.5, sample: Arc::new(sample) })
            }
            Kind::Network => {
                let p = d - 2;
                let inputs = Points { dim: p, values: (0..self.m * p).map(|_| standard_normal(rng)).collect() };
                let teacher: Vec<f64> = (0..d).map(|_| standard_normal(rng)).collect();
                let targets = (0..self.m)
                    .map(|k| TwoLayerNet::neuron(&teacher, inputs.row(k)) + 0.1 * standard_normal(rng))
                    .collect();
                Energy::TwoLayerNet(TwoLayerNet { inputs: Arc::new(inputs), targets: Arc::new(targets), penalty: 0.05 })
            }
            Kind::Npmle => {
                let obs = Points { dim: d, values: self.data(rng, self.m, d) };
                Energy::Npmle(Npmle { observations: Arc::new(obs), noise: 0.35 })
            }
        }
    }

    fn build(&self) -> (Model, Particles) {
        let space = self.space();
        let d = self.dim;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut energy = vec![self.energy(self.kind, &mut rng)];
        if self.potential {
            let u = if self.torus {
                Potential::Cosine { amplitude: 0.5, frequency: 1 }
            } else {
                Potential::Quadratic { strength: 0.4, center: vec![0.2; d] }
            };
            energy.push(Energy::Potential(u));
        }
        let reference =
            if self.torus { Reference::Uniform } else { Reference::Gaussian { mean: vec![0.0; d], std: 1.5 } };
        let model = ModelSpec {
            space,
            reference,
            divergence: self.divergence,
            sigma: self.sigma,
            epsilon: self.epsilon,
            variant: self.variant,
            energy,
            quadrature: QuadratureSpec { order: 3, samples: 12, seed: 11 },
        }
        .build()
        .unwrap();
        let init = if self.torus {
            Initial::Uniform { low: 0.0, high: 2.0 }
        } else {
            Initial::Gaussian { mean: vec![0.1; d], std: 1.0 }
        };
        let particles = Particles::sample(space, &init, self.n, self.seed + 1).unwrap();
        (model, particles)
    }
}

/// Random non-uniform log-weights over `decades` orders of magnitude, normalised.
fn random_state(n: usize, decades: f64, seed: u64) -> State {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut lw: Vec<f64> = (0..n).map(|_| -decades * std::f64::consts::LN_10 * rng.random::<f64>()).collect();
    frflow::stepper::normalise(&mut lw);
    State { log_weights: lw, step: 0, time: 0.0 }
}

/// max_i |a_i − b_i| / max_i |b_i| (absolute below a scale of 1e-6).
fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-6);
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max) / scale
}

fn engines(ctx: &GpuContext, p: &Problem, state: &State) -> (CpuEngine, GpuEngine) {
    let (model, particles) = p.build();
    let mut cpu = CpuEngine::new(model.clone(), particles.clone()).unwrap();
    let mut gpu = GpuEngine::new(ctx.clone(), model, particles).unwrap();
    cpu.set_state(state.clone()).unwrap();
    gpu.set_state(state.clone()).unwrap();
    (cpu, gpu)
}

/// F's scale for a relative comparison: its value, or the largest of its parts when they cancel
/// (the MMD's three terms near a fit).
fn f_scale(f: f64, p: &Problem) -> f64 {
    match p.kind {
        Kind::Mmd => f.abs().max(0.5),
        _ => f.abs().max(1e-3),
    }
}

/// Compares δF and F of the GPU with the twins and the CPU engine; returns (δF error, F error).
fn check_energy(ctx: &GpuContext, p: &Problem) -> (f64, f64) {
    let state = random_state(p.n, 3.0, p.seed + 7);
    let (mut cpu, mut gpu) = engines(ctx, p, &state);
    let (model, particles) = p.build();
    let (twin, f_twin) = energy_derivative(&model, &particles.positions, &state.log_weights);
    // The twins are the CPU engine's arithmetic: with σ = 0, its rates are δF minus the mean.
    let w = state.weights();
    let mean = w.iter().zip(&twin).map(|(w, v)| w * v).sum::<f64>() / w.iter().sum::<f64>();
    let twin_rates: Vec<f64> = twin.iter().map(|v| v - mean).collect();
    let cpu_rates = cpu.rates().unwrap();
    let scale = twin.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-6);
    let twin_err = cpu_rates.iter().zip(&twin_rates).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max) / scale;
    assert!(twin_err < 1e-9, "{p:?}: twin vs CPU engine {twin_err:e}");
    let f_cpu = cpu.evaluate().unwrap().f_energy;
    assert!((f_cpu - f_twin).abs() < 1e-9 * f_scale(f_twin, p), "{p:?}: F twin {f_twin} vs CPU {f_cpu}");

    let (dfdm, f_gpu) = gpu.energy_derivative().unwrap();
    let err = rel_err(&dfdm, &twin);
    let f_err = (f_gpu - f_twin).abs() / f_scale(f_twin, p);
    // The rates too: δF minus its mean, where N > 1 makes them non-zero.
    let rate_err = rel_err(&gpu.rates().unwrap(), &cpu_rates);
    let dg = gpu.evaluate().unwrap();
    assert_eq!(dg.f_energy, f_gpu);
    eprintln!(
        "{:?} {} d={} N={} M={}: δF {err:.2e}, F {f_err:.2e} ({f_twin:.6}), rates {rate_err:.2e}",
        p.kind,
        if p.torus { "torus" } else { "R^d" },
        p.dim,
        p.n,
        p.m
    );
    assert!(err < 1e-4, "{p:?}: δF relative error {err:e}");
    assert!(f_err < 1e-4, "{p:?}: F {f_gpu} vs {f_twin}: {f_err:e}");
    if p.n > 1 {
        assert!(rate_err < 1e-4, "{p:?}: rates relative error {rate_err:e}");
    }
    (err, f_err)
}

fn sizes(kind: Kind) -> [(usize, usize); 4] {
    match kind {
        Kind::Interaction => [(1, 1), (7, 1), (1000, 1), (4097, 1)],
        Kind::Mmd => [(1, 1000), (7, 4097), (1000, 7), (4097, 1)],
        Kind::Network => [(1, 4097), (7, 1), (1000, 1000), (4097, 7)],
        Kind::Npmle => [(1, 7), (7, 4097), (1000, 1), (4097, 1000)],
        Kind::Potential => [(1, 1), (7, 1), (1000, 1), (4097, 1)],
    }
}

fn check_kind(kind: Kind) {
    let Some(ctx) = context() else { return };
    for (j, (n, m)) in sizes(kind).into_iter().enumerate() {
        // Alternate torus and R^d; the network lives on R^d with d = 3..6 (P = 1 or 2 vec4).
        let (torus, dim) = match kind {
            Kind::Network => (false, 3 + j),
            _ => (j % 2 == 0, 1 + j),
        };
        let t = std::time::Instant::now();
        check_energy(&ctx, &Problem { seed: 10 + j as u64, ..Problem::new(kind, torus, dim, n, m) });
        eprintln!("  ({:.2}s)", t.elapsed().as_secs_f64());
    }
}

#[test]
fn interaction_derivative_and_value_match_f64() {
    check_kind(Kind::Interaction);
}

#[test]
fn mmd_derivative_and_value_match_f64() {
    check_kind(Kind::Mmd);
}

#[test]
fn network_derivative_and_value_match_f64() {
    check_kind(Kind::Network);
}

#[test]
fn npmle_derivative_and_value_match_f64() {
    check_kind(Kind::Npmle);
}

/// With a small σ the rates mix δF and σ h_ε: the GPU's rates and V_ε match the CPU engine's for
/// each energy under each gradient-flow variant and a non-gradient one.
#[test]
fn rates_and_energy_with_a_small_sigma_match_cpu() {
    let Some(ctx) = context() else { return };
    let cases = [
        (Kind::Interaction, Variant::Blob, Divergence::Kl, true, 2),
        (Kind::Mmd, Variant::Smoothed, Divergence::Kl, false, 2),
        (Kind::Network, Variant::SmoothedTarget, Divergence::Kl, false, 3),
        (Kind::Npmle, Variant::Measure, Divergence::Chi2, true, 1),
        (Kind::Npmle, Variant::Blob, Divergence::Chi2, false, 2),
        (Kind::Mmd, Variant::MeasureTarget, Divergence::Kl, true, 3),
    ];
    for (i, (kind, variant, divergence, torus, dim)) in cases.into_iter().enumerate() {
        let p = Problem {
            variant,
            divergence,
            sigma: 0.05,
            potential: true,
            seed: 40 + i as u64,
            ..Problem::new(kind, torus, dim, 300, 200)
        };
        let state = random_state(p.n, 2.0, p.seed);
        let (mut cpu, mut gpu) = engines(&ctx, &p, &state);
        let err = rel_err(&gpu.rates().unwrap(), &cpu.rates().unwrap());
        let (dc, dg) = (cpu.evaluate().unwrap(), gpu.evaluate().unwrap());
        eprintln!("{kind:?} {variant:?} {divergence:?}: rates {err:.2e}, F {} vs {}", dc.f_energy, dg.f_energy);
        assert!(err < 1e-4, "{p:?}: rates {err:e}");
        assert!((dc.f_energy - dg.f_energy).abs() < 1e-4 * f_scale(dc.f_energy, &p), "{p:?}");
        match (dc.energy, dg.energy) {
            (None, None) => assert!(!variant.is_gradient_flow()),
            (Some(a), Some(b)) => assert!((a - b).abs() < 1e-4 * (1.0 + a.abs()), "{p:?}: V {a} vs {b}"),
            other => panic!("{p:?}: {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The NPMLE's EM step.

/// One classical fixed-grid EM step in f64: w_i ← w_i (1/M) Σ_k φ_s(z_k − X_i) / p(z_k) with
/// p(z) = Σ_j w_j φ_s(z − X_j); returns the new weights and the log-likelihood of the old ones,
/// (1/M) Σ_k log p(z_k).
fn em_step(grid: &[f64], obs: &[f64], noise: f64, w: &[f64]) -> (Vec<f64>, f64) {
    let phi =
        |z: f64, x: f64| (-(z - x).powi(2) / (2.0 * noise * noise)).exp() / (std::f64::consts::TAU.sqrt() * noise);
    let p: Vec<f64> = obs.iter().map(|z| grid.iter().zip(w).map(|(x, w)| w * phi(*z, *x)).sum()).collect();
    let m = obs.len() as f64;
    let new = grid
        .iter()
        .zip(w)
        .map(|(x, w)| w * obs.iter().zip(&p).map(|(z, p)| phi(*z, *x) / p).sum::<f64>() / m)
        .collect();
    (new, p.iter().map(|p| p.ln()).sum::<f64>() / m)
}

/// The NPMLE problem of the EM tests: a grid on [−2.2, 2.6] and M = 600 observations of a
/// two-component mixture blurred by noise s = 0.35 (d = 1, R).
fn em_problem(n: usize) -> (Model, Particles, Vec<f64>, Vec<f64>) {
    let space = Space::new(1, Domain::Euclidean).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(77);
    let obs: Vec<f64> = (0..600)
        .map(|k| {
            let center =
                if k % 3 == 0 { 1.5 + 0.3 * standard_normal(&mut rng) } else { -0.8 + 0.5 * standard_normal(&mut rng) };
            center + 0.35 * standard_normal(&mut rng)
        })
        .collect();
    let grid: Vec<f64> = (0..n).map(|i| -2.2 + 4.8 * i as f64 / (n - 1) as f64).collect();
    let model = ModelSpec {
        space,
        reference: Reference::Gaussian { mean: vec![0.0], std: 1.0 },
        divergence: Divergence::Kl,
        sigma: 0.0,
        epsilon: 0.3,
        variant: Variant::Measure,
        energy: vec![Energy::Npmle(Npmle {
            observations: Arc::new(Points { dim: 1, values: obs.clone() }),
            noise: 0.35,
        })],
        quadrature: QuadratureSpec::default(),
    }
    .build()
    .unwrap();
    let particles = Particles::from_positions(space, grid.clone()).unwrap();
    (model, particles, grid, obs)
}

/// With σ = 0 the NPMLE's Euler step of size 1 is the EM step exactly (SPEC §5): a_i = 1 − R_i
/// with R_i = (1/M) Σ_k φ_s(z_k − X_i)/p(z_k), so w_i (1 − a_i) = w_i R_i. The CPU engine agrees
/// to 1e-6 relative on every weight (f64: only rounding).
///
/// The GPU's weight carries f32 errors that do not shrink to 1e-6: R_i = exp(log-sum) is off by
/// ~5e-7 relative (its O(10) log2 exponents are rounded); the mean Σ w g / Σ w, which is −1 in
/// exact arithmetic, comes out 2–4e-6 off — p(z_k) and the sums against 1/p(z_k) are two passes
/// of f32 exp2/log2, and their small biases do not cancel — and that offset enters every
/// 1 − a_i = R_i alike; and log w_i itself is stored in f32, to half an ulp, which is 2^-24 |log w_i|
/// relative in w_i. So each weight is checked in log space against 1e-5 + 2^-23 |log w_i|
/// (1.1e-5 at the smallest weight here, e^-21). Over 200 steps EM increases the log-likelihood:
/// on the CPU strictly, on the GPU to within the f32 rounding of F = −(1/M) Σ_k log p_k, a tree
/// sum of M terms of size ~|F| each rounded to 6e-8: 4e-7 |F| per step.
#[test]
fn npmle_euler_step_of_one_is_the_em_step_and_em_increases_the_likelihood() {
    let Some(ctx) = context() else { return };
    let (model, particles, grid, obs) = em_problem(240);
    let state = random_state(grid.len(), 1.0, 5);
    let euler = Stepper::new(Scheme::Euler, StepSize::Fixed(1.0)).unwrap();
    let mut cpu = CpuEngine::new(model.clone(), particles.clone()).unwrap();
    let mut gpu = GpuEngine::new(ctx, model, particles).unwrap();
    // (name, engine, relative tolerance of a weight, of it per unit |log w|, slack of F).
    let engines: [(&str, &mut dyn Engine, f64, f64, f64); 2] =
        [("cpu", &mut cpu, 1e-6, 0.0, 1e-13), ("gpu", &mut gpu, 1e-5, 2f64.powi(-23), 4e-7)];
    for (name, engine, tol, tol_log, slack) in engines {
        engine.set_state(state.clone()).unwrap();
        let mut w = state.weights();
        let mut worst = 0.0f64;
        let mut min_ratio = f64::INFINITY;
        let mut last = engine.evaluate().unwrap().f_energy;
        let (mut ll_err, mut worst_rise) = (0.0f64, f64::NEG_INFINITY);
        let t = std::time::Instant::now();
        for step in 0..200 {
            let (expected, ll) = em_step(&grid, &obs, 0.35, &w);
            ll_err = ll_err.max((-ll - last).abs() / ll.abs());
            assert_eq!(engine.advance(1, &euler, None).unwrap(), 1);
            let got = engine.state().unwrap().weights();
            for ((g, e), old) in got.iter().zip(&expected).zip(&w) {
                // |log g − log e| against the allowance: ≤ 1 passes.
                worst = worst.max((g.ln() - e.ln()).abs() / (tol + tol_log * e.ln().abs()));
                min_ratio = min_ratio.min(e / old);
            }
            let f = engine.evaluate().unwrap().f_energy;
            worst_rise = worst_rise.max(f - last);
            assert!(f <= last + slack * last.abs(), "{name} step {step}: −log-likelihood rose from {last} to {f}");
            last = f;
            // Continue from the engine's own weights, so each step is checked on its own.
            w = got;
        }
        let lw_min = w.iter().map(|w| w.ln()).fold(0.0, f64::min);
        eprintln!(
            "{name}: EM step weight error {worst:.2e} of the allowance (min R {min_ratio:.3}, min log w {lw_min:.1}), \
             F error {ll_err:.2e}, largest change of F {worst_rise:.2e} ({:.2}s)",
            t.elapsed().as_secs_f64()
        );
        assert!(worst <= 1.0, "{name}: weights differ from the EM step by {worst} times the allowance");
        assert!(ll_err < 1e-5, "{name}: F is not the negative log-likelihood ({ll_err:e})");
        assert!(worst_rise < 0.0 || name == "gpu", "{name}: EM must increase the likelihood strictly");
    }
}

// ---------------------------------------------------------------------------------------------
// Descent of V_ε along the gradient flows.

/// Takes `steps` Euler steps of size h on the GPU and returns V_ε after each (V_0 first) and
/// the scale of V's parts at the start, |F| + σ |D_ε| + 1: the parts are sums of kernel values
/// (at most 1), log density ratios and data terms of order 1 even where V itself is near 0
/// (an MMD near its fit, a KL near uniform).
fn energies_along(ctx: &GpuContext, p: &Problem, steps: usize) -> (Vec<f64>, f64) {
    let (model, particles) = p.build();
    let mut gpu = GpuEngine::new(ctx.clone(), model, particles).unwrap();
    gpu.set_state(random_state(p.n, 2.0, p.seed + 3)).unwrap();
    let d0 = gpu.evaluate().unwrap();
    let v0 = d0.energy.expect("a gradient flow reports V");
    let scale = d0.f_energy.abs() + (v0 - d0.f_energy).abs() + 1.0;
    // Small against the rates' time scale: h max|a| = 0.02.
    let h = 0.02 / d0.max_abs_rate;
    let euler = Stepper::new(Scheme::Euler, StepSize::Fixed(h)).unwrap();
    let mut v = vec![v0];
    for _ in 0..steps {
        assert_eq!(gpu.advance(1, &euler, None).unwrap(), 1);
        v.push(gpu.evaluate().unwrap().energy.unwrap());
    }
    (v, scale)
}

/// Along a gradient flow dV/dt = −Σ w a² ≤ 0, so with a small h V_ε(μᴺ) must not increase from
/// step to step (variants C, D, D′, and KL with every convex energy: potential, interaction
/// with strength > 0, MMD, NPMLE; also χ² and the non-convex network, which are gradient flows
/// too). V is summed in f32: each of its parts (Σ w f, σ Σ w e, the data terms) has a relative
/// rounding error of ~log₂N · 6e-8 ≈ 5e-7 and its per-particle terms one of ~1e-6 (exp of log
/// sums), independently at each step, so a rise below 4e-6 (|F| + σ|D| + 1) is rounding, not
/// ascent.
/// The slack is checked to be small against V's total decrease, so the test can fail.
#[test]
fn the_energy_does_not_increase_along_gradient_flows_on_the_gpu() {
    let Some(ctx) = context() else { return };
    use Variant::{Blob, Smoothed, SmoothedTarget};
    let kl = |kind, variant, torus, dim, potential| Problem {
        variant,
        sigma: 0.3,
        potential,
        epsilon: 0.4,
        ..Problem::new(kind, torus, dim, 128, 64)
    };
    let cases = [
        kl(Kind::Potential, Blob, true, 2, false),
        kl(Kind::Interaction, Blob, false, 2, false),
        kl(Kind::Mmd, Blob, true, 1, false),
        kl(Kind::Npmle, Blob, false, 1, false),
        kl(Kind::Mmd, Smoothed, false, 2, true),
        kl(Kind::Interaction, SmoothedTarget, true, 1, true),
        Problem { n: 64, ..kl(Kind::Network, SmoothedTarget, false, 3, false) },
        Problem { divergence: Divergence::Chi2, ..kl(Kind::Npmle, Blob, true, 2, true) },
    ];
    for p in cases {
        let t = std::time::Instant::now();
        let (v, scale) = energies_along(&ctx, &p, 500);
        let slack = 4e-6 * scale;
        let rise = v.windows(2).map(|w| w[1] - w[0]).fold(f64::NEG_INFINITY, f64::max);
        let drop = v[0] - v[v.len() - 1];
        eprintln!(
            "{:?} {:?} {:?} {}: V {:.6} → {:.6}, largest step change {rise:.2e}, slack {slack:.1e} ({:.2}s)",
            p.kind,
            p.variant,
            p.divergence,
            if p.torus { "torus" } else { "R^d" },
            v[0],
            v[v.len() - 1],
            t.elapsed().as_secs_f64()
        );
        assert!(drop > 100.0 * slack, "{p:?}: V fell by only {drop:e}; the check would be vacuous");
        assert!(rise <= slack, "{p:?}: V rose by {rise:e} in one step (slack {slack:e})");
    }
}

// ---------------------------------------------------------------------------------------------
// rates_at.

/// A model with every energy at once (d = 3 for the network) on the torus of side 2, or on R^d.
fn all_energies(variant: Variant, divergence: Divergence, torus: bool, epsilon: f64, n: usize) -> (Model, Particles) {
    let d = 3;
    let base = Problem {
        variant,
        divergence,
        sigma: 0.4,
        epsilon,
        potential: true,
        ..Problem::new(Kind::Mmd, torus, d, n, 50)
    };
    let (mut model, particles) = base.build();
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    for kind in [Kind::Interaction, Kind::Network, Kind::Npmle] {
        model.energy.push(base.energy(kind, &mut rng));
    }
    (model, particles)
}

/// Points near the particles (each shifted by 0.05 per coordinate) and `extra` random ones.
fn other_points(particles: &Particles, count: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let d = particles.space.dim;
    let mut pts: Vec<f64> = particles.positions.iter().take(count * d).map(|x| x + 0.05).collect();
    pts.extend((0..count * d).map(|_| 2.0 * rng.random::<f64>()));
    pts
}

/// For every kernelized variant (and KL and χ²), with every energy at once: the GPU's rates at
/// the particles' own positions equal its rates() (to 1e-4 of max |a|: the same f32 sums, run as
/// T × N passes with other shifts and splits), and at other points they match the CPU engine's
/// rates_at (f32 against f64, 1e-4 of the largest rate there). The passes are reused for repeated
/// points, so a change of state between two calls must show up.
#[test]
fn rates_at_matches_rates_at_the_particles_and_the_cpu_elsewhere() {
    let Some(ctx) = context() else { return };
    use Variant::{Blob, Measure, MeasureTarget, Smoothed, SmoothedTarget};
    let cases = [
        (Measure, Divergence::Kl, true),
        (MeasureTarget, Divergence::Chi2, false),
        (Blob, Divergence::Kl, false),
        (Blob, Divergence::Chi2, true),
        (Smoothed, Divergence::Kl, true),
        (SmoothedTarget, Divergence::Kl, false),
    ];
    for (i, (variant, divergence, torus)) in cases.into_iter().enumerate() {
        let t = std::time::Instant::now();
        let n = if variant.uses_quadrature() { 150 } else { 400 };
        let (model, particles) = all_energies(variant, divergence, torus, 0.35, n);
        let mut cpu = CpuEngine::new(model.clone(), particles.clone()).unwrap();
        let mut gpu = GpuEngine::new(ctx.clone(), model, particles.clone()).unwrap();
        let state = random_state(n, 2.0, 30 + i as u64);
        cpu.set_state(state.clone()).unwrap();
        gpu.set_state(state).unwrap();
        let own = gpu.rates().unwrap();
        let at_own = gpu.rates_at(&particles.positions).unwrap();
        let own_err = rel_err(&at_own, &own);
        let pts = other_points(&particles, 60, i as u64);
        let (mut worst, mut agree) = (0.0f64, 0.0f64);
        for round in 0..2 {
            if round == 1 {
                // New weights: the recorded passes must read them.
                let s = random_state(n, 3.0, 60 + i as u64);
                cpu.set_state(s.clone()).unwrap();
                gpu.set_state(s).unwrap();
            }
            let c = cpu.rates_at(&pts).unwrap();
            let g = gpu.rates_at(&pts).unwrap();
            let g_again = gpu.rates_at(&pts).unwrap();
            assert_eq!(g, g_again, "the same points and state give the same rates");
            worst = worst.max(rel_err(&g, &c));
            agree = agree.max(rel_err(&cpu.rates_at(&particles.positions).unwrap(), &cpu.rates().unwrap()));
        }
        eprintln!(
            "{} {divergence:?} {}: at own positions {own_err:.2e}, elsewhere vs cpu {worst:.2e} ({:.2}s)",
            variant.name(),
            if torus { "torus" } else { "R^d" },
            t.elapsed().as_secs_f64()
        );
        assert!(agree < 1e-9, "{variant:?}: the CPU's own rates_at disagrees with its rates ({agree:e})");
        assert!(own_err < 1e-4, "{variant:?} {divergence:?}: rates_at at the particles {own_err:e}");
        assert!(worst < 1e-4, "{variant:?} {divergence:?}: rates_at vs cpu {worst:e}");
    }
}

/// Sizes: one point, and many more points than particles; with σ = 0 (energies only) and the
/// oracle variant, which then needs no density.
#[test]
fn rates_at_handles_one_point_many_points_and_no_divergence() {
    let Some(ctx) = context() else { return };
    for (t_count, n, sigma, variant) in
        [(1, 7, 0.4, Variant::Blob), (4097, 1000, 0.0, Variant::Exact), (1000, 1, 0.4, Variant::Measure)]
    {
        let (mut model, particles) = all_energies(variant, Divergence::Kl, true, 0.35, n);
        model.sigma = sigma;
        let mut cpu = CpuEngine::new(model.clone(), particles.clone()).unwrap();
        let mut gpu = GpuEngine::new(ctx.clone(), model, particles.clone()).unwrap();
        let state = random_state(n, 1.0, 8);
        cpu.set_state(state.clone()).unwrap();
        gpu.set_state(state).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(t_count as u64);
        let pts: Vec<f64> = (0..t_count * 3).map(|_| 2.0 * rng.random::<f64>()).collect();
        let err = rel_err(&gpu.rates_at(&pts).unwrap(), &cpu.rates_at(&pts).unwrap());
        eprintln!("T={t_count} N={n} σ={sigma} {}: {err:.2e}", variant.name());
        assert!(err < 1e-4, "T={t_count} N={n}: {err:e}");
        assert!(gpu.rates_at(&[]).unwrap().is_empty());
    }
}

/// The oracle variant knows μᴺ's density only at its own particles: both engines refuse
/// rates_at with the same error; malformed points are refused like the CPU does.
#[test]
fn rates_at_refuses_the_oracle_and_malformed_points_like_the_cpu() {
    let Some(ctx) = context() else { return };
    let p = Problem { variant: Variant::Exact, sigma: 0.5, ..Problem::new(Kind::Npmle, false, 2, 50, 20) };
    let (model, particles) = p.build();
    let mut cpu = CpuEngine::new(model.clone(), particles.clone()).unwrap();
    let mut gpu = GpuEngine::new(ctx.clone(), model, particles).unwrap();
    let field = |r: Result<Vec<f64>, Error>| match r {
        Err(Error::Invalid { field, .. }) => field,
        other => panic!("expected Error::Invalid, got {other:?}"),
    };
    assert_eq!(field(gpu.rates_at(&[0.1, 0.2])), "kernel.variant");
    assert_eq!(field(cpu.rates_at(&[0.1, 0.2])), "kernel.variant");
    let p = Problem { sigma: 0.5, ..p };
    let (model, particles) = Problem { variant: Variant::Blob, ..p }.build();
    let mut gpu = GpuEngine::new(ctx, model, particles).unwrap();
    assert_eq!(field(gpu.rates_at(&[0.1, 0.2, 0.3])), "points");
    assert_eq!(field(gpu.rates_at(&[0.1, f64::NAN])), "points[1]");
}

/// On R^d with ε small against the spread, positions are fixed point over the particles'
/// bounding box; points outside it (here up to 3 units beyond) make the engine re-pack with a
/// grown box, keeping its state, and the rates still match the CPU's (at distances of 1/ε² in
/// log units; 1e-4 of the largest rate).
#[test]
fn rates_at_points_outside_the_particles_box_match_the_cpu() {
    let Some(ctx) = context() else { return };
    let p = Problem {
        variant: Variant::Blob,
        sigma: 0.5,
        epsilon: 0.02,
        potential: true,
        ..Problem::new(Kind::Npmle, false, 2, 300, 40)
    };
    let (model, particles) = p.build();
    let mut cpu = CpuEngine::new(model.clone(), particles.clone()).unwrap();
    let mut gpu = GpuEngine::new(ctx, model, particles.clone()).unwrap();
    let state = random_state(300, 2.0, 4);
    cpu.set_state(state.clone()).unwrap();
    gpu.set_state(state.clone()).unwrap();
    let before = gpu.rates().unwrap();
    let kept = gpu.state().unwrap();
    let inside = other_points(&particles, 20, 1);
    let far: Vec<f64> = vec![5.0, -4.0, -6.5, 0.3, 0.2, 7.0];
    for pts in [inside, far] {
        let err = rel_err(&gpu.rates_at(&pts).unwrap(), &cpu.rates_at(&pts).unwrap());
        eprintln!("ε = 0.02, {} points: {err:.2e}", pts.len() / 2);
        assert!(err < 1e-4, "{err:e}");
    }
    assert_eq!(gpu.state().unwrap(), kept, "re-packing keeps the state");
    assert!(rel_err(&gpu.rates().unwrap(), &before) < 1e-5, "re-packing keeps the rates");
}

/// The energy shaders index their buffers in bounds by construction (what makes the unchecked
/// modules sound) and fold their split grids into 2-D correctly: with wgpu's bounds checks, and
/// with at most 3 workgroups per grid dimension (which forces the 2-D grid and spare
/// workgroups), δF, F, the rates and rates_at are the same as with the defaults.
#[test]
fn checked_modules_and_two_dimensional_grids_give_the_same_energies() {
    use frflow::engine::gpu::GpuOptions;
    let Some(ctx) = context() else { return };
    for variant in [Variant::Blob, Variant::Smoothed] {
        let (model, particles) = all_energies(variant, Divergence::Kl, false, 0.35, 700);
        let state = random_state(700, 2.0, 12);
        let pts = other_points(&particles, 30, 2);
        let mut out = Vec::new();
        for (checked, limit) in [(false, None), (true, None), (false, Some(3))] {
            let options =
                GpuOptions { checked_shaders: checked, max_workgroups_per_dimension: limit, ..Default::default() };
            let mut gpu = GpuEngine::with_options(ctx.clone(), model.clone(), particles.clone(), options).unwrap();
            gpu.set_state(state.clone()).unwrap();
            let (dfdm, f) = gpu.energy_derivative().unwrap();
            out.push((dfdm, f, gpu.rates().unwrap(), gpu.rates_at(&pts).unwrap()));
        }
        for (k, o) in out.iter().enumerate().skip(1) {
            // Bounds checks and the grid's shape change no arithmetic: bit for bit, or nearly.
            assert!(rel_err(&o.0, &out[0].0) < 1e-6, "{variant:?} option set {k}: δF");
            assert!((o.1 - out[0].1).abs() < 1e-6 * out[0].1.abs(), "{variant:?} option set {k}: F");
            assert!(rel_err(&o.2, &out[0].2) < 1e-6, "{variant:?} option set {k}: rates");
            assert!(rel_err(&o.3, &out[0].3) < 1e-6, "{variant:?} option set {k}: rates_at");
        }
    }
}
