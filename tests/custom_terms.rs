//! The user's own terms of F beyond a potential, on both engines: a pairwise interaction with a
//! user kernel W (WGSL for the GPU, a Rust twin for the CPU) and a whole term implementing
//! `EnergyTerm` (evaluated on the host). Each is checked against the built-in Gaussian
//! interaction it is written to equal, and the GPU against the CPU.
//!
//! Tolerances: CPU against CPU, both f64, differ only in summation order (1e-10 of max |a|). GPU
//! against CPU: f32 pair sums over N ≤ 700 terms of O(1) values carry ~1e-6 relative error, so
//! 1e-4 of max |a| as in tests/gpu_engine.rs.

mod common;

use common::context;
use frflow::Error;
use frflow::energy::Interaction;
use frflow::engine::Engine;
use frflow::engine::cpu::CpuEngine;
use frflow::engine::gpu::GpuEngine;
use frflow::flow::{RunOptions, run};
use frflow::model::{
    CustomTerm, Divergence, Domain, Energy, EnergyTerm, Model, ModelSpec, PairKernel, Potential, QuadratureSpec,
    Reference, Space, Variant,
};
use frflow::particles::{Initial, Particles, State};
use frflow::stepper::{Scheme, StepSize, Stepper};
use rand::{Rng, SeedableRng};

const STRENGTH: f64 = 0.8;
const WIDTH: f64 = 0.3;

fn model(space: Space, energy: Vec<Energy>) -> Model {
    ModelSpec {
        space,
        reference: Reference::Uniform,
        divergence: Divergence::Kl,
        sigma: 0.5,
        epsilon: 0.2,
        variant: Variant::MeasureTarget,
        energy,
        quadrature: QuadratureSpec::default(),
    }
    .build()
    .unwrap()
}

fn torus(d: usize) -> Space {
    Space::new(d, Domain::Torus { side: 2.0 }).unwrap()
}

fn particles(space: Space, n: usize) -> Particles {
    Particles::sample(space, &Initial::Uniform { low: 0.0, high: 2.0 }, n, 3).unwrap()
}

/// The built-in interaction's W on the torus of side 2, periodised as the built-in kernel is at
/// this width: per coordinate the minimum image r and its two neighbours r ± L (the next ones
/// are e^−50 down).
fn gaussian_w(x: &[f64], y: &[f64]) -> f64 {
    let c = 0.5 / (WIDTH * WIDTH);
    let per_coordinate = |a: &f64, b: &f64| {
        let r = (a - b) - 2.0 * ((a - b) / 2.0).round();
        [-2.0, 0.0, 2.0].iter().map(|n| (-(r + n) * (r + n) * c).exp()).sum::<f64>()
    };
    STRENGTH * x.iter().zip(y).map(|(a, b)| per_coordinate(a, b)).product::<f64>()
}

/// The same W as a pair kernel: WGSL using `SIDE`, and its Rust twin.
fn gaussian_pair() -> PairKernel {
    let wgsl = format!(
        "fn pair_kernel(x: array<f32, D>, y: array<f32, D>) -> f32 {{
            var w = {STRENGTH:?};
            for (var k = 0u; k < D; k++) {{
                let r = (x[k] - y[k]) - SIDE * round((x[k] - y[k]) / SIDE);
                var s = 0.0;
                for (var n = -1.0; n <= 1.0; n += 1.0) {{
                    s += exp(-(r + n * SIDE) * (r + n * SIDE) * {:?});
                }}
                w *= s;
            }}
            return w;
        }}",
        0.5 / (WIDTH * WIDTH)
    );
    PairKernel::new("gaussian pair", wgsl, gaussian_w)
}

/// ½ ∬ W dm dm with the Gaussian W, as a whole term evaluated on the host.
struct HostInteraction;

impl EnergyTerm for HostInteraction {
    fn name(&self) -> &str {
        "host interaction"
    }

