//! The GPU engine against the f64 CPU engine, on whatever adapter `FRFLOW_DEVICE` names or on
//! lavapipe (`llvmpipe`). Without an adapter the tests print a notice and pass, unless
//! `FRFLOW_REQUIRE_GPU=1`, when they fail.
//!
//! Tolerances: the GPU computes in f32 (relative rounding 6e-8). A log kernel sum over N terms
//! carries an absolute error of a few 1e-7 (the coefficients and scaled distances are O(10..100)
//! in log2 units, each rounded to 6e-8 relative), which becomes an error in h of the same size;
//! rates are compared relative to max |a| with 1e-4, two orders of magnitude above that, leaving
//! room for the cancellation in a_i = g_i − mean when |g| exceeds |a|.

use frflow::Error;
use frflow::engine::cpu::CpuEngine;
use frflow::engine::gpu::{GpuContext, GpuEngine, GpuOptions, ImageExponentials, KernelPath};
use frflow::engine::{Diagnostics, Engine};
use frflow::model::{Divergence, Domain, Energy, ModelSpec, Potential, QuadratureSpec, Reference, Space, Variant};
use frflow::particles::{Initial, Particles, State};
use frflow::stepper::{Scheme, StepSize, Stepper};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod common;
use common::context;

/// A test case: a model and particles.
#[derive(Clone, Debug)]
struct Case {
    variant: Variant,
    divergence: Divergence,
    /// "torus-uniform", "torus-gibbs" or "gaussian".
    domain: &'static str,
    dim: usize,
    n: usize,
    epsilon: f64,
    sigma: f64,
    potential: bool,
    seed: u64,
}

impl Case {
    fn new(variant: Variant, divergence: Divergence, domain: &'static str, dim: usize, n: usize) -> Self {
        Case { variant, divergence, domain, dim, n, epsilon: 0.3, sigma: 0.7, potential: true, seed: 7 }
    }

    fn build(&self) -> (frflow::model::Model, Particles) {
        let d = self.dim;
        let (domain, reference, init) = match self.domain {
            "torus-uniform" => {
                (Domain::Torus { side: 2.0 }, Reference::Uniform, Initial::Gaussian { mean: vec![1.0; d], std: 0.5 })
            }
            "torus-gibbs" => (
                Domain::Torus { side: 2.0 },
                Reference::Gibbs(Potential::Cosine { amplitude: 0.8, frequency: 1 }),
                Initial::Uniform { low: 0.0, high: 2.0 },
            ),
            "gaussian" => (
                Domain::Euclidean,
                Reference::Gaussian { mean: vec![0.2; d], std: 1.1 },
                Initial::Gaussian { mean: vec![0.5; d], std: 1.3 },
            ),
            other => panic!("unknown domain {other}"),
        };
        let space = Space::new(d, domain).unwrap();
        let energy = if self.potential {
            let u = match domain {
                Domain::Torus { .. } => Potential::Cosine { amplitude: 0.5, frequency: 2 },
                Domain::Euclidean => Potential::Quadratic { strength: 0.6, center: vec![-0.3; d] },
            };
            vec![Energy::Potential(u)]
        } else {
            vec![]
        };
        let model = ModelSpec {
            space,
            reference,
            divergence: self.divergence,
            sigma: self.sigma,
            epsilon: self.epsilon,
            variant: self.variant,
            energy,
            // Small rules keep the N·Q × N passes quick on lavapipe; the GPU and CPU use the same.
            quadrature: QuadratureSpec { order: 3, samples: 12, seed: 11 },
        }
        .build()
        .unwrap();
        let particles = Particles::sample(space, &init, self.n, self.seed).unwrap();
        (model, particles)
    }
}

/// Random non-uniform log-weights: log-uniform over `decades` orders of magnitude, normalised.
fn random_state(n: usize, decades: f64, seed: u64) -> State {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut lw: Vec<f64> = (0..n).map(|_| -decades * std::f64::consts::LN_10 * rng.random::<f64>()).collect();
    if n > 1 {
        lw[0] = 0.0;
        lw[n - 1] = -decades * std::f64::consts::LN_10;
    }
    frflow::stepper::normalise(&mut lw);
    State { log_weights: lw, step: 0, time: 0.0 }
}

fn engines(ctx: &GpuContext, case: &Case, options: GpuOptions) -> (CpuEngine, GpuEngine) {
    let (model, particles) = case.build();
    let cpu = CpuEngine::new(model.clone(), particles.clone()).unwrap();
    let gpu = GpuEngine::with_options(ctx.clone(), model, particles, options).unwrap();
    (cpu, gpu)
}

/// max_i |a_gpu − a_cpu| / max_i |a_cpu|.
fn rate_error(cpu: &[f64], gpu: &[f64]) -> f64 {
    // For N = 1 every rate is 0 (up to rounding): compare absolutely there.
    let scale = cpu.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-6);
    cpu.iter().zip(gpu).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max) / scale
}

fn compare_rates(ctx: &GpuContext, case: &Case, decades: f64) -> f64 {
    let (mut cpu, mut gpu) = engines(ctx, case, GpuOptions::default());
    let state = random_state(case.n, decades, case.seed + 1);
    cpu.set_state(state.clone()).unwrap();
    gpu.set_state(state).unwrap();
    let a = cpu.rates().unwrap();
    let b = gpu.rates().unwrap();
    let err = rate_error(&a, &b);
    let (dc, dg) = (cpu.evaluate().unwrap(), gpu.evaluate().unwrap());
    check_diagnostics(&dc, &dg, case);
    err
}

fn check_diagnostics(c: &Diagnostics, g: &Diagnostics, case: &Case) {
    let rel = |a: f64, b: f64| (a - b).abs() / a.abs().max(1e-12);
    assert!(rel(c.mass, g.mass) < 1e-5, "{case:?}: mass {} vs {}", c.mass, g.mass);
    assert!(rel(c.ess, g.ess) < 1e-4, "{case:?}: ess {} vs {}", c.ess, g.ess);
    assert!(
        (c.max_abs_rate - g.max_abs_rate).abs() <= 1e-4 * c.max_abs_rate.max(1e-6),
        "{case:?}: max|a| {} vs {}",
        c.max_abs_rate,
        g.max_abs_rate
    );
    assert!(
        (c.max_rate - g.max_rate).abs() <= 1e-4 * c.max_abs_rate.max(1e-6),
        "{case:?}: max a {} vs {}",
        c.max_rate,
        g.max_rate
    );
    assert!(
        (c.f_energy - g.f_energy).abs() < 1e-4 * (1.0 + c.f_energy.abs()),
        "{case:?}: F {} vs {}",
        c.f_energy,
        g.f_energy
    );
    match (c.energy, g.energy) {
        (None, None) => {}
        (Some(a), Some(b)) => assert!((a - b).abs() < 1e-4 * (1.0 + a.abs()), "{case:?}: V {a} vs {b}"),
        other => panic!("{case:?}: energy {other:?}"),
    }
    for k in 0..c.mean.len() {
        let spread = c.variance[k].sqrt().max(1e-3);
        assert!((c.mean[k] - g.mean[k]).abs() < 1e-4 * spread, "{case:?}: mean[{k}] {} vs {}", c.mean[k], g.mean[k]);
        assert!(rel(c.variance[k], g.variance[k]) < 1e-3, "{case:?}: var[{k}] {} vs {}", c.variance[k], g.variance[k]);
    }
}

