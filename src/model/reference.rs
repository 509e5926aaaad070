//! The reference measure π, given by its log-density.

use super::kernel::{Gaussian, Quadrature};
use super::potential::Potential;
use super::space::Space;
use crate::error::{Error, Result, check_positive};

/// The reference measure π of the divergence D(m | π).
#[derive(Clone, Debug, PartialEq)]
pub enum Reference {
    /// Uniform on the torus: π = L^{−d}.
    Uniform,
    /// N(mean, std² I).
    Gaussian {
        /// b.
        mean: Vec<f64>,
        /// τ > 0.
        std: f64,
    },
    /// π ∝ exp(−U_π), normalising constant unknown.
    Gibbs(Potential),
}

impl Reference {
    /// Checks the parameters against the space.
    pub fn validate(&self, space: &Space) -> Result<()> {
        match self {
            Reference::Uniform if space.side().is_none() => Err(Error::invalid(
                "reference.kind",
                "uniform",
                "uniform needs the torus domain (R^d has no uniform probability measure); use gaussian or gibbs",
            )),
            Reference::Uniform => Ok(()),
            Reference::Gaussian { mean, std } => check_gaussian(space, "reference", mean, *std),
            Reference::Gibbs(p) => p.validate(space, "reference.potential"),
        }
    }

    /// Whether [`Reference::log_density`] includes the normalising constant (needed by χ²).
    pub fn is_normalised(&self) -> bool {
        !matches!(self, Reference::Gibbs(_))
    }

    /// log π(x), normalised except for Gibbs (where it is −U_π(x)).
    pub fn log_density(&self, space: &Space, x: &[f64]) -> f64 {
        match self {
            Reference::Uniform => -(space.dim as f64) * space.side().unwrap_or(1.0).ln(),
            Reference::Gaussian { mean, std } => log_gaussian(space, x, mean, *std),
            Reference::Gibbs(p) => -p.value(space, x),
        }
    }

    /// log (K_ε π)(x): closed form for uniform and Gaussian π, quadrature for Gibbs (SPEC §3).
    pub fn log_smoothed_density(&self, space: &Space, kernel: &Gaussian, quad: &Quadrature, x: &[f64]) -> f64 {
        match self {
            Reference::Uniform => self.log_density(space, x),
            Reference::Gaussian { mean, std } => {
                log_gaussian(space, x, mean, (std * std + kernel.width * kernel.width).sqrt())
            }
            Reference::Gibbs(_) => {
                let d = space.dim;
                let mut y = vec![0.0; d];
                let terms: Vec<f64> = (0..quad.len())
                    .map(|q| {
                        for k in 0..d {
                            y[k] = x[k] + kernel.width * quad.nodes[q * d + k];
                        }
                        space.wrap(&mut y);
                        quad.weights[q].ln() + self.log_density(space, &y)
                    })
                    .collect();
                log_sum_exp(&terms)
            }
        }
    }
}

/// Checks a Gaussian's parameters against the space (`field.std`, `field.mean` in errors): a
/// finite std > 0 and d finite means.
pub(crate) fn check_gaussian(space: &Space, field: &str, mean: &[f64], std: f64) -> Result<()> {
    check_positive(format!("{field}.std"), std)?;
    if mean.len() != space.dim || mean.iter().any(|v| !v.is_finite()) {
        return Err(Error::invalid(
            format!("{field}.mean"),
            format!("{mean:?}"),
            format!("a list of {} finite numbers", space.dim),
        ));
    }
    Ok(())
}

/// log N(x; mean, std² I) (minimum-image distance on the torus).
pub fn log_gaussian(space: &Space, x: &[f64], mean: &[f64], std: f64) -> f64 {
    let d = space.dim as f64;
    -0.5 * space.sq_dist(x, mean) / (std * std) - 0.5 * d * (std::f64::consts::TAU * std * std).ln()
}

/// log Σ exp(v), stable for any finite input; −∞ for an empty slice.
pub fn log_sum_exp(v: &[f64]) -> f64 {
    let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return m;
    }
    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}
