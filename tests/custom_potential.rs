//! The user's own potential U(x), from a Rust closure or a formula, on both engines: it must
//! give exactly the trajectory of the equal built-in potential, and a U that is not finite at a
//! particle is a named error.

mod common;

use common::context;
use frflow::engine::Engine;
use frflow::engine::cpu::CpuEngine;
use frflow::engine::gpu::GpuEngine;
use frflow::flow::{RunOptions, run};
use frflow::model::{
    CustomPotential, Divergence, Domain, Energy, Model, ModelSpec, Potential, QuadratureSpec, Reference, Space, Variant,
};
use frflow::particles::{Initial, Particles};
use frflow::stepper::{Scheme, StepSize, Stepper};

fn model(space: Space, variant: Variant, u: Potential) -> Model {
    ModelSpec {
        space,
        reference: Reference::Gaussian { mean: vec![0.0; space.dim], std: 1.0 },
        divergence: Divergence::Kl,
        sigma: 0.7,
        epsilon: 0.3,
        variant,
        energy: vec![Energy::Potential(u)],
        quadrature: QuadratureSpec { order: 3, ..Default::default() },
    }
    .build()
    .unwrap()
}

fn particles(space: Space, n: usize) -> Particles {
    Particles::sample(space, &Initial::Gaussian { mean: vec![0.3; space.dim], std: 1.2 }, n, 11).unwrap()
}

fn quadratic(d: usize) -> Potential {
    Potential::Quadratic { strength: 2.0, center: (0..d).map(|k| 0.5 - 0.25 * k as f64).collect() }
}

/// U(x) = |x − b|² (strength 2, so U = λ/2 |x − b|²) written as a closure.
fn closure(d: usize) -> Potential {
    let b: Vec<f64> = (0..d).map(|k| 0.5 - 0.25 * k as f64).collect();
    Potential::Custom(CustomPotential::new("closure quadratic", move |x: &[f64]| {
        x.iter().zip(&b).map(|(a, c)| (a - c) * (a - c)).sum()
    }))
}

fn run_cpu(model: Model, particles: Particles, steps: u64) -> Vec<f64> {
    let mut e = CpuEngine::new(model, particles).unwrap();
    let options = RunOptions {
        stepper: Stepper::new(Scheme::Euler, StepSize::Fixed(0.01)).unwrap(),
        max_steps: Some(steps),
        final_time: None,
        tolerance: None,
        every: 5,
    };
    run(&mut e, &options, &mut [], None).unwrap();
    e.state().unwrap().log_weights
}

/// Through `flow::run`, a closure potential gives the built-in quadratic's trajectory to 1e-12
/// (the two differ only in the rounding of |x − b|², ~1e-16 relative) on the CPU engine, for a
/// variant on the particles (A) and one with quadrature nodes (D).
#[test]
fn closure_potential_gives_the_builtin_trajectory_on_the_cpu() {
    for (d, variant) in [(1, Variant::Measure), (2, Variant::Smoothed), (3, Variant::MeasureTarget)] {
        let space = Space::new(d, Domain::Euclidean).unwrap();
        let builtin = run_cpu(model(space, variant, quadratic(d)), particles(space, 257), 60);
        let custom = run_cpu(model(space, variant, closure(d)), particles(space, 257), 60);
        let err = builtin.iter().zip(&custom).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        eprintln!("d = {d} {variant:?}: max |Δ log w| = {err:.2e}");
        assert!(err < 1e-12, "d = {d} {variant:?}: {err:e}");
    }
}

/// The same formula given as a config-style expression (`CustomPotential::expression`) agrees
/// with the built-in to 1e-12, in d = 8 with the terms written from x7 down (each coordinate
/// has its own centre, so a mixed-up variable order would show).
#[test]
fn expression_potential_maps_every_coordinate() {
    let d = 8;
    let b: Vec<f64> = (0..d).map(|k| 0.5 - 0.25 * k as f64).collect();
    let formula: Vec<String> = b.iter().enumerate().rev().map(|(k, c)| format!("(x{k} - ({c}))^2")).collect();
    let u = CustomPotential::expression(&formula.join(" + "), d, "energy[0].expression").unwrap();
    let space = Space::new(d, Domain::Euclidean).unwrap();
    for x in particles(space, 20).positions.chunks_exact(d) {
        let expected = quadratic(d).value(&space, x);
        let got = Potential::Custom(u.clone()).value(&space, x);
        assert!((expected - got).abs() < 1e-12 * expected.max(1.0), "{expected} vs {got}");
    }
    let err = CustomPotential::expression("x0 + y", 2, "energy[0].expression").unwrap_err().to_string();
    assert!(err.contains("energy[0].expression") && err.contains("`y`"), "{err}");
    let err = CustomPotential::expression("x0 + x2", 2, "energy[0].expression").unwrap_err().to_string();
    assert!(err.contains("x0 … x1") && err.contains("`x2`"), "{err}");
    let err = CustomPotential::expression("x0 +* 1", 2, "energy[0].expression").unwrap_err().to_string();
    assert!(err.contains("energy[0].expression"), "{err}");
}