/// Runs every case and asserts the worst relative rate error.
fn check_cases(cases: &[(Case, f64)]) {
    let Some(ctx) = context() else { return };
    for (case, decades) in cases {
        let t = std::time::Instant::now();
        let err = compare_rates(&ctx, case, *decades);
        eprintln!(
            "{} {:?} {} d={} N={} eps={} decades={decades}: rate error {err:.2e} ({:.2}s)",
            case.variant.name(),
            case.divergence,
            case.domain,
            case.dim,
            case.n,
            case.epsilon,
            t.elapsed().as_secs_f64()
        );
        assert!(err < 1e-4, "{case:?}: relative rate error {err:e}");
    }
}

fn case(variant: Variant, divergence: Divergence, domain: &'static str, dim: usize, n: usize) -> Case {
    Case::new(variant, divergence, domain, dim, n)
}

use Divergence::{Chi2, Kl};
use Variant::{Blob, Exact, Measure, MeasureTarget, Smoothed, SmoothedTarget};

#[test]
fn rates_match_cpu_for_variants_a_and_b() {
    check_cases(&[
        (case(Measure, Kl, "torus-uniform", 1, 1), 0.0),
        (case(Measure, Kl, "torus-uniform", 2, 255), 3.0),
        (case(Measure, Chi2, "gaussian", 3, 1000), 2.0),
        (case(Measure, Kl, "torus-gibbs", 5, 4097), 4.0),
        (case(MeasureTarget, Kl, "gaussian", 1, 7), 1.0),
        (case(MeasureTarget, Chi2, "torus-uniform", 8, 255), 2.0),
        (case(MeasureTarget, Kl, "torus-gibbs", 2, 1000), 3.0),
        (Case { epsilon: 0.1, ..case(MeasureTarget, Kl, "torus-uniform", 3, 300) }, 2.0),
    ]);
}

#[test]
fn rates_match_cpu_for_variant_c() {
    check_cases(&[
        (case(Blob, Kl, "torus-uniform", 3, 1000), 30.0),
        (case(Blob, Chi2, "gaussian", 2, 255), 2.0),
        (case(Blob, Kl, "torus-gibbs", 1, 7), 1.0),
        (case(Blob, Kl, "gaussian", 8, 1000), 3.0),
        (Case { epsilon: 0.1, ..case(Blob, Chi2, "torus-uniform", 5, 257) }, 1.0),
    ]);
}

#[test]
fn rates_match_cpu_for_variants_d_and_d_prime() {
    check_cases(&[
        (case(Smoothed, Kl, "gaussian", 1, 255), 3.0),
        (case(Smoothed, Chi2, "torus-uniform", 2, 255), 2.0),
        (case(Smoothed, Kl, "torus-gibbs", 3, 100), 2.0),
        (case(Smoothed, Kl, "gaussian", 8, 129), 2.0),
        (case(SmoothedTarget, Kl, "gaussian", 5, 255), 2.0),
        (case(SmoothedTarget, Chi2, "torus-uniform", 3, 63), 2.0),
        (case(SmoothedTarget, Kl, "torus-gibbs", 2, 1000), 30.0),
        (case(SmoothedTarget, Kl, "torus-uniform", 1, 1), 0.0),
    ]);
}

#[test]
fn rates_match_cpu_for_the_exact_oracle() {
    check_cases(&[
        (case(Exact, Kl, "gaussian", 2, 1000), 3.0),
        (case(Exact, Chi2, "gaussian", 1, 7), 1.0),
        (case(Exact, Kl, "torus-uniform", 1, 255), 2.0),
        (case(Exact, Chi2, "gaussian", 8, 4097), 1.0),
    ]);
}

#[test]
fn rates_match_cpu_with_a_bandwidth_far_below_the_spacing_and_weights_over_30_decades() {
    // ε = 1e-4 against a spacing of ~2e-3: neighbours contribute exp(-200); in f32 a plain sum
    // of exp would give log 0 for the tiny weights.
    check_cases(&[
        (Case { epsilon: 1e-4, ..case(Measure, Kl, "torus-uniform", 1, 1000) }, 30.0),
        (Case { epsilon: 5e-3, ..case(Blob, Kl, "gaussian", 2, 1000) }, 30.0),
        (Case { epsilon: 1e-3, ..case(Smoothed, Kl, "gaussian", 1, 500) }, 30.0),
        (Case { epsilon: 2e-3, ..case(MeasureTarget, Chi2, "gaussian", 3, 1000) }, 30.0),
    ]);
}

#[test]
fn rates_match_cpu_without_divergence_or_without_energy() {
    check_cases(&[
        (Case { sigma: 0.0, ..case(Measure, Kl, "gaussian", 2, 255) }, 2.0),
        (Case { potential: false, ..case(Blob, Kl, "torus-uniform", 2, 255) }, 2.0),
    ]);
}

/// max_i |log w_gpu − log w_cpu|: the largest relative weight difference.
fn log_weight_error(c: &State, g: &State) -> f64 {
    c.log_weights.iter().zip(&g.log_weights).map(|(a, b)| if a == b { 0.0 } else { (a - b).abs() }).fold(0.0, f64::max)
}

/// Runs both engines from the same random state; `chunks` splits the steps into advance calls
/// with an evaluate() between them (as the run loop does), which exercises the cached evaluation.
fn compare_trajectories(case: &Case, stepper: Stepper, steps: u64, chunks: u64, until: Option<f64>) -> (State, State) {
    let ctx = context().expect("checked by the caller");
    let (mut cpu, mut gpu) = engines(&ctx, case, GpuOptions::default());
    let state = random_state(case.n, 2.0, case.seed + 2);
    cpu.set_state(state.clone()).unwrap();
    gpu.set_state(state).unwrap();
    let t = std::time::Instant::now();
    let (mut tc, mut tg) = (0, 0);
    for _ in 0..chunks {
        tc += cpu.advance(steps / chunks, &stepper, until).unwrap();
        tg += gpu.advance(steps / chunks, &stepper, until).unwrap();
        let (dc, dg) = (cpu.evaluate().unwrap(), gpu.evaluate().unwrap());
        assert_eq!(dc.step, dg.step, "{case:?}");
        assert!((dc.time - dg.time).abs() <= 1e-9 * dc.time.abs().max(1.0), "{case:?}: t {} vs {}", dc.time, dg.time);
    }
    assert_eq!(tc, tg, "{case:?}: steps taken");
    let (sc, sg) = (cpu.state().unwrap(), gpu.state().unwrap());
    let err = log_weight_error(&sc, &sg);
    eprintln!(
        "{} {:?} {} d={} N={} {:?}: {} steps to t = {}, max |Δ log w| = {err:.2e} ({:.2}s)",
        case.variant.name(),
        case.divergence,
        case.domain,
        case.dim,
        case.n,
        stepper.scheme,
        sg.step,
        sg.time,
        t.elapsed().as_secs_f64()
    );
    // f32 rounding of ~1e-7 per step in log w, over a few hundred steps, stays far below 1e-3.
    assert!(err < 1e-3, "{case:?}: weights differ by {err:e} in log");
    (sc, sg)
}

