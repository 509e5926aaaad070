//! The Gaussian kernel K_ε and the quadrature rules for integrals against it.

use super::space::Space;
use crate::error::{Error, Result};
use rand::SeedableRng;

/// Relative truncation error allowed for the periodised kernel, against K(0) (SPEC §3).
pub const PERIODIC_TOLERANCE: f64 = 1e-7;

/// A Gaussian kernel exp(−|x − y|² / (2 width²)), optionally normalised to a probability density,
/// periodised over image cells on the torus.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gaussian {
    /// Standard deviation (ε for the smoothing kernel).
    pub width: f64,
    /// log of the constant factor: −d/2·log(2π width²) when normalised, else 0.
    pub log_norm: f64,
    /// Image cells summed on each side per coordinate on the torus (0: minimum image only).
    pub images: u32,
}

impl Gaussian {
    /// Builds the kernel for `space`; `field` names the config key for errors.
    pub fn new(space: &Space, width: f64, normalised: bool, field: &str) -> Result<Self> {
        crate::error::check_positive(field, width)?;
        let mut images = 0;
        if let Some(l) = space.side() {
            if width > l {
                return Err(Error::invalid(field, width, format!("at most the torus side L = {l}")));
            }
            // The nearest omitted image is at least (M + 1/2) L away; its tail, summed over both
            // sides and over d coordinates, must stay below the tolerance relative to K(0).
            let bound = |m: u32| {
                let r = (f64::from(m) + 0.5) * l;
                2.5 * space.dim as f64 * (-(r * r) / (2.0 * width * width)).exp()
            };
            while bound(images) >= PERIODIC_TOLERANCE {
                images += 1;
            }
        }
        let log_norm =
            if normalised { -0.5 * space.dim as f64 * (std::f64::consts::TAU * width * width).ln() } else { 0.0 };
        Ok(Gaussian { width, log_norm, images })
    }

    /// log K(x, y), with the periodic image sum on the torus.
    #[inline]
    pub fn log_value(&self, space: &Space, x: &[f64], y: &[f64]) -> f64 {
        let c = 0.5 / (self.width * self.width);
        match space.side() {
            Some(l) if self.images > 0 => {
                let m = self.images as i32;
                let mut log_k = self.log_norm;
                for (a, b) in x.iter().zip(y) {
                    let d = space.delta(*a, *b);
                    let s: f64 = (-m..=m).map(|n| (-(d + f64::from(n) * l).powi(2) * c).exp()).sum();
                    log_k += s.ln();
                }
                log_k
            }
            _ => self.log_norm - space.sq_dist(x, y) * c,
        }
    }
}

/// How D, D′ and a Gibbs K_ε π integrate against the kernel: E f(x + ε ξ), ξ ~ N(0, I).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuadratureSpec {
    /// Gauss–Hermite points per coordinate, used for d ≤ 3 (tensor rule of order^d nodes).
    pub order: usize,
    /// Number of shared standard normal draws, used for d > 3.
    pub samples: usize,
    /// Seed of the draws (ChaCha8).
    pub seed: u64,
}

impl Default for QuadratureSpec {
    fn default() -> Self {
        QuadratureSpec { order: 5, samples: 64, seed: 0x5eed }
    }
}

/// Nodes ξ_q (flattened, Q × d) and weights ω_q (summing to 1) for E f(ξ), ξ ~ N(0, I_d).
#[derive(Clone, Debug, PartialEq)]
pub struct Quadrature {
    /// Q × d node coordinates, row-major.
    pub nodes: Vec<f64>,
    /// Q weights.
    pub weights: Vec<f64>,
}

impl Quadrature {
    /// Tensor Gauss–Hermite for d ≤ 3, shared normal draws otherwise (SPEC §3).
    pub fn new(dim: usize, spec: &QuadratureSpec) -> Result<Self> {
        if dim <= 3 {
            if spec.order == 0 || spec.order > 32 {
                return Err(Error::invalid("kernel.quadrature.order", spec.order, "an integer from 1 to 32"));
            }
            let (x1, w1) = gauss_hermite(spec.order);
            let q = spec.order.pow(dim as u32);
            let mut nodes = Vec::with_capacity(q * dim);
            let mut weights = Vec::with_capacity(q);
            for idx in 0..q {
                let mut rest = idx;
                let mut w = 1.0;
                for _ in 0..dim {
                    let k = rest % spec.order;
                    rest /= spec.order;
                    nodes.push(x1[k]);
                    w *= w1[k];
                }
                weights.push(w);
            }
            Ok(Quadrature { nodes, weights })
        } else {
            if spec.samples == 0 || spec.samples > 4096 {
                return Err(Error::invalid("kernel.quadrature.samples", spec.samples, "an integer from 1 to 4096"));
            }
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(spec.seed);
            let nodes = (0..spec.samples * dim).map(|_| crate::particles::standard_normal(&mut rng)).collect();
            Ok(Quadrature { nodes, weights: vec![1.0 / spec.samples as f64; spec.samples] })
        }
    }

