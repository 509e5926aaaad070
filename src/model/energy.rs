//! Mean-field energies F(m) (SPEC §5). The engines evaluate δF/δm at the particles.

use super::kernel::Gaussian;
use super::potential::Potential;
use super::space::Space;
use crate::error::{Error, Result};
use std::sync::Arc;

/// A table of M points in R^k, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Points {
    /// Number of columns k.
    pub dim: usize,
    /// M × k values.
    pub values: Vec<f64>,
}

impl Points {
    /// Number of rows M.
    pub fn len(&self) -> usize {
        self.values.len().checked_div(self.dim).unwrap_or(0)
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row k.
    pub fn row(&self, k: usize) -> &[f64] {
        &self.values[k * self.dim..(k + 1) * self.dim]
    }
}

/// One term of F; the model's F is the sum of its terms.
#[derive(Clone, Debug, PartialEq)]
pub enum Energy {
    /// ∫ U dm.
    Potential(Potential),
    /// ½ ∬ W(x − y) m(dx) m(dy) with W(r) = strength · exp(−|r|² / (2 width²)).
    Interaction {
        /// Scale of W (> 0: repulsive and convex, since a Gaussian is positive definite).
        strength: f64,
        /// Width of W.
        width: f64,
    },
    /// ½ ‖K m − K ν‖² in the RKHS of k(x, y) = exp(−|x − y|² / (2 width²)), ν the sample's empirical measure.
    Mmd {
        /// Width of k.
        width: f64,
        /// The sample Y_1 … Y_M, each of the domain's dimension.
        sample: Arc<Points>,
    },
    /// Mean-field two-layer network f_m(z) = ∫ c·tanh(a·z + b) m(dx) with x = (a, b, c), squared loss,
    /// plus penalty/2 · ∫ |x|² dm.
    TwoLayerNet {
        /// Inputs z_k (M × p, with p = d − 2).
        inputs: Arc<Points>,
        /// Targets y_k (M).
        targets: Arc<Vec<f64>>,
        /// λ ≥ 0.
        penalty: f64,
    },
    /// Gaussian-mixture NPMLE: F = −(1/M) Σ_k log ∫ φ_s(z_k − x) m(dx).
    Npmle {
        /// Observations z_k (M × d).
        observations: Arc<Points>,
        /// Noise standard deviation s > 0.
        noise: f64,
    },
}

impl Energy {
    /// Checks the term against the space; `field` is its config key, e.g. `energy[0]`.
    pub fn validate(&self, space: &Space, field: &str) -> Result<()> {
        // A kernel width must be positive and, on the torus, at most the side (Gaussian::new checks both).
        let positive = |name: &str, v: f64| Gaussian::new(space, v, false, &format!("{field}.{name}")).map(|_| ());
        let table = |name: &str, p: &Points, cols: usize| {
            if p.dim != cols || p.is_empty() || p.values.len() % cols != 0 {
                return Err(Error::invalid(
                    format!("{field}.{name}"),
                    format!("{} values with {} columns", p.values.len(), p.dim),
                    format!("a non-empty table with {cols} columns"),
                ));
            }
            if let Some(v) = p.values.iter().find(|v| !v.is_finite()) {
                return Err(Error::invalid(format!("{field}.{name}"), v, "finite numbers only"));
            }
            Ok(())
        };
        match self {
            Energy::Potential(p) => p.validate(space, &format!("{field}.potential")),
            Energy::Interaction { strength, width } => {
                if !strength.is_finite() {
                    return Err(Error::invalid(format!("{field}.strength"), strength, "a finite number"));
                }
                positive("width", *width)
            }
            Energy::Mmd { width, sample } => {
                positive("width", *width)?;
                table("sample", sample, space.dim)
            }
            Energy::TwoLayerNet { inputs, targets, penalty } => {
                if space.dim < 3 {
                    return Err(Error::invalid(
                        "domain.dim",
                        space.dim,
                        "at least 3 for a two-layer network (x = (a, b, c) with a of the input dimension d − 2)",
                    ));
                }
                table("inputs", inputs, space.dim - 2)?;
                if targets.len() != inputs.len() {
                    return Err(Error::invalid(
                        format!("{field}.targets"),
                        format!("{} values", targets.len()),
                        format!("one target per input row ({})", inputs.len()),
                    ));
                }
                if let Some(v) = targets.iter().find(|v| !v.is_finite()) {
                    return Err(Error::invalid(format!("{field}.targets"), v, "finite numbers only"));
                }
                if !(penalty.is_finite() && *penalty >= 0.0) {
                    return Err(Error::invalid(format!("{field}.penalty"), penalty, "a finite number ≥ 0"));
                }
                Ok(())
            }
            Energy::Npmle { observations, noise } => {
                positive("noise", *noise)?;
                table("observations", observations, space.dim)
            }
        }
    }

    /// The neuron φ(x, z) = c · tanh(a·z + b), x = (a, b, c).
    #[inline]
    pub fn neuron(x: &[f64], z: &[f64]) -> f64 {
        let p = z.len();
        let pre: f64 = x[..p].iter().zip(z).map(|(a, zz)| a * zz).sum::<f64>() + x[p];
        x[p + 1] * pre.tanh()
    }
}