#[test]
fn euler_trajectories_of_200_steps_match_cpu() {
    if context().is_none() {
        return;
    }
    let euler = Stepper::new(Scheme::Euler, StepSize::Fixed(0.01)).unwrap();
    compare_trajectories(&case(Measure, Kl, "torus-uniform", 1, 255), euler, 200, 4, None);
    compare_trajectories(&case(MeasureTarget, Chi2, "torus-uniform", 3, 200), euler, 200, 1, None);
    compare_trajectories(&case(Smoothed, Kl, "gaussian", 1, 100), euler, 200, 2, None);
    compare_trajectories(&case(Exact, Kl, "gaussian", 2, 1000), euler, 200, 1, None);
}

/// A variant-A or B Euler step with a potential is four dispatches (issue: small N is bound by
/// dependent launches), whether the kernel sum is split (N = 3000: its chunks are merged inside
/// `summarise`) or not (N = 200), and the split trajectory still matches the CPU's.
#[test]
fn variant_a_and_b_euler_steps_are_four_dispatches() {
    let Some(ctx) = context() else { return };
    for n in [200, 3000] {
        for variant in [Measure, MeasureTarget] {
            let (_, gpu) = engines(&ctx, &case(variant, Kl, "torus-uniform", 2, n), GpuOptions::default());
            assert_eq!(gpu.dispatches_per_step(Scheme::Euler), Some(4), "{variant:?} N = {n}");
            assert_eq!(gpu.dispatches_per_step(Scheme::Exponential), Some(5), "{variant:?} N = {n}");
        }
    }
    let euler = Stepper::new(Scheme::Euler, StepSize::Fixed(0.01)).unwrap();
    compare_trajectories(&case(MeasureTarget, Kl, "torus-uniform", 2, 3000), euler, 12, 3, None);
}

#[test]
fn exponential_trajectories_of_200_steps_match_cpu() {
    if context().is_none() {
        return;
    }
    let exp = Stepper::new(Scheme::Exponential, StepSize::Fixed(0.02)).unwrap();
    compare_trajectories(&case(Blob, Kl, "gaussian", 2, 255), exp, 200, 4, None);
    compare_trajectories(&case(SmoothedTarget, Kl, "torus-gibbs", 1, 100), exp, 200, 1, None);
    compare_trajectories(&case(Exact, Chi2, "gaussian", 1, 300), exp, 200, 2, None);
}

#[test]
fn a_final_time_is_reached_exactly_with_fixed_and_automatic_steps() {
    if context().is_none() {
        return;
    }
    let c = case(Measure, Kl, "gaussian", 1, 255);
    // 0.3 / 0.007 is not an integer: the last fixed step is shortened.
    let fixed = Stepper::new(Scheme::Euler, StepSize::Fixed(0.007)).unwrap();
    let (_, g) = compare_trajectories(&c, fixed, 1000, 1, Some(0.3));
    assert_eq!(g.time, 0.3);
    for scheme in [Scheme::Euler, Scheme::Exponential] {
        let auto = Stepper::new(scheme, StepSize::Auto { safety: 0.5, h_max: 0.05 }).unwrap();
        let (_, g) = compare_trajectories(&c, auto, 1000, 3, Some(0.7));
        assert_eq!(g.time, 0.7);
    }
}

#[test]
fn automatic_steps_over_several_readbacks_track_the_cpu_clock() {
    let Some(ctx) = context() else { return };
    let c = case(Blob, Kl, "gaussian", 2, 200);
    let (model, particles) = c.build();
    let options = GpuOptions { steps_per_submission: 2, steps_per_readback: 5, ..GpuOptions::default() };
    let mut cpu = CpuEngine::new(model.clone(), particles.clone()).unwrap();
    let mut gpu = GpuEngine::with_options(ctx, model, particles, options).unwrap();
    for scheme in [Scheme::Euler, Scheme::Exponential] {
        let auto = Stepper::new(scheme, StepSize::Auto { safety: 0.3, h_max: 0.2 }).unwrap();
        // No final time: 23 steps over five device loops.
        assert_eq!(cpu.advance(23, &auto, None).unwrap(), 23);
        assert_eq!(gpu.advance(23, &auto, None).unwrap(), 23);
        let (tc, tg) = (cpu.state().unwrap().time, gpu.state().unwrap().time);
        // Each h comes from an f32 max rate: the clocks agree to f32 precision.
        assert!((tc - tg).abs() < 1e-5 * tc, "{scheme:?}: t {tc} vs {tg}");
        // With a final time part way through a device loop.
        let until = tc + 0.37;
        let (kc, kg) = (cpu.advance(100, &auto, Some(until)).unwrap(), gpu.advance(100, &auto, Some(until)).unwrap());
        assert_eq!(kc, kg, "{scheme:?}: steps to the final time");
        assert_eq!(gpu.state().unwrap().time, until);
        let err = log_weight_error(&cpu.state().unwrap(), &gpu.state().unwrap());
        assert!(err < 1e-3, "{scheme:?}: {err:e}");
    }
}

#[test]
fn non_finite_rates_are_reported_like_the_cpu() {
    let Some(ctx) = context() else { return };
    let space = Space::new(1, Domain::Euclidean).unwrap();
    let model = ModelSpec {
        space,
        // π = N(0.2, 0.001²): at x = 2, 2·K m / π overflows even f64.
        reference: Reference::Gaussian { mean: vec![0.2], std: 1e-3 },
        divergence: Chi2,
        sigma: 1.0,
        epsilon: 0.3,
        variant: Measure,
        energy: vec![],
        quadrature: QuadratureSpec::default(),
    }
    .build()
    .unwrap();
    let particles = Particles::from_positions(space, vec![2.0, 0.2, 0.2005, -1.0, 0.5]).unwrap();
    let mut cpu = CpuEngine::new(model.clone(), particles.clone()).unwrap();
    let mut gpu = GpuEngine::new(ctx, model, particles).unwrap();
    let stepper = Stepper::new(Scheme::Euler, StepSize::Fixed(0.01)).unwrap();
    for result in [
        cpu.evaluate().map(|_| 0),
        gpu.evaluate().map(|_| 0),
        cpu.advance(3, &stepper, None),
        gpu.advance(3, &stepper, None),
    ] {
        match result {
            Err(Error::NonFinite { step: 0, particle: 0, quantity: "rate", value }) => assert!(!value.is_finite()),
            other => panic!("expected a non-finite rate at particle 0, step 0: {other:?}"),
        }
    }
}