    /// Number of nodes Q.
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    /// Whether there are no nodes (never, for a constructed rule).
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }
}

/// Probabilists' Gauss–Hermite rule of order n: nodes and weights (summing to 1) for E f(ξ), ξ ~ N(0, 1).
///
/// Newton's method on the orthonormal Hermite recurrence (as in Numerical Recipes' `gauher`), then
/// the change of variable x = ξ/√2 from the physicists' weight e^{−x²}.
pub fn gauss_hermite(n: usize) -> (Vec<f64>, Vec<f64>) {
    let pim4 = std::f64::consts::PI.powf(-0.25);
    let mut x = vec![0.0; n];
    let mut w = vec![0.0; n];
    let m = n.div_ceil(2);
    let nf = n as f64;
    let mut z = 0.0f64;
    for i in 0..m {
        z = match i {
            0 => (2.0 * nf + 1.0).sqrt() - 1.85575 * (2.0 * nf + 1.0).powf(-1.0 / 6.0),
            1 => z - 1.14 * nf.powf(0.426) / z,
            2 => 1.86 * z - 0.86 * x[0],
            3 => 1.91 * z - 0.91 * x[1],
            _ => 2.0 * z - x[i - 2],
        };
        let mut pp = 0.0;
        for _ in 0..100 {
            let mut p1 = pim4;
            let mut p2 = 0.0;
            for j in 0..n {
                let p3 = p2;
                p2 = p1;
                let jf = j as f64;
                p1 = z * (2.0 / (jf + 1.0)).sqrt() * p2 - (jf / (jf + 1.0)).sqrt() * p3;
            }
            pp = (2.0 * nf).sqrt() * p2;
            let z1 = z;
            z = z1 - p1 / pp;
            if (z - z1).abs() <= 1e-15 * z.abs().max(1.0) {
                break;
            }
        }
        x[i] = z;
        x[n - 1 - i] = -z;
        w[i] = 2.0 / (pp * pp);
        w[n - 1 - i] = w[i];
    }
    let s = std::f64::consts::PI.sqrt();
    let nodes = x.iter().rev().map(|v| v * std::f64::consts::SQRT_2).collect();
    let weights = w.iter().rev().map(|v| v / s).collect();
    (nodes, weights)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauss_hermite_integrates_normal_moments_exactly() {
        // An order-n rule is exact for polynomials of degree ≤ 2n − 1: E ξ² = 1, E ξ⁴ = 3, E ξ⁶ = 15.
        for n in [3, 5, 8, 20] {
            let (x, w) = gauss_hermite(n);
            let m = |p: i32| x.iter().zip(&w).map(|(a, b)| a.powi(p) * b).sum::<f64>();
            assert!((m(0) - 1.0).abs() < 1e-13, "n={n}");
            assert!((m(2) - 1.0).abs() < 1e-12, "n={n}");
            assert!((m(4) - 3.0).abs() < 1e-11, "n={n}");
            if n >= 4 {
                assert!((m(6) - 15.0).abs() < 1e-10, "n={n}");
            }
        }
    }

    #[test]
    fn periodised_kernel_matches_a_long_image_sum() {
        let space = Space::new(2, super::super::space::Domain::Torus { side: 1.0 }).unwrap();
        for eps in [0.05, 0.2, 0.5, 1.0] {
            let k = Gaussian::new(&space, eps, true, "kernel.epsilon").unwrap();
            let (x, y) = ([0.1, 0.93], [0.8, 0.2]);
            let c = 0.5 / (eps * eps);
            let mut exact = 1.0;
            for (a, b) in x.iter().zip(&y) {
                exact *= (-60..=60).map(|n| (-(a - b + f64::from(n)).powi(2) * c).exp()).sum::<f64>();
            }
            let k0 = (k.log_value(&space, &x, &x) - k.log_norm).exp();
            let got = (k.log_value(&space, &x, &y) - k.log_norm).exp();
            assert!((got - exact).abs() < 1e-7 * k0, "eps={eps}: {got} vs {exact}");
        }
    }
}
