//! Potentials U(x): used as the linear energy ∫U dm and as the Gibbs reference π ∝ exp(−U_π).

use super::space::{Domain, Space};
use crate::error::{Error, Result};

/// A potential on the domain.
#[derive(Clone, Debug, PartialEq)]
pub enum Potential {
    /// U(x) = strength/2 · |x − center|² (minimum-image distance on the torus).
    Quadratic {
        /// λ ≥ 0.
        strength: f64,
        /// b, one entry per coordinate.
        center: Vec<f64>,
    },
    /// U(x) = height · Σ_k ((x_k / scale)² − 1)²: wells at ±scale in every coordinate.
    DoubleWell {
        /// Barrier height ≥ 0.
        height: f64,
        /// Position of the wells (> 0).
        scale: f64,
    },
    /// U(x) = −amplitude · Σ_k cos(2π · frequency · x_k / L): frequency^d wells on the torus.
    Cosine {
        /// Depth of the wells (any sign).
        amplitude: f64,
        /// Integer number of wells per coordinate (≥ 1), so that U is periodic.
        frequency: u32,
    },
}

impl Potential {
    /// Checks the parameters against the space; `field` prefixes the error's key.
    pub fn validate(&self, space: &Space, field: &str) -> Result<()> {
        let finite = |name: &str, v: f64, min: f64, allowed: &str| {
            if v.is_finite() && v >= min { Ok(()) } else { Err(Error::invalid(format!("{field}.{name}"), v, allowed)) }
        };
        match self {
            Potential::Quadratic { strength, center } => {
                finite("strength", *strength, 0.0, "a finite number ≥ 0")?;
                if center.len() != space.dim {
                    return Err(Error::invalid(
                        format!("{field}.center"),
                        format!("{center:?}"),
                        format!("a list of {} numbers (one per coordinate)", space.dim),
                    ));
                }
                for c in center {
                    finite("center", *c, f64::NEG_INFINITY, "finite numbers")?;
                }
                Ok(())
            }
            Potential::DoubleWell { height, scale } => {
                finite("height", *height, 0.0, "a finite number ≥ 0")?;
                if !(scale.is_finite() && *scale > 0.0) {
                    return Err(Error::invalid(format!("{field}.scale"), scale, "a finite number > 0"));
                }
                Ok(())
            }
            Potential::Cosine { amplitude, frequency } => {
                finite("amplitude", *amplitude, f64::NEG_INFINITY, "a finite number")?;
                if *frequency == 0 {
                    return Err(Error::invalid(format!("{field}.frequency"), frequency, "an integer ≥ 1"));
                }
                if space.side().is_none() {
                    return Err(Error::invalid(
                        format!("{field}.kind"),
                        "cosine",
                        "a cosine potential needs the torus domain (it is periodic); use quadratic or double-well on R^d",
                    ));
                }
                Ok(())
            }
        }
    }

    /// U(x).
    pub fn value(&self, space: &Space, x: &[f64]) -> f64 {
        match self {
            Potential::Quadratic { strength, center } => 0.5 * strength * space.sq_dist(x, center),
            Potential::DoubleWell { height, scale } => {
                height * x.iter().map(|v| ((v / scale).powi(2) - 1.0).powi(2)).sum::<f64>()
            }
            Potential::Cosine { amplitude, frequency } => {
                let l = match space.domain {
                    Domain::Torus { side } => side,
                    Domain::Euclidean => 1.0,
                };
                let k = std::f64::consts::TAU * f64::from(*frequency) / l;
                -amplitude * x.iter().map(|v| (k * v).cos()).sum::<f64>()
            }
        }
    }
}