    fn evaluate(&self, positions: &[f64], weights: &[f64], targets: &[f64]) -> frflow::Result<(f64, Vec<f64>)> {
        let d = positions.len() / weights.len();
        let at = |t: &[f64]| positions.chunks(d).zip(weights).map(|(x, w)| w * gaussian_w(t, x)).sum::<f64>();
        let f = 0.5 * positions.chunks(d).zip(weights).map(|(x, w)| w * at(x)).sum::<f64>();
        Ok((f, targets.chunks(d).map(at).collect()))
    }
}

fn builtin() -> Energy {
    Energy::Interaction(Interaction { strength: STRENGTH, width: WIDTH })
}

fn random_state(n: usize, seed: u64) -> State {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut lw: Vec<f64> = (0..n).map(|_| rng.random_range(-3.0..0.0)).collect();
    frflow::stepper::normalise(&mut lw);
    State { log_weights: lw, step: 0, time: 0.0 }
}

/// max |a − b| / max |a|.
fn error(a: &[f64], b: &[f64]) -> f64 {
    let scale = a.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max) / scale
}

/// Rates, F and rates at other points of `energy` on an engine, from a random state.
fn evaluate(engine: &mut dyn Engine, points: &[f64]) -> (Vec<f64>, f64, Vec<f64>) {
    engine.set_state(random_state(engine.len(), 5)).unwrap();
    let d = engine.evaluate().unwrap();
    (engine.rates().unwrap(), d.f_energy, engine.rates_at(points).unwrap())
}

#[test]
fn user_terms_equal_the_builtin_interaction_on_the_cpu() {
    for (d, n) in [(1, 301), (2, 517)] {
        let space = torus(d);
        let p = particles(space, n);
        let points: Vec<f64> = (0..7 * d).map(|k| (k as f64 * 0.37) % 2.0).collect();
        let mut reference = CpuEngine::new(model(space, vec![builtin()]), p.clone()).unwrap();
        let (a, f, at) = evaluate(&mut reference, &points);
        for user in [Energy::Pair(gaussian_pair()), Energy::Custom(CustomTerm::new(HostInteraction))] {
            let mut e = CpuEngine::new(model(space, vec![user.clone()]), p.clone()).unwrap();
            let (b, g, bt) = evaluate(&mut e, &points);
            assert!(error(&a, &b) < 1e-10, "{user:?} d = {d}: rates {:e}", error(&a, &b));
            assert!((f - g).abs() < 1e-10 * f.abs(), "{user:?} d = {d}: F {f} vs {g}");
            assert!(error(&at, &bt) < 1e-10, "{user:?} d = {d}: rates_at {:e}", error(&at, &bt));
        }
    }
}

#[test]
fn user_terms_on_the_gpu_match_the_cpu() {
    let Some(ctx) = context() else { return };
    for (d, n) in [(1, 301), (3, 700)] {
        let space = torus(d);
        let p = particles(space, n);
        let points: Vec<f64> = (0..5 * d).map(|k| (k as f64 * 0.61) % 2.0).collect();
        for user in [Energy::Pair(gaussian_pair()), Energy::Custom(CustomTerm::new(HostInteraction))] {
            let m = model(space, vec![Energy::Potential(Potential::Cosine { amplitude: 0.3, frequency: 1 }), user]);
            let mut cpu = CpuEngine::new(m.clone(), p.clone()).unwrap();
            let mut gpu = GpuEngine::new(ctx.clone(), m.clone(), p.clone()).unwrap();
            let (a, f, at) = evaluate(&mut cpu, &points);
            let (b, g, bt) = evaluate(&mut gpu, &points);
            let name = gpu.name();
            assert_eq!(
                name.contains("on the host each step: host interaction"),
                matches!(m.energy[1], Energy::Custom(_))
            );
            assert!(error(&a, &b) < 1e-4, "{name} d = {d}: rates {:e}", error(&a, &b));
            assert!((f - g).abs() < 1e-4 * f.abs().max(1.0), "{name} d = {d}: F {f} vs {g}");
            assert!(error(&at, &bt) < 1e-4, "{name} d = {d}: rates_at {:e}", error(&at, &bt));
        }
    }
}