#[test]
fn positivity_violation_names_the_same_step_and_particle_as_cpu() {
    let Some(ctx) = context() else { return };
    let c = Case { sigma: 1.5, ..case(Measure, Kl, "gaussian", 1, 64) };
    let stepper = Stepper::new(Scheme::Euler, StepSize::Fixed(0.3)).unwrap();
    let (mut cpu, mut gpu) = engines(&ctx, &c, GpuOptions::default());
    // Mass in the tails flows inwards and overshoots: h·max a grows from 0.02 to 0.55 over five
    // steps, then jumps to 1.2 at step 5, far from 1 on both sides, so f32 and f64 agree.
    let mut lw: Vec<f64> = cpu.particles().positions.iter().map(|x| 1.5 * (x - 0.5) * (x - 0.5)).collect();
    frflow::stepper::normalise(&mut lw);
    let state = State { log_weights: lw, step: 0, time: 0.0 };
    cpu.set_state(state.clone()).unwrap();
    gpu.set_state(state).unwrap();
    let ec = cpu.advance(100, &stepper, None).unwrap_err();
    let eg = gpu.advance(100, &stepper, None).unwrap_err();
    eprintln!("cpu: {ec}\ngpu: {eg}");
    match (ec, eg) {
        (
            Error::Positivity { step: s1, particle: p1, h_times_rate: r1, h: h1 },
            Error::Positivity { step: s2, particle: p2, h_times_rate: r2, h: h2 },
        ) => {
            assert_eq!(s1, 5, "the case should fail after five good steps");
            assert_eq!((s1, p1), (s2, p2));
            assert!((r1 - r2).abs() < 1e-4 * r1 && (h1 - h2).abs() < 1e-6 * h1);
        }
        other => panic!("expected two positivity errors, got {other:?}"),
    }
    // The weights are those after the last good step, on both.
    let (sc, sg) = (cpu.state().unwrap(), gpu.state().unwrap());
    assert_eq!(sc.step, sg.step);
    assert!(log_weight_error(&sc, &sg) < 1e-4);
    // And the engine can go on with a smaller step.
    let small = Stepper::new(Scheme::Euler, StepSize::Fixed(0.01)).unwrap();
    assert_eq!(gpu.advance(3, &small, None).unwrap(), 3);
}

#[test]
fn checked_and_unchecked_shader_modules_give_the_same_rates() {
    let Some(ctx) = context() else { return };
    for c in [case(Blob, Kl, "torus-uniform", 3, 300), case(Smoothed, Chi2, "gaussian", 2, 100)] {
        let (model, particles) = c.build();
        let state = random_state(c.n, 5.0, 3);
        let mut rates = Vec::new();
        for checked in [false, true] {
            let options = GpuOptions { checked_shaders: checked, ..GpuOptions::default() };
            let mut gpu = GpuEngine::with_options(ctx.clone(), model.clone(), particles.clone(), options).unwrap();
            gpu.set_state(state.clone()).unwrap();
            rates.push(gpu.rates().unwrap());
        }
        // Bounds checks change no arithmetic: the results agree to the last bit or nearly so.
        let err = rate_error(&rates[0], &rates[1]);
        assert!(err < 1e-6, "{c:?}: checked vs unchecked {err:e}");
    }
}

/// Every allowed kernel workgroup size (tile) gives the f64 rates to the usual 1e-4 of max |a|,
/// and `rates_at` a few points (the split-source path) too; sizes the device cannot run are an
/// error naming `workgroup_size`, not a failed pipeline. Awkward N against every tile: 1031.
#[test]
fn every_kernel_workgroup_size_gives_the_same_rates() {
    let Some(ctx) = context() else { return };
    for c in [case(Blob, Kl, "torus-uniform", 2, 1031), case(SmoothedTarget, Chi2, "gaussian", 3, 257)] {
        let state = random_state(c.n, 5.0, 9);
        let points: Vec<f64> = (0..5 * c.dim).map(|k| 0.1 * k as f64).collect();
        let mut cpu = CpuEngine::new(c.build().0, c.build().1).unwrap();
        cpu.set_state(state.clone()).unwrap();
        let (want, want_at) = (cpu.rates().unwrap(), cpu.rates_at(&points).unwrap());
        for wg in [4, 60, 128, 256] {
            let options = GpuOptions { kernel_workgroup: wg, ..GpuOptions::default() };
            let (_, mut gpu) = engines(&ctx, &c, options);
            gpu.set_state(state.clone()).unwrap();
            let err = rate_error(&want, &gpu.rates().unwrap());
            let err_at = rate_error(&want_at, &gpu.rates_at(&points).unwrap());
            assert!(err < 1e-4 && err_at < 1e-4, "{c:?} workgroup {wg}: {err:e}, at points {err_at:e}");
        }
    }
    let (model, particles) = case(Blob, Kl, "torus-uniform", 2, 10).build();
    let too_big = ctx.limits().max_compute_invocations_per_workgroup + 4;
    for wg in [0, 6, too_big] {
        let options = GpuOptions { kernel_workgroup: wg, ..GpuOptions::default() };
        match GpuEngine::with_options(ctx.clone(), model.clone(), particles.clone(), options) {
            Err(Error::Invalid { field, .. }) => assert_eq!(field, "workgroup_size"),
            other => panic!("workgroup {wg}: expected an Invalid error, got {:?}", other.map(|_| ())),
        }
    }
}

