//! What is minimised: V^σ_ε(m) = F(m) + σ · D_ε(m | π) (SPEC §1–5).
//!
//! The model is pure data plus validation; the engines in [`crate::engine`] compute with it.

mod energy;
mod kernel;
mod potential;
mod reference;
mod space;

pub use energy::{Energy, Points};
pub use kernel::{Gaussian, PERIODIC_TOLERANCE, Quadrature, QuadratureSpec, gauss_hermite};
pub use potential::Potential;
pub use reference::{Reference, log_gaussian, log_sum_exp};
pub use space::{Domain, MAX_DIM, Space};

use crate::error::{Error, Result};

/// The divergence D(m | π).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Divergence {
    /// KL(m | π) = ∫ log(dm/dπ) dm; δKL/δm = log(dm/dπ).
    Kl,
    /// χ²(m | π) = ∫ (dm/dπ)² dπ − 1; δχ²/δm = 2 dm/dπ. Needs a normalised π.
    #[serde(alias = "chi-squared", alias = "chi_squared")]
    Chi2,
}

/// How the divergence's density is kernelized (SPEC §3), or the unkernelized oracle (SPEC §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Variant {
    /// A: h = log (K_ε m) − log π. The birth–death sampler's rate; not a gradient flow.
    #[serde(rename = "A", alias = "measure")]
    Measure,
    /// B: h = log (K_ε m) − log (K_ε π). Unbiased for Gaussian data; not a gradient flow.
    #[serde(rename = "B", alias = "measure-target")]
    MeasureTarget,
    /// C: gradient flow of F + σ ∫ log(K_ε m / π) dm (two N×N passes).
    #[serde(rename = "C", alias = "blob")]
    Blob,
    /// D: gradient flow of F + σ KL(K_ε m | π) (quadrature over y).
    #[serde(rename = "D", alias = "smoothed")]
    Smoothed,
    /// D′: gradient flow of F + σ KL(K_ε m | K_ε π).
    #[serde(rename = "D'", alias = "smoothed-target", alias = "Dprime")]
    SmoothedTarget,
    /// No kernel: the known-density oracle μ_t(X_i) = N w_i μ₀(X_i) (needs μ₀'s density).
    #[serde(rename = "exact", alias = "oracle")]
    Exact,
}

impl Variant {
    /// All variants, in SPEC order.
    pub const ALL: [Variant; 6] = [
        Variant::Measure,
        Variant::MeasureTarget,
        Variant::Blob,
        Variant::Smoothed,
        Variant::SmoothedTarget,
        Variant::Exact,
    ];

    /// The short name used in configs and outputs.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Measure => "A",
            Variant::MeasureTarget => "B",
            Variant::Blob => "C",
            Variant::Smoothed => "D",
            Variant::SmoothedTarget => "D'",
            Variant::Exact => "exact",
        }
    }

    /// Whether the flow is the Fisher–Rao gradient flow of an energy that frflow reports.
    pub fn is_gradient_flow(self) -> bool {
        !matches!(self, Variant::Measure | Variant::MeasureTarget)
    }

    /// Whether h needs the quadrature nodes around each particle.
    pub fn uses_quadrature(self) -> bool {
        matches!(self, Variant::Smoothed | Variant::SmoothedTarget)
    }

    /// Whether h compares against K_ε π rather than π.
    pub fn smooths_reference(self) -> bool {
        matches!(self, Variant::MeasureTarget | Variant::SmoothedTarget)
    }
}

/// The optimisation problem V^σ_ε(m) = F(m) + σ · D_ε(m | π).
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// The domain.
    pub space: Space,
    /// π.
    pub reference: Reference,
    /// KL or χ².
    pub divergence: Divergence,
    /// σ ≥ 0 (σ = 0 drops the divergence, e.g. for the NPMLE's EM step).
    pub sigma: f64,
    /// The smoothing kernel K_ε (normalised).
    pub kernel: Gaussian,
    /// The kernelization.
    pub variant: Variant,
    /// F as a sum of terms (empty: F = 0).
    pub energy: Vec<Energy>,
    /// The quadrature for D, D′ and a Gibbs K_ε π.
    pub quadrature: Quadrature,
}

/// Everything needed to build a [`Model`], checked by [`ModelSpec::build`].
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    /// The domain.
    pub space: Space,
    /// π.
    pub reference: Reference,
    /// KL or χ².
    pub divergence: Divergence,
    /// σ.
    pub sigma: f64,
    /// ε.
    pub epsilon: f64,
    /// The kernelization.
    pub variant: Variant,
    /// F's terms.
    pub energy: Vec<Energy>,
    /// The quadrature rule.
    pub quadrature: QuadratureSpec,
}

impl ModelSpec {
    /// Validates every field and precomputes the kernel and quadrature.
    pub fn build(self) -> Result<Model> {
        let space = self.space;
        if !(self.sigma.is_finite() && self.sigma >= 0.0) {
            return Err(Error::invalid("sigma", self.sigma, "a finite number ≥ 0"));
        }
        self.reference.validate(&space)?;
        let kernel = Gaussian::new(&space, self.epsilon, true, "kernel.epsilon")?;
        for (i, e) in self.energy.iter().enumerate() {
            e.validate(&space, &format!("energy[{i}]"))?;
        }
        if self.divergence == Divergence::Chi2 && !self.reference.is_normalised() && self.sigma > 0.0 {
            return Err(Error::invalid(
                "divergence",
                "chi2",
                "kl with a Gibbs reference: χ² needs π's normalising constant, which a Gibbs reference does not have",
            ));
        }
        if self.sigma == 0.0 && self.energy.is_empty() {
            return Err(Error::invalid("sigma", 0, "> 0 when no energy term is given (otherwise V ≡ 0)"));
        }
        let quadrature = Quadrature::new(space.dim, &self.quadrature)?;
        Ok(Model {
            space,
            reference: self.reference,
            divergence: self.divergence,
            sigma: self.sigma,
            kernel,
            variant: self.variant,
            energy: self.energy,
            quadrature,
        })
    }
}

impl Model {
    /// Whether the kernelized divergence term is present at all (σ > 0).
    pub fn has_divergence(&self) -> bool {
        self.sigma > 0.0
    }
}