/// A potential that is not finite at a particle stops engine construction on both engines with
/// an error naming the term, the potential and the particle.
#[test]
fn non_finite_custom_potential_is_a_named_error() {
    let space = Space::new(1, Domain::Euclidean).unwrap();
    let log = Potential::Custom(CustomPotential::new("log x", |x: &[f64]| x[0].ln()));
    let Err(err) = CpuEngine::new(model(space, Variant::Measure, log.clone()), particles(space, 50)) else {
        panic!("log x at negative x was accepted")
    };
    let err = err.to_string();
    assert!(err.contains("energy[0]") && err.contains("log x") && err.contains("at point"), "{err}");
    if let Some(ctx) = context() {
        let Err(err) = GpuEngine::new(ctx, model(space, Variant::Measure, log), particles(space, 50)) else {
            panic!("log x at negative x was accepted on the GPU")
        };
        let err = err.to_string();
        assert!(err.contains("energy[0]") && err.contains("log x"), "{err}");
    }
}

/// On the GPU engine (lavapipe) a closure potential matches the CPU engine's trajectory to f32
/// accuracy (the engines' own agreement, 1e-4 in log-weights after 40 steps), and `rates_at`
/// evaluates the closure at the new points.
#[test]
fn closure_potential_runs_on_the_gpu() {
    let Some(ctx) = context() else { return };
    let space = Space::new(2, Domain::Euclidean).unwrap();
    let stepper = Stepper::new(Scheme::Exponential, StepSize::Fixed(0.02)).unwrap();
    let mut cpu = CpuEngine::new(model(space, Variant::MeasureTarget, closure(2)), particles(space, 301)).unwrap();
    let mut gpu = GpuEngine::new(ctx, model(space, Variant::MeasureTarget, closure(2)), particles(space, 301)).unwrap();
    assert_eq!(cpu.advance(40, &stepper, None).unwrap(), 40);
    assert_eq!(gpu.advance(40, &stepper, None).unwrap(), 40);
    let (a, b) = (cpu.state().unwrap().log_weights, gpu.state().unwrap().log_weights);
    let err = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    assert!(err < 1e-4, "max |Δ log w| = {err:e}");
    let at = [0.1, -0.4, 2.0, 1.5];
    let (ra, rb) = (cpu.rates_at(&at).unwrap(), gpu.rates_at(&at).unwrap());
    for (x, y) in ra.iter().zip(&rb) {
        assert!((x - y).abs() < 1e-4 * (1.0 + x.abs()), "{x} vs {y}");
    }
}

/// From a config: `potential = "expression"` in an energy term and `kind = "expression"` in a
/// Gibbs reference build the same U as the equal built-ins, and a bad formula names its key.
#[test]
fn expression_potentials_from_a_config() {
    use frflow::config::Config;
    let config = |energy: &str, reference: &str| {
        format!(
            "seed = 3\nsigma = 0.5\n[domain]\nkind = \"euclidean\"\ndim = 2\n[reference]\nkind = \"gibbs\"\n\
             potential = {reference}\n[kernel]\nepsilon = 0.3\nvariant = \"A\"\n[particles]\nn = 64\n\
             init = {{ kind = \"gaussian\", mean = 0.0, std = 1.0 }}\n[time]\nsteps = 1\n[[energy]]\nkind = \"potential\"\n{energy}\n"
        )
    };
    let builtin = config(
        "potential = \"quadratic\"\nstrength = 2.0\ncenter = [0.5, -1.0]",
        "{ kind = \"double-well\", height = 1.0, scale = 1.0 }",
    );
    let custom = config(
        "potential = \"expression\"\nexpression = \"(x0 - 0.5)^2 + (x1 + 1)^2\"",
        "{ kind = \"expression\", expression = \"(x0^2 - 1)^2 + (x1^2 - 1)^2\" }",
    );
    let dir = std::env::temp_dir();
    let a = Config::from_str(&builtin, "builtin").unwrap().build(&dir).unwrap();
    let b = Config::from_str(&custom, "custom").unwrap().build(&dir).unwrap();
    let (fa, fb) =
        (a.model.at_points(&a.particles.positions).unwrap(), b.model.at_points(&b.particles.positions).unwrap());
    for (x, y) in fa.potential.iter().zip(&fb.potential).chain(fa.log_ref.iter().zip(&fb.log_ref)) {
        assert!((x - y).abs() < 1e-12 * (1.0 + x.abs()), "{x} vs {y}");
    }
    let bad = config(
        "potential = \"expression\"\nexpression = \"x0 + z\"",
        "{ kind = \"double-well\", height = 1.0, scale = 1.0 }",
    );
    let err = Config::from_str(&bad, "bad").unwrap().build(&dir).unwrap_err().to_string();
    assert!(err.contains("energy[0].expression") && err.contains("`z`"), "{err}");
}