/// `GpuOptions::image_exponentials`: the periodic images' exponentials on the FMA pipe (the
/// default) or on the special-function unit give the f64 rates and `rates_at` to the usual 1e-4
/// of max |a|, and the engine names the path it took. Torus kernels with images: ε = 0.3 and 0.6
/// on the torus of side 2 (the farther images too at 0.6); with the images dropped every case
/// is more than 5e-4 off.
#[test]
fn image_exponentials_on_either_unit_give_the_f64_rates() {
    let Some(ctx) = context() else { return };
    let cases = [
        (Case { epsilon: 0.3, ..case(Measure, Kl, "torus-uniform", 3, 300) }, "torus-images"),
        (Case { epsilon: 0.6, ..case(Blob, Chi2, "torus-uniform", 1, 257) }, "torus-images-far"),
        (Case { epsilon: 0.3, ..case(Smoothed, Kl, "torus-gibbs", 2, 100) }, "torus-images"),
    ];
    for (c, fma_path) in cases {
        let state = random_state(c.n, 4.0, 21);
        let points: Vec<f64> = (0..7 * c.dim).map(|k| 2.0 * (0.37 * k as f64).fract()).collect();
        let mut cpu = CpuEngine::new(c.build().0, c.build().1).unwrap();
        cpu.set_state(state.clone()).unwrap();
        let (want, want_at) = (cpu.rates().unwrap(), cpu.rates_at(&points).unwrap());
        for (unit, path) in [(ImageExponentials::Fma, fma_path), (ImageExponentials::Sfu, "torus-images-sfu")] {
            let options = GpuOptions { image_exponentials: unit, ..GpuOptions::default() };
            let (_, mut gpu) = engines(&ctx, &c, options);
            assert_eq!(gpu.kernel_path(), path, "{c:?} {unit:?}");
            gpu.set_state(state.clone()).unwrap();
            let err = rate_error(&want, &gpu.rates().unwrap());
            let err_at = rate_error(&want_at, &gpu.rates_at(&points).unwrap());
            assert!(err < 1e-4 && err_at < 1e-4, "{c:?} {unit:?}: {err:e}, at points {err_at:e}");
        }
    }
}

#[test]
fn a_two_dimensional_grid_gives_the_same_rates_and_steps() {
    let Some(ctx) = context() else { return };
    let c = case(Blob, Kl, "gaussian", 2, 4097);
    let (model, particles) = c.build();
    let stepper = Stepper::new(Scheme::Exponential, StepSize::Fixed(0.05)).unwrap();
    let mut out = Vec::new();
    for limit in [None, Some(3)] {
        let options = GpuOptions { max_workgroups_per_dimension: limit, ..GpuOptions::default() };
        let mut gpu = GpuEngine::with_options(ctx.clone(), model.clone(), particles.clone(), options).unwrap();
        let a = gpu.rates().unwrap();
        gpu.advance(3, &stepper, None).unwrap();
        out.push((a, gpu.state().unwrap()));
    }
    assert_eq!(out[0].0, out[1].0, "rates on a 1-D and a 2-D grid");
    assert_eq!(out[0].1, out[1].1, "weights on a 1-D and a 2-D grid");
}

#[test]
fn a_problem_beyond_the_device_limits_is_too_large() {
    let Some(ctx) = context() else { return };
    let space = Space::new(3, Domain::Euclidean).unwrap();
    let model = ModelSpec {
        space,
        reference: Reference::Gaussian { mean: vec![0.0; 3], std: 1.0 },
        divergence: Kl,
        sigma: 1.0,
        epsilon: 0.5,
        variant: Smoothed,
        energy: vec![],
        quadrature: QuadratureSpec { order: 32, samples: 64, seed: 1 },
    }
    .build()
    .unwrap();
    let limit = ctx.limits().max_storage_buffer_binding_size.min(ctx.limits().max_buffer_size);
    // 32³ nodes of 16 bytes per particle.
    let n = (limit / (32768 * 16) + 1) as usize;
    let particles = Particles::sample(space, &Initial::Gaussian { mean: vec![0.0; 3], std: 1.0 }, n, 1).unwrap();
    match GpuEngine::new(ctx, model, particles) {
        Err(Error::TooLarge { max_n, needed, limit: l, .. }) => {
            assert!(max_n < n as u64 && needed > l, "{max_n} {needed} {l}");
        }
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("N = {n} cannot fit"),
    }
}

#[test]
fn spec_t2_particle_check_matches_cpu() {
    let Some(ctx) = context() else { return };
    // SPEC §7 T2 with variant A: π = N(0, 1), λ = 0, σ = 1, ε = 0.5, μ₀ = N(0.8, 1.5²).
    let space = Space::new(1, Domain::Euclidean).unwrap();
    let model = ModelSpec {
        space,
        reference: Reference::Gaussian { mean: vec![0.0], std: 1.0 },
        divergence: Kl,
        sigma: 1.0,
        epsilon: 0.5,
        variant: Measure,
        energy: vec![],
        quadrature: QuadratureSpec::default(),
    }
    .build()
    .unwrap();
    let particles = Particles::sample(space, &Initial::Gaussian { mean: vec![0.8], std: 1.5 }, 2048, 42).unwrap();
    let mut cpu = CpuEngine::new(model.clone(), particles.clone()).unwrap();
    let mut gpu = GpuEngine::new(ctx, model, particles).unwrap();
    let stepper = Stepper::new(Scheme::Euler, StepSize::Fixed(0.01)).unwrap();
    let t = std::time::Instant::now();
    assert_eq!(gpu.advance(1000, &stepper, Some(2.0)).unwrap(), 200);
    eprintln!("T2 on the GPU: {:.2}s", t.elapsed().as_secs_f64());
    assert_eq!(cpu.advance(1000, &stepper, Some(2.0)).unwrap(), 200);
    let (dc, dg) = (cpu.evaluate().unwrap(), gpu.evaluate().unwrap());
    eprintln!("T2 cpu mean {} var {}; gpu mean {} var {}", dc.mean[0], dc.variance[0], dg.mean[0], dg.variance[0]);
    assert_eq!(dg.time, 2.0);
    assert!((dc.mean[0] - dg.mean[0]).abs() < 1e-4, "{} vs {}", dc.mean[0], dg.mean[0]);
    assert!(
        (dc.variance[0] - dg.variance[0]).abs() < 1e-4 * dc.variance[0],
        "{} vs {}",
        dc.variance[0],
        dg.variance[0]
    );
    let err = log_weight_error(&cpu.state().unwrap(), &gpu.state().unwrap());
    assert!(err < 1e-4, "max |Δ log w| = {err:e}");
}

