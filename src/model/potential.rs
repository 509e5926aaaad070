//! Potentials U(x): used as the linear energy ∫U dm and as the Gibbs reference π ∝ exp(−U_π).

use super::space::{Domain, Space};
use crate::error::{Error, Result};
use std::sync::Arc;

/// A user's potential U(x): any function of the position, with a name for messages and traces.
///
/// Positions never move in a Fisher–Rao flow, so U is evaluated once per particle (in f64, on the
/// host) when an engine is built and its values are uploaded once; both engines, the diagnostics,
/// `flow::run` and its observers then treat it like a built-in potential. A value that is not
/// finite at a particle is an error naming the potential and the particle.
#[derive(Clone)]
pub struct CustomPotential {
    name: String,
    f: Arc<PotentialFn>,
}

/// The function behind a [`CustomPotential`].
type PotentialFn = dyn Fn(&[f64]) -> f64 + Send + Sync;

impl CustomPotential {
    /// U = `f`, called `name` in messages.
    pub fn new(name: impl Into<String>, f: impl Fn(&[f64]) -> f64 + Send + Sync + 'static) -> Self {
        CustomPotential { name: name.into(), f: Arc::new(f) }
    }

    /// U from a formula in the coordinates x0, x1, … (e.g. `100 * (x0 - 0.5)^4`), parsed by
    /// `exmex`; `field` names the config key in errors.
    pub fn expression(formula: &str, dim: usize, field: &str) -> Result<Self> {
        use exmex::prelude::*;
        let expr = exmex::parse::<f64>(formula).map_err(|e| {
            Error::invalid(field, formula, format!("a formula in x0 … x{} ({e})", dim.saturating_sub(1)))
        })?;
        // exmex orders its variables by name (x10 before x2), so map each to its coordinate.
        let index = expr
            .var_names()
            .iter()
            .map(|v| v.strip_prefix('x').and_then(|k| k.parse::<usize>().ok()).filter(|k| *k < dim).ok_or(v))
            .collect::<std::result::Result<Vec<usize>, _>>()
            .map_err(|v| {
                Error::invalid(
                    field,
                    formula,
                    format!("variables x0 … x{} only (the coordinates); found `{v}`", dim.saturating_sub(1)),
                )
            })?;
        let name = format!("expression `{formula}`");
        Ok(CustomPotential::new(name, move |x: &[f64]| {
            let vars: Vec<f64> = index.iter().map(|k| x[*k]).collect();
            expr.eval(&vars).unwrap_or(f64::NAN)
        }))
    }

    /// The name given at construction.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Debug for CustomPotential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CustomPotential({:?})", self.name)
    }
}

/// Two custom potentials are equal when they are the same function (clones of one another).
impl PartialEq for CustomPotential {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.f, &other.f) && self.name == other.name
    }
}

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
    /// The user's own U (a Rust closure or a formula; see [`CustomPotential`]).
    Custom(CustomPotential),
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
            Potential::Custom(_) => Ok(()),
        }
    }

    /// The potential's name in messages: its kind, or the custom potential's name.
    pub fn name(&self) -> String {
        match self {
            Potential::Quadratic { .. } => "quadratic".into(),
            Potential::DoubleWell { .. } => "double-well".into(),
            Potential::Cosine { .. } => "cosine".into(),
            Potential::Custom(c) => c.name().into(),
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
            Potential::Custom(c) => (c.f)(x),
        }
    }
}