/// A run through `flow::run` with each user term: the GPU's weights follow the CPU's.
#[test]
fn runs_with_user_terms_follow_the_cpu() {
    let Some(ctx) = context() else { return };
    let space = torus(2);
    let p = particles(space, 400);
    let options = RunOptions {
        stepper: Stepper::new(Scheme::Euler, StepSize::Fixed(0.05)).unwrap(),
        max_steps: Some(30),
        final_time: None,
        tolerance: None,
        every: 10,
    };
    for user in [Energy::Pair(gaussian_pair()), Energy::Custom(CustomTerm::new(HostInteraction))] {
        let m = model(space, vec![user]);
        let mut cpu = CpuEngine::new(m.clone(), p.clone()).unwrap();
        let mut gpu = GpuEngine::new(ctx.clone(), m, p.clone()).unwrap();
        let sc = run(&mut cpu, &options, &mut [], None).unwrap();
        let sg = run(&mut gpu, &options, &mut [], None).unwrap();
        assert_eq!(sc.diagnostics.step, sg.diagnostics.step);
        let (lc, lg) = (cpu.state().unwrap().log_weights, gpu.state().unwrap().log_weights);
        let err = lc.iter().zip(&lg).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        // f32 rounding of ~1e-7 per step in log w over 30 steps.
        assert!(err < 1e-4, "{}: log-weights differ by {err:e}", gpu.name());
    }
}

/// A WGSL function that does not compute its twin's W, and one that does not compile, are
/// errors naming the term when the GPU engine is built.
#[test]
fn a_pair_kernel_whose_wgsl_disagrees_with_its_twin_is_refused() {
    let Some(ctx) = context() else { return };
    let space = torus(2);
    let p = particles(space, 64);
    let wrong = PairKernel::new(
        "off by a factor",
        "fn pair_kernel(x: array<f32, D>, y: array<f32, D>) -> f32 { return 1.1 * exp(-abs(x[0] - y[0])); }",
        |x: &[f64], y: &[f64]| (-(x[0] - y[0]).abs()).exp(),
    );
    let broken = PairKernel::new("broken", "fn pair_kernel(x: f32) -> f32 { return x; }", |_: &[f64], _: &[f64]| 0.0);
    for (kernel, says) in [(wrong, "off by a factor"), (broken, "broken")] {
        let m = model(space, vec![Energy::Pair(kernel)]);
        match GpuEngine::new(ctx.clone(), m, p.clone()) {
            Err(Error::Invalid { field, value, .. }) => {
                assert!(field.contains(says), "{field}: {value}");
            }
            Err(other) => panic!("expected an invalid pair kernel, got {other}"),
            Ok(_) => panic!("a pair kernel whose WGSL disagrees with its twin was accepted"),
        }
    }
}

/// A whole term returning the wrong number of values, or a non-finite one, is a named error on
/// both engines.
#[test]
fn a_whole_term_with_bad_values_is_a_named_error() {
    struct Bad(usize);
    impl EnergyTerm for Bad {
        fn name(&self) -> &str {
            "bad term"
        }
        fn evaluate(&self, _: &[f64], _: &[f64], targets: &[f64]) -> frflow::Result<(f64, Vec<f64>)> {
            let mut v = vec![0.5; targets.len() / 2 - self.0];
            if self.0 == 0 {
                v[3] = f64::NAN;
            }
            Ok((0.0, v))
        }
    }
    let space = torus(2);
    let p = particles(space, 50);
    for (bad, says) in [(Bad(1), "one per target (50)"), (Bad(0), "δF/δm at target 3")] {
        let m = model(space, vec![Energy::Custom(CustomTerm::new(bad))]);
        let mut engines: Vec<Box<dyn Engine>> = vec![Box::new(CpuEngine::new(m.clone(), p.clone()).unwrap())];
        if let Some(ctx) = context() {
            engines.push(Box::new(GpuEngine::new(ctx, m, p.clone()).unwrap()));
        }
        for mut e in engines {
            let err = e.evaluate().unwrap_err().to_string();
            assert!(err.contains("bad term") && err.contains(says), "{}: {err}", e.name());
        }
    }
}