#[test]
fn log_kernel_sum_matches_its_cpu_twin_at_awkward_sizes() {
    use frflow::model::Gaussian;
    let Some(ctx) = context() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    // (targets, sources, d, domain, ε, decades of the coefficients); targets = None: the N × N
    // sum with targets = sources.
    // The paper's setting (torus, ε = 0.1, d = 3) takes the nearer images with exp2_fma at degree 3.
    let cases: [(Option<usize>, usize, usize, Domain, f64, f64); 9] = [
        (None, 1000, 3, Domain::Torus { side: 1.0 }, 0.1, 30.0),
        (None, 1, 1, Domain::Euclidean, 0.5, 0.0),
        (Some(7), 255, 2, Domain::Torus { side: 1.0 }, 0.2, 5.0),
        (Some(255), 7, 3, Domain::Euclidean, 0.1, 30.0),
        (None, 1000, 5, Domain::Torus { side: 3.0 }, 0.4, 30.0),
        (Some(1000), 129, 8, Domain::Euclidean, 1.0, 2.0),
        (None, 4097, 1, Domain::Torus { side: 1.0 }, 1e-4, 30.0),
        (Some(300), 4097, 3, Domain::Euclidean, 1e-3, 10.0),
        (Some(129), 1000, 4, Domain::Torus { side: 2.0 }, 0.9, 3.0),
    ];
    for (nt, ns, d, domain, eps, decades) in cases {
        let space = Space::new(d, domain).unwrap();
        let kernel = Gaussian::new(&space, eps, true, "epsilon").unwrap();
        let draw = |n: usize, rng: &mut ChaCha8Rng| -> Vec<f64> {
            (0..n * d)
                .map(|_| match domain {
                    Domain::Torus { side } => side * rng.random::<f64>(),
                    Domain::Euclidean => 3.0 * (rng.random::<f64>() - 0.5),
                })
                .collect()
        };
        let sources = draw(ns, &mut rng);
        let coeffs: Vec<f64> = (0..ns).map(|_| -decades * std::f64::consts::LN_10 * rng.random::<f64>()).collect();
        let targets = nt.map(|n| draw(n, &mut rng));
        let t = targets.as_deref().unwrap_or(&sources);
        let cpu = frflow::engine::cpu::log_kernel_sum(&space, &kernel, t, &sources, &coeffs);
        let gpu = frflow::engine::gpu::log_kernel_sum(&ctx, &space, &kernel, t, &sources, &coeffs).unwrap();
        // f32: the result's magnitude times a few ulps, plus the rounding of O(100) exponents
        // (~1e-7). The worst case is L/ε = 1e4, where the 32-bit fixed-point positions (steps of
        // 2.3e-10 L) put ~1e-5 into |x − y|²/2ε² for neighbours a few ε apart: ~6e-6 here.
        let err = cpu.iter().zip(&gpu).map(|(a, b)| (a - b).abs() / (1.0 + a.abs())).fold(0.0, f64::max);
        eprintln!("log_kernel_sum {:?}×{ns} d={d} {domain:?} eps={eps} images={}: {err:.2e}", nt, kernel.images);
        assert!(err < 1e-5, "{nt:?}×{ns} d={d} {domain:?} eps={eps}: {err:e}");
        assert!(gpu.iter().all(|v| v.is_finite()));
    }
}

/// The kernel sum checks its log-domain shift once per tile and redoes a tile whose sums
/// overflowed (kernel_pair.wgsl, `sum_tile`): a few sources 2^400 heavier than all others, in the
/// first tile, the last, or a middle one, must give the CPU's sums, for targets with and without
/// a self term, and a tile of near-overflowing sums must move into the shift without a loss.
#[test]
fn log_kernel_sum_redoes_a_tile_with_a_heavy_late_source() {
    use frflow::model::Gaussian;
    let Some(ctx) = context() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for (domain, eps) in [(Domain::Euclidean, 0.3), (Domain::Torus { side: 1.0 }, 0.1)] {
        let space = Space::new(2, domain).unwrap();
        let kernel = Gaussian::new(&space, eps, true, "epsilon").unwrap();
        let ns = 700;
        let sources: Vec<f64> = (0..ns * 2).map(|_| rng.random::<f64>()).collect();
        for heavy in [0, 350, ns - 1] {
            // Light sources at log 1e-120, a heavy one, and a band of 2^45 heavier ones after it
            // (their sum exceeds 2^40 against the light shift).
            let mut coeffs: Vec<f64> = (0..ns).map(|_| -120.0 * std::f64::consts::LN_10).collect();
            coeffs[heavy] = 0.0;
            for c in coeffs.iter_mut().skip(heavy.min(ns - 60)).take(50) {
                *c = c.max(-245.0);
            }
            let targets: Vec<f64> = (0..31 * 2).map(|_| rng.random::<f64>()).collect();
            for t in [&sources, &targets] {
                let cpu = frflow::engine::cpu::log_kernel_sum(&space, &kernel, t, &sources, &coeffs);
                let gpu = frflow::engine::gpu::log_kernel_sum(&ctx, &space, &kernel, t, &sources, &coeffs).unwrap();
                let err = cpu.iter().zip(&gpu).map(|(a, b)| (a - b).abs() / (1.0 + a.abs())).fold(0.0, f64::max);
                assert!(err < 1e-5, "{domain:?} heavy source {heavy}, {} targets: {err:e}", t.len() / 2);
                assert!(gpu.iter().all(|v| v.is_finite()));
            }
        }
    }
}

#[test]
fn adapters_are_chosen_by_kind_index_or_name_and_unknown_names_are_errors() {
    let Some(ctx) = context() else { return };
    let list = frflow::engine::gpu::list_adapters();
    assert!(!list.is_empty());
    assert_eq!(
        frflow::engine::gpu::hardware_adapter_available(),
        list.iter().any(|a| a.device_type != "cpu"),
        "{list:?}"
    );
    // `auto` takes the GPU engine exactly when a hardware adapter exists.
    let auto = frflow::config::EngineChoice::Auto.resolve();
    assert_eq!(auto == frflow::config::EngineChoice::Gpu, frflow::engine::gpu::hardware_adapter_available());
    let name = &ctx.adapter_info().name;
    let index = list.iter().find(|a| &a.name == name).expect("the open adapter is listed").index;
    let by_index = GpuContext::new(Some(&index.to_string())).unwrap();
    assert_eq!(&by_index.adapter_info().name, name);
    if ctx.is_software() {
        assert!(GpuContext::new(Some("software")).unwrap().is_software());
    }
    match GpuContext::new(Some("no-such-adapter-xyz")) {
        Err(Error::Gpu { message: m, .. }) => {
            assert!(m.contains("no-such-adapter-xyz") && m.contains(name.as_str()), "{m}")
        }
        other => panic!("expected Error::Gpu, got {other:?}"),
    }
}

