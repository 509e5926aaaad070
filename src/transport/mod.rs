//! Wasserstein-2 distances between weighted point clouds (SPEC §8), used by the diagnostics.
//!
//! - [`w2_squared_1d`] and [`w2_squared_1d_gaussian`]: exact W₂² on the line, between two clouds
//!   or between a cloud and N(m, s²), from quantile functions.
//! - [`exact_ot`]: exact W₂² (and the optimal plan) in any dimension by a network simplex, for
//!   clouds of up to a few thousand points; the reference the entropic method is checked against.
//! - [`sinkhorn`] and [`sinkhorn_divergence`]: entropic OT by log-domain Sinkhorn with ε-scaling,
//!   and the debiased Sinkhorn divergence S_ε, for large clouds in any dimension; their `_with`
//!   forms take the N × M pass, such as the GPU's ([`crate::engine::gpu::SinkhornLogSum`]).
//!
//! Points are flat row-major slices (n × d, like [`crate::particles::Particles`]); weights need
//! not sum to 1 (they are normalised), must be finite and ≥ 0, and must have a positive sum.
//! Every distance is returned squared (W₂²), in the units of the squared [`Cost`].

mod exact;
pub mod normal;
mod one_d;
mod sinkhorn;

pub use exact::{ExactOt, MAX_PAIRS, exact_ot};
pub use one_d::{w2_squared_1d, w2_squared_1d_gaussian};
pub use sinkhorn::{
    CPU_AUTO_CELLS_ABOVE, CpuLogSum, DEFAULT_EPSILON_RATIO, Divergence, EntropicOt, GPU_TOLERANCE, LogSum,
    SinkhornOptions, gibbs_kernel, sinkhorn, sinkhorn_divergence, sinkhorn_divergence_with, sinkhorn_log_sum,
    sinkhorn_log_sum_cells, sinkhorn_with,
};

use crate::error::{Error, Result};
use crate::model::{Domain, Space};

/// The ground cost c(x, y) = |x − y|², Euclidean or on the flat torus [0, L)^d with the
/// minimum-image distance.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cost {
    dim: usize,
    side: Option<f64>,
}

impl Cost {
    /// Squared Euclidean distance in R^d, any d ≥ 1.
    pub fn euclidean(dim: usize) -> Result<Self> {
        Cost::new(dim, None)
    }

    /// Squared minimum-image distance on the torus of side `side` in d ≥ 1 dimensions.
    pub fn torus(dim: usize, side: f64) -> Result<Self> {
        Cost::new(dim, Some(side))
    }

    /// The squared distance of a [`Space`] (its dimension and, on a torus, its side).
    pub fn of_space(space: &Space) -> Self {
        let side = match space.domain {
            Domain::Torus { side } => Some(side),
            Domain::Euclidean => None,
        };
        Cost { dim: space.dim, side }
    }

    fn new(dim: usize, side: Option<f64>) -> Result<Self> {
        if dim == 0 {
            return Err(Error::invalid("dim", dim, "an integer ≥ 1"));
        }
        if let Some(l) = side
            && !(l.is_finite() && l > 0.0)
        {
            return Err(Error::invalid("side", l, "a finite torus side > 0"));
        }
        Ok(Cost { dim, side })
    }

    /// The [`Space`] of this cost: R^d, or the torus of its side.
    pub fn space(&self) -> Space {
        let domain = match self.side {
            Some(side) => Domain::Torus { side },
            None => Domain::Euclidean,
        };
        Space { dim: self.dim, domain }
    }

    /// The dimension d.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The torus side L, or `None` on R^d.
    pub fn side(&self) -> Option<f64> {
        self.side
    }

    /// |x − y|² (minimum image on the torus) for two points of `dim` coordinates.
    #[inline]
    pub fn eval(&self, x: &[f64], y: &[f64]) -> f64 {
        match self.side {
            None => x.iter().zip(y).map(|(a, b)| (a - b) * (a - b)).sum(),
            Some(l) => x
                .iter()
                .zip(y)
                .map(|(a, b)| {
                    let d = a - b;
                    let d = d - l * (d / l).round();
                    d * d
                })
                .sum(),
        }
    }

    /// An upper bound on the cost between any two of the given points: the squared diameter of
    /// their bounding box (on the torus, at most d·(L/2)²).
    pub fn diameter_squared(&self, x: &[f64], y: &[f64]) -> f64 {
        let d = self.dim;
        let mut lo = vec![f64::INFINITY; d];
        let mut hi = vec![f64::NEG_INFINITY; d];
        for p in x.chunks_exact(d).chain(y.chunks_exact(d)) {
            for k in 0..d {
                lo[k] = lo[k].min(p[k]);
                hi[k] = hi[k].max(p[k]);
            }
        }
        lo.iter()
            .zip(&hi)
            .map(|(l, h)| {
                let w = h - l;
                match self.side {
                    Some(side) => w.min(0.5 * side).powi(2),
                    None => w * w,
                }
            })
            .sum()
    }
}

/// Checks a flat point slice: a whole number of `dim`-vectors, at least one, all finite.
/// Returns the number of points.
fn check_points(field: &str, points: &[f64], dim: usize) -> Result<usize> {
    if points.is_empty() || points.len() % dim != 0 {
        return Err(Error::invalid(
            field,
            format!("{} coordinates", points.len()),
            format!("a positive multiple of the dimension {dim} (row-major n × d)"),
        ));
    }
    crate::error::check_all_finite(field, points)?;
    Ok(points.len() / dim)
}

/// Checks weights for `n` points and returns them divided by their (pairwise) sum.
fn normalised_weights(field: &str, weights: &[f64], n: usize) -> Result<Vec<f64>> {
    if weights.len() != n {
        return Err(Error::invalid(field, format!("{} weights", weights.len()), format!("one weight per point ({n})")));
    }
    if let Some(k) = weights.iter().position(|w| !(w.is_finite() && *w >= 0.0)) {
        return Err(Error::invalid(format!("{field}[{k}]"), weights[k], "finite weights ≥ 0"));
    }
    let total = crate::engine::pairwise_sum(weights);
    if !(total > 0.0 && total.is_finite()) {
        return Err(Error::invalid(field, format!("sum {total}"), "weights with a finite, positive sum"));
    }
    Ok(weights.iter().map(|w| w / total).collect())
}
