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

/// A term of F that a user brings whole: its value and first variation from the particles and
/// their weights. Both engines evaluate it on the host in f64 at every evaluation (the GPU engine
/// reads the weights back each step for it, and says so in its name).
///
/// ```
/// use frflow::model::EnergyTerm;
/// /// F(m) = ½ (∫ x₀ dm − 0.3)²: δF/δm(y) = (∫ x₀ dm − 0.3) · y₀.
/// struct MeanPull;
/// impl EnergyTerm for MeanPull {
///     fn name(&self) -> &str {
///         "mean pull"
///     }
///     fn evaluate(&self, positions: &[f64], weights: &[f64], targets: &[f64]) -> frflow::Result<(f64, Vec<f64>)> {
///         let d = positions.len() / weights.len();
///         let mean: f64 = positions.chunks(d).zip(weights).map(|(x, w)| w * x[0]).sum();
///         let r = mean - 0.3;
///         Ok((0.5 * r * r, targets.chunks(d).map(|y| r * y[0]).collect()))
///     }
/// }
/// ```
pub trait EnergyTerm: Send + Sync {
    /// A short name for messages and the GPU engine's name.
    fn name(&self) -> &str;

    /// F(μᴺ) and δF/δm(μᴺ, y) at every target y, for μᴺ = Σ_i w_i δ_{X_i}: `positions` and
    /// `targets` are rows of d coordinates (on the torus in [0, L)), `weights` sum to 1. The
    /// targets are the particles themselves in a step and other points in `rates_at`.
    fn evaluate(&self, positions: &[f64], weights: &[f64], targets: &[f64]) -> Result<(f64, Vec<f64>)>;
}

/// A user's [`EnergyTerm`] as a term of the model.
#[derive(Clone)]
pub struct CustomTerm(pub Arc<dyn EnergyTerm>);

impl CustomTerm {
    /// Wraps `term`.
    pub fn new(term: impl EnergyTerm + 'static) -> Self {
        CustomTerm(Arc::new(term))
    }

    /// F(μᴺ) and δF/δm at `targets` (see [`EnergyTerm::evaluate`]), checked: one finite value
    /// per target and a finite F, else an error naming the term.
    pub fn evaluate(&self, positions: &[f64], weights: &[f64], targets: &[f64], dim: usize) -> Result<(f64, Vec<f64>)> {
        let name = self.0.name();
        let (f, dfdm) = self.0.evaluate(positions, weights, targets)?;
        let t = targets.len() / dim;
        if dfdm.len() != t {
            return Err(Error::invalid(
                format!("energy term `{name}`"),
                format!("{} values of δF/δm", dfdm.len()),
                format!("one per target ({t})"),
            ));
        }
        if !f.is_finite() {
            return Err(Error::invalid(format!("energy term `{name}`: F"), f, "a finite number"));
        }
        if let Some(i) = dfdm.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid(
                format!("energy term `{name}`: δF/δm at target {i}"),
                dfdm[i],
                "finite numbers",
            ));
        }
        Ok((f, dfdm))
    }
}

impl std::fmt::Debug for CustomTerm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CustomTerm({:?})", self.0.name())
    }
}

/// Two custom terms are equal when they are the same object (clones of one another).
impl PartialEq for CustomTerm {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// A pairwise interaction ½ ∬ W(x, y) m(dx) m(dy) with the user's symmetric W, given twice: a
/// WGSL function for the GPU and its Rust twin for the CPU. The GPU engine splices the function
/// into its pairwise-sum shader (`pair_sum.wgsl`) and, when it is built, checks it against the twin
/// on pairs of the particles (an error naming the term and the worst pair beyond 1e-4).
///
/// The WGSL is `fn pair_kernel(x: array<f32, D>, y: array<f32, D>) -> f32`, with `D` the
/// dimension and `SIDE` the torus' side (0 on R^d) as constants in scope; coordinates are the
/// raw ones (on the torus in [0, L), so a periodic W takes the minimum image itself). δF/δm(x) =
/// ∫ W(x, y) m(dy), an N × N sum each evaluation.
#[derive(Clone)]
pub struct PairKernel {
    name: String,
    wgsl: Arc<str>,
    twin: Arc<PairFn>,
}

/// The Rust twin behind a [`PairKernel`].
type PairFn = dyn Fn(&[f64], &[f64]) -> f64 + Send + Sync;

impl PairKernel {
    /// W from its WGSL `pair_kernel` function and its Rust twin, called `name` in messages.
    pub fn new(
        name: impl Into<String>,
        wgsl: impl Into<String>,
        twin: impl Fn(&[f64], &[f64]) -> f64 + Send + Sync + 'static,
    ) -> Self {
        PairKernel { name: name.into(), wgsl: Arc::from(wgsl.into()), twin: Arc::new(twin) }
    }

    /// The name given at construction.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The WGSL function.
    pub fn wgsl(&self) -> &Arc<str> {
        &self.wgsl
    }

    /// W(x, y) by the Rust twin.
    #[inline]
    pub fn value(&self, x: &[f64], y: &[f64]) -> f64 {
        (self.twin)(x, y)
    }
}

impl std::fmt::Debug for PairKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PairKernel({:?})", self.name)
    }
}

/// Two pair kernels are equal when they are the same functions (clones of one another).
impl PartialEq for PairKernel {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.twin, &other.twin) && self.wgsl == other.wgsl && self.name == other.name
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
    /// ½ ∬ W(x, y) m(dx) m(dy) with the user's W (see [`PairKernel`]).
    Pair(PairKernel),
    /// The user's whole term (see [`EnergyTerm`]).
    Custom(CustomTerm),
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
            Energy::Pair(_) | Energy::Custom(_) => Ok(()),
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