/// A wgpu error reported outside frflow's error scopes (here an invalid buffer that the test
/// makes on the device itself) fails the next frflow call with Error::Gpu, whose `source()` is
/// the wgpu error.
#[test]
fn a_wgpu_error_is_the_source_of_error_gpu() {
    let Some(ctx) = context() else { return };
    // A device of its own: the error poisons the context it happens on.
    let name = &ctx.adapter_info().name;
    let index = frflow::engine::gpu::list_adapters().into_iter().find(|a| &a.name == name).unwrap().index;
    let own = GpuContext::new(Some(&index.to_string())).unwrap();
    // Mapping for reading and for writing at once needs a feature frflow never requests.
    let _invalid = own.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("invalid"),
        size: 16,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::MAP_WRITE,
        mapped_at_creation: false,
    });
    let (model, particles) = case(Measure, Kl, "gaussian", 2, 10).build();
    match GpuEngine::new(own, model, particles) {
        Err(e @ Error::Gpu { .. }) => {
            let source = std::error::Error::source(&e).expect("the wgpu error as the source");
            assert!(format!("{source:?}").contains("Validation"), "{source:?}");
            assert!(e.to_string().contains(&source.to_string()), "{e} / {source}");
        }
        other => panic!("expected Error::Gpu, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn a_host_owned_device_can_be_wrapped() {
    let Some(ctx) = context() else { return };
    // The host application's device: here simply the test context's, wrapped again.
    let host = GpuContext::from_device(ctx.device().clone(), ctx.queue().clone(), ctx.adapter_info().clone());
    let c = case(Measure, Kl, "gaussian", 2, 100);
    let (model, particles) = c.build();
    let mut cpu = CpuEngine::new(model.clone(), particles.clone()).unwrap();
    let mut gpu = GpuEngine::new(host, model, particles).unwrap();
    assert!(rate_error(&cpu.rates().unwrap(), &gpu.rates().unwrap()) < 1e-4);
}

#[test]
fn rates_match_cpu_for_measure_variant_on_the_torus() {
    let Some(ctx) = context() else { return };
    let case = Case::new(Variant::Measure, Divergence::Kl, "torus-uniform", 2, 255);
    let err = compare_rates(&ctx, &case, 3.0);
    assert!(err < 1e-4, "{case:?}: relative rate error {err:e}");
}

/// The bench hook's device time (timestamp queries, where the adapter offers them) is positive,
/// no longer than the wall clock around the call, and the pair rate is computed from it.
#[test]
fn kernel_bench_device_time_is_within_the_wall_clock() {
    let Some(ctx) = context() else { return };
    let start = std::time::Instant::now();
    let b = frflow::engine::gpu::bench_log_kernel_sum(&ctx, KernelPath::TorusImages, 3, 1000, 4, false, None).unwrap();
    assert_eq!(b.path, "torus-images");
    let wall = start.elapsed().as_secs_f64();
    assert!(b.seconds > 0.0 && b.seconds <= wall, "{} s against {wall} s of wall clock", b.seconds);
    assert_eq!(b.device_seconds.is_some(), ctx.has_timestamps());
    let expected = 1e6 * 4.0 / b.seconds;
    assert!((b.pairs_per_second - expected).abs() <= 1e-9 * expected);
}

/// The kernel pass at another workgroup size computes the same sums; a size the shader cannot use
/// is refused by name.
#[test]
fn kernel_bench_accepts_workgroup_sizes_and_refuses_bad_ones() {
    let Some(ctx) = context() else { return };
    for wg in [64, 256] {
        let b = frflow::engine::gpu::bench_log_kernel_sum(&ctx, KernelPath::EuclideanFixed, 3, 777, 1, false, Some(wg))
            .unwrap();
        assert!(b.pairs_per_second > 0.0);
    }
    let err = frflow::engine::gpu::bench_log_kernel_sum(&ctx, KernelPath::TorusF32, 3, 777, 1, false, Some(30))
        .unwrap_err()
        .to_string();
    assert!(err.contains("workgroup_size") && err.contains("30"), "{err}");
}

/// Every benchmark path is the specialisation it is named after (the bench reports the path the
/// shader was built for, so a geometry that drifted into another path would show here).
#[test]
fn kernel_bench_paths_are_what_they_claim() {
    let Some(ctx) = context() else { return };
    for path in KernelPath::ALL {
        for d in [1, 3] {
            let b = frflow::engine::gpu::bench_log_kernel_sum(&ctx, path, d, 300, 1, false, None).unwrap();
            assert_eq!(b.path, path.name(), "{path:?} d = {d}");
        }
    }
}

/// The yardstick computes what it claims: the minimal kernel against its f64 twin at awkward
/// sizes (one point, a non-multiple of the workgroup, more than one tile) and dimensions (one
/// vec4, two vec4s with the weight alone in the second). f32 sums of at most ~4000 terms in
/// (0, 1]: relative error a few 1e-7 plus the rounding of |x − y|² (≤ 1e-6 at |x − y|² ≤ 20).
#[test]
fn minimal_kernel_sum_matches_its_cpu_twin() {
    let Some(ctx) = context() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for (n, d) in [(1, 1), (7, 3), (255, 4), (1000, 2), (4097, 3), (129, 8)] {
        let points: Vec<f64> = (0..n * d).map(|_| 4.0 * rng.random::<f64>() - 2.0).collect();
        let weights: Vec<f64> = (0..n).map(|_| rng.random::<f64>()).collect();
        let cpu = frflow::engine::cpu::minimal_kernel_sum(&points, &weights, d);
        let gpu = frflow::engine::gpu::minimal_kernel_sum(&ctx, &points, &weights, d).unwrap();
        let err = cpu.iter().zip(&gpu).map(|(a, b)| (a - b).abs() / a.abs().max(1e-30)).fold(0.0, f64::max);
        eprintln!("minimal_kernel_sum n={n} d={d}: {err:.2e}");
        assert!(err < 5e-6, "n = {n}, d = {d}: relative error {err:e}");
    }
}

/// `frflow bench` on the GPU engine names the path of every kernel pass and step and gives each
/// its ratio to the minimal kernel measured in the same run: the acceptance command of the
/// kernel-at-the-limit issue, at a small N. (Speed itself is not asserted.)
#[test]
fn bench_reports_paths_and_ratios_to_the_minimal_kernel() {
    if context().is_none() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("frflow-gpu-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("bench.json");
    let device = std::env::var("FRFLOW_DEVICE").unwrap_or_else(|_| "llvmpipe".into());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_frflow"))
        .args(["bench", "--engine", "gpu", "--device", &device, "--n", "61", "--d", "3", "--repeats", "1"])
        .args(["--min-batch-seconds", "0.01", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("vs minimal") && stdout.contains("torus-images"), "{stdout}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let rows = report["rows"].as_array().unwrap();
    let kinds: Vec<(&str, &str, Option<&str>)> = rows
        .iter()
        .map(|r| (r["kind"].as_str().unwrap(), r["kernel_path"].as_str().unwrap(), r["variant"].as_str()))
        .collect();
    assert_eq!(kinds[0], ("minimal", "minimal", None));
    assert_eq!(rows[0]["ratio_to_minimal"].as_f64(), Some(1.0));
    let kernel_paths: Vec<&str> = kinds.iter().filter(|k| k.0 == "kernel").map(|k| k.1).collect();
    assert_eq!(
        kernel_paths,
        [
            "euclidean-f32",
            "euclidean-fixed",
            "torus-f32",
            "torus-fixed",
            "torus-images",
            "torus-images-far",
            "torus-images-sfu"
        ]
    );
    let steps: Vec<(&str, Option<&str>)> = kinds.iter().filter(|k| k.0 == "step").map(|k| (k.1, k.2)).collect();
    assert_eq!(
        steps,
        [
            ("torus-images", Some("A")),
            ("torus-images", Some("B")),
            ("torus-images", Some("C")),
            ("torus-images", Some("D"))
        ]
    );
    for r in rows {
        let ratio = r["ratio_to_minimal"].as_f64().unwrap_or(f64::NAN);
        assert!(ratio.is_finite() && ratio > 0.0, "{r}");
        if r["kind"] == "step" && (r["variant"] == "A" || r["variant"] == "B") {
            assert_eq!(r["dispatches_per_step"].as_u64(), Some(4), "{r}");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A host application's own device (`GpuContext::from_device`): opened with wgpu's default
/// limits (8 storage buffers per stage) the engine refuses it up front, naming the limit and
/// `required_limits`; opened with `GpuContext::required_limits` it runs, and the log-weights copied
/// on the device into the application's own buffer equal the engine's state.
#[test]
fn host_device_gets_named_limits_and_copies_the_weights_on_the_device() {
    if context().is_none() {
        return;
    }
    use frflow::wgpu;
    let selector = std::env::var("FRFLOW_DEVICE").unwrap_or_else(|_| "llvmpipe".into());
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = wgpu::Backends::PRIMARY;
    let instance = wgpu::Instance::new(desc);
    let adapter = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
        .into_iter()
        .find(|a| a.get_info().name.to_lowercase().contains(&selector.to_lowercase()))
        .expect("the test adapter");
    let case = Case::new(Variant::Smoothed, Divergence::Kl, "torus-uniform", 2, 77);
    let (model, particles) = case.build();
    let open = |limits: wgpu::Limits| {
        let desc = wgpu::DeviceDescriptor { required_limits: limits, ..Default::default() };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc)).unwrap();
        GpuContext::from_device(device, queue, adapter.get_info())
    };
    let small = open(wgpu::Limits::downlevel_defaults());
    let Err(err) = GpuEngine::new(small, model.clone(), particles.clone()) else {
        panic!("a device with 4 storage buffers per stage was accepted")
    };
    let err = err.to_string();
    assert!(err.contains("max_storage_buffers_per_shader_stage") && err.contains("required_limits"), "{err}");

    let ctx = open(GpuContext::required_limits(&model, particles.len()));
    let mut engine = GpuEngine::new(ctx.clone(), model, particles).unwrap();
    let stepper = Stepper::new(Scheme::Exponential, StepSize::Fixed(0.05)).unwrap();
    engine.advance(7, &stepper, None).unwrap();
    let n = engine.len();
    let mine = ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("host"),
        size: 4 * n as u64 + 16,
        usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
        mapped_at_creation: false,
    });
    let mut encoder = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
    engine.copy_log_weights(&mut encoder, &mine, 16).unwrap();
    ctx.queue().submit([encoder.finish()]);
    let slice = mine.slice(16..);
    slice.map_async(wgpu::MapMode::Read, |r| r.unwrap());
    ctx.device().poll(wgpu::PollType::wait_indefinitely()).unwrap();
    let copied: Vec<f32> = bytemuck::pod_collect_to_vec(&slice.get_mapped_range().unwrap());
    let state = engine.state().unwrap().log_weights;
    assert_eq!(copied.len(), n);
    for (a, b) in copied.iter().zip(&state) {
        assert_eq!(f64::from(*a), *b);
    }
}

/// Running ahead (the next device loop submitted before the last is read back) never changes a
/// number: the run loop's pattern of advance and evaluate, with states read while the device is
/// ahead, rates that pull it back, and a change of request, gives the same bits, steps and times
/// with and without it, for fixed and automatic h, with and without a final time.
#[test]
fn running_ahead_changes_no_number() {
    let Some(ctx) = context() else { return };
    let c = case(MeasureTarget, Kl, "torus-uniform", 2, 300);
    let steppers = [
        Stepper::new(Scheme::Euler, StepSize::Fixed(0.01)).unwrap(),
        Stepper::new(Scheme::Euler, StepSize::Auto { safety: 0.5, h_max: 0.05 }).unwrap(),
        Stepper::new(Scheme::Exponential, StepSize::Fixed(0.02)).unwrap(),
    ];
    for stepper in steppers {
        for until in [None, Some(0.37)] {
            let make = |run_ahead| engines(&ctx, &c, GpuOptions { run_ahead, ..GpuOptions::default() }).1;
            let (mut sync, mut ahead) = (make(false), make(true));
            let state = random_state(c.n, 2.0, 11);
            sync.set_state(state.clone()).unwrap();
            ahead.set_state(state).unwrap();
            for i in 0..14 {
                let steps = if i == 9 { 3 } else { 5 };
                let k = sync.advance(steps, &stepper, until).unwrap();
                assert_eq!(ahead.advance(steps, &stepper, until).unwrap(), k, "{stepper:?} {until:?} call {i}");
                assert_eq!(sync.evaluate().unwrap(), ahead.evaluate().unwrap(), "{stepper:?} {until:?} call {i}");
                // Ahead from the second call of a request with nothing else in between.
                if until.is_none() {
                    assert_eq!(ahead.running_ahead(), ![0, 7, 9, 10].contains(&i), "{stepper:?} call {i}");
                }
                assert!(!sync.running_ahead());
                if i % 4 == 3 {
                    assert_eq!(sync.state().unwrap(), ahead.state().unwrap(), "{stepper:?} {until:?} call {i}");
                }
                if i == 6 {
                    assert_eq!(sync.rates().unwrap(), ahead.rates().unwrap(), "{stepper:?} {until:?} call {i}");
                }
            }
            assert_eq!(sync.state().unwrap(), ahead.state().unwrap(), "{stepper:?} {until:?}");
        }
    }
}

/// A step that fails while the device runs ahead is reported at the same step and particle as
/// without running ahead, and leaves the same weights.
#[test]
fn a_failure_while_running_ahead_is_reported_like_a_synchronous_one() {
    let Some(ctx) = context() else { return };
    let c = Case { sigma: 1.5, ..case(Measure, Kl, "gaussian", 1, 64) };
    let stepper = Stepper::new(Scheme::Euler, StepSize::Fixed(0.3)).unwrap();
    let mut results = Vec::new();
    for run_ahead in [false, true] {
        let (cpu, mut gpu) = engines(&ctx, &c, GpuOptions { run_ahead, ..GpuOptions::default() });
        // The positivity case above: the sixth step fails; one step per call, as a run loop with
        // `every = 1` advances.
        let mut lw: Vec<f64> = cpu.particles().positions.iter().map(|x| 1.5 * (x - 0.5) * (x - 0.5)).collect();
        frflow::stepper::normalise(&mut lw);
        gpu.set_state(State { log_weights: lw, step: 0, time: 0.0 }).unwrap();
        let error = (0..20).find_map(|_| gpu.advance(1, &stepper, None).and_then(|_| gpu.evaluate()).err());
        results.push((format!("{error:?}"), gpu.state().unwrap()));
    }
    assert!(results[0].0.contains("Positivity { step: 5"), "{}", results[0].0);
    assert_eq!(results[0], results[1]);
}
