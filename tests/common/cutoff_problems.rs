//! The problems of the cutoff tests, shared by `cutoff.rs` (CPU) and `gpu_cutoff.rs` (GPU
//! against CPU), so that both check the same cases.

use frflow::energy::Npmle;
use frflow::engine::cells::Cutoff;
use frflow::model::{Divergence, Domain, Energy, Model, ModelSpec, Points, QuadratureSpec, Reference, Space, Variant};
use frflow::particles::Particles;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

pub fn space(d: usize, torus: bool) -> Space {
    Space::new(d, if torus { Domain::Torus { side: 1.0 } } else { Domain::Euclidean }).unwrap()
}

/// `n` uniform points in the unit cube (torus) or in [0, 1.7)^d.
pub fn points(space: &Space, n: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    (0..n * space.dim).map(|_| rng.random::<f64>() * if space.side().is_some() { 1.0 } else { 1.7 }).collect()
}

/// A model without energy: a uniform π on the torus, a Gaussian one on R^d.
pub fn model(space: Space, variant: Variant, divergence: Divergence, epsilon: f64, cutoff: Cutoff) -> Model {
    let model = ModelSpec {
        space,
        reference: match space.domain {
            Domain::Torus { .. } => Reference::Uniform,
            Domain::Euclidean => Reference::Gaussian { mean: vec![0.8; space.dim], std: 1.0 },
        },
        divergence,
        sigma: 0.7,
        epsilon,
        variant,
        energy: vec![],
        quadrature: QuadratureSpec { order: 3, samples: 16, ..Default::default() },
    }
    .build()
    .unwrap();
    Model { cutoff, ..model }
}

/// The NPMLE case on R^1: 901 particles, 307 observations, noise 0.02 (so both of its sums
/// drop pairs), variant A with ε = 0.3 under `cutoff`.
pub fn npmle_case(rng: &mut ChaCha8Rng, cutoff: Cutoff) -> (Model, Particles) {
    let space = space(1, false);
    let particles = Particles::from_positions(space, points(&space, 901, rng)).unwrap();
    let observations = Arc::new(Points { dim: 1, values: points(&space, 307, rng) });
    let energy = vec![Energy::Npmle(Npmle { observations, noise: 0.02 })];
    (Model { energy, ..model(space, Variant::Measure, Divergence::Kl, 0.3, cutoff) }, particles)
}
