//! The CPU engine with every energy of SPEC §5: V_ε(μᴺ) never increases along the gradient-flow
//! variants (the GPU engine's twin of this check is in tests/gpu_energies.rs).

use frflow::energy::{Interaction, Mmd, Npmle, TwoLayerNet};
use frflow::engine::Engine;
use frflow::engine::cpu::CpuEngine;
use frflow::io::data::{bumps_regression, gaussian_mixture_sample};
use frflow::model::{
    Divergence, Domain, Energy, ModelSpec, Points, Potential, QuadratureSpec, Reference, Space, Variant,
};
use frflow::particles::{Component, Initial, Particles};
use frflow::stepper::{Scheme, StepSize, Stepper};
use std::sync::Arc;

/// Each energy term on a problem where it is convex in m (a positive-definite interaction,
/// an MMD, a network's squared loss, an NPMLE's −log-likelihood, a potential), on R^d.
fn energies(dim: usize) -> Vec<(&'static str, Vec<Energy>)> {
    let sample = |std: f64, seed: u64| {
        let c = Component { weight: 1.0, mean: vec![0.3; dim], std };
        Arc::new(gaussian_mixture_sample(&[c], 60, 0.0, seed).unwrap())
    };
    let mut out = vec![
        ("potential", vec![Energy::Potential(Potential::Quadratic { strength: 1.5, center: vec![0.4; dim] })]),
        ("interaction", vec![Energy::Interaction(Interaction { strength: 0.8, width: 0.6 })]),
        ("mmd", vec![Energy::Mmd(Mmd { width: 0.5, sample: sample(0.3, 3) })]),
        ("npmle", vec![Energy::Npmle(Npmle { observations: sample(0.8, 4), noise: 0.4 })]),
    ];
    if dim == 3 {
        let (z, y) = bumps_regression(80, 0.05, 5).unwrap();
        let net = Energy::TwoLayerNet(TwoLayerNet {
            inputs: Arc::new(Points { dim: 1, values: z.values }),
            targets: Arc::new(y),
            penalty: 1e-2,
        });
        out.push(("two-layer-net", vec![net]));
    }
    out
}

/// 500 explicit Euler steps at h = 2e-3: V may not rise by more than f64 rounding of its parts
/// (1e-12 relative), and it must fall measurably (so the check cannot pass on a frozen run).
#[test]
fn energy_never_increases_for_gradient_flow_variants_with_every_energy() {
    let stepper = Stepper::new(Scheme::Euler, StepSize::Fixed(2e-3)).unwrap();
    for dim in [1, 3] {
        for (name, energy) in energies(dim) {
            for variant in [Variant::Blob, Variant::Smoothed, Variant::SmoothedTarget] {
                let space = Space::new(dim, Domain::Euclidean).unwrap();
                let model = ModelSpec {
                    space,
                    reference: Reference::Gaussian { mean: vec![0.0; dim], std: 1.5 },
                    divergence: Divergence::Kl,
                    sigma: 0.3,
                    epsilon: 0.4,
                    variant,
                    energy: energy.clone(),
                    quadrature: QuadratureSpec { order: if dim == 1 { 5 } else { 2 }, ..Default::default() },
                }
                .build()
                .unwrap();
                let init = Initial::Gaussian { mean: vec![0.0; dim], std: 1.2 };
                let particles = Particles::sample(space, &init, 100, 11).unwrap();
                let mut engine = CpuEngine::new(model, particles).unwrap();
                let first = engine.evaluate().unwrap().energy.unwrap();
                let mut last = first;
                for step in 0..500 {
                    engine.advance(1, &stepper, None).unwrap();
                    let v = engine.evaluate().unwrap().energy.unwrap();
                    assert!(
                        v <= last + 1e-12 * last.abs().max(1.0),
                        "{name} d={dim} {variant:?} step {step}: {last} → {v}"
                    );
                    last = v;
                }
                assert!(first - last > 1e-6, "{name} d={dim} {variant:?}: V moved only {first} → {last}");
            }
        }
    }
}
