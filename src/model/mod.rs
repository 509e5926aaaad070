//! What is minimised: V^σ_ε(m) = F(m) + σ · D_ε(m | π) (SPEC §1–5).
//!
//! The model is pure data plus validation; the engines in [`crate::engine`] compute with it.

mod kernel;
mod potential;
mod reference;
mod space;

pub use crate::energy::{CustomTerm, Energy, EnergyTerm, Interaction, Mmd, Npmle, PairKernel, Points, TwoLayerNet};
pub use crate::variant::Variant;
pub use kernel::{Gaussian, PERIODIC_TOLERANCE, Quadrature, QuadratureSpec, gauss_hermite};
pub use potential::{CustomPotential, Potential};
pub(crate) use reference::check_gaussian;
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
    /// How the engines may truncate K_ε (`Cutoff::Auto` from [`ModelSpec::build`]).
    pub cutoff: crate::engine::cells::Cutoff,
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
    /// A model with KL, σ = 1, no energy and the default quadrature (the config's defaults but
    /// for the energy); adjust with the methods below, then [`ModelSpec::build`].
    ///
    /// ```
    /// use frflow::model::{Domain, Energy, Interaction, ModelSpec, Reference, Space, Variant};
    /// let space = Space::new(2, Domain::Torus { side: 1.0 })?;
    /// let model = ModelSpec::new(space, Reference::Uniform, Variant::SmoothedTarget, 0.05)
    ///     .with_sigma(0.1)
    ///     .with_energy(Energy::Interaction(Interaction { strength: 1.0, width: 0.2 }))
    ///     .build()?;
    /// assert_eq!(model.energy.len(), 1);
    /// # Ok::<(), frflow::Error>(())
    /// ```
    pub fn new(space: Space, reference: Reference, variant: Variant, epsilon: f64) -> Self {
        ModelSpec {
            space,
            reference,
            divergence: Divergence::Kl,
            sigma: 1.0,
            epsilon,
            variant,
            energy: Vec::new(),
            quadrature: QuadratureSpec::default(),
        }
    }

    /// The same with σ.
    pub fn with_sigma(self, sigma: f64) -> Self {
        ModelSpec { sigma, ..self }
    }

    /// The same with the divergence.
    pub fn with_divergence(self, divergence: Divergence) -> Self {
        ModelSpec { divergence, ..self }
    }

    /// The same with one more term of F.
    pub fn with_energy(mut self, term: Energy) -> Self {
        self.energy.push(term);
        self
    }

    /// The same with the quadrature rule of D, D′ and a Gibbs K_ε π.
    pub fn with_quadrature(self, quadrature: QuadratureSpec) -> Self {
        ModelSpec { quadrature, ..self }
    }

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
            cutoff: crate::engine::cells::Cutoff::Auto,
        })
    }
}

impl Model {
    /// Whether the kernelized divergence term is present at all (σ > 0).
    pub fn has_divergence(&self) -> bool {
        self.sigma > 0.0
    }

    /// The quadrature nodes y_{t,q} = x_t + ε ξ_q of every point (row-major, d columns), wrapped
    /// into the torus' cell: the y-integral of D and D′ (SPEC §3).
    pub fn quadrature_nodes(&self, points: &[f64]) -> Vec<f64> {
        let (d, q) = (self.space.dim, &self.quadrature);
        let mut nodes = Vec::with_capacity(points.len() * q.len());
        for x in points.chunks_exact(d) {
            for xi in q.nodes.chunks_exact(d) {
                let start = nodes.len();
                nodes.extend(x.iter().zip(xi).map(|(a, b)| a + self.kernel.width * b));
                self.space.wrap(&mut nodes[start..]);
            }
        }
        nodes
    }

    /// Everything the first variation needs at `points` that depends only on where they are,
    /// in f64: both engines start from these numbers. A potential (of F or of a Gibbs π) that is
    /// not finite at one of them is an error naming the potential, the point and its value:
    /// a user's potential is evaluated here and nowhere else.
    pub fn at_points(&self, points: &[f64]) -> Result<AtPoints> {
        use rayon::prelude::*;
        let (space, d) = (&self.space, self.space.dim);
        let log_ref_at = |pos: &[f64], smoothed: bool| -> Vec<f64> {
            pos.par_chunks_exact(d)
                .map(|x| {
                    if smoothed {
                        self.reference.log_smoothed_density(space, &self.kernel, &self.quadrature, x)
                    } else {
                        self.reference.log_density(space, x)
                    }
                })
                .collect()
        };
        let potential = points
            .par_chunks_exact(d)
            .map(|x| self.energy.iter().filter_map(|e| e.term().position_only(space, x)).sum())
            .collect();
        let (mut nodes, mut log_ref_nodes) = (Vec::new(), Vec::new());
        if self.variant.uses_quadrature() && self.has_divergence() {
            nodes = self.quadrature_nodes(points);
            log_ref_nodes = log_ref_at(&nodes, self.variant.smooths_reference());
        }
        let at = AtPoints {
            // D′ smooths π at the nodes; B at the points themselves.
            log_ref: log_ref_at(points, self.variant.smooths_reference() && !self.variant.uses_quadrature()),
            potential,
            nodes,
            log_ref_nodes,
        };
        let bad = |values: &[f64], pts: &[f64]| {
            values.iter().position(|v| !v.is_finite()).map(|t| (t, pts[t * d..(t + 1) * d].to_vec()))
        };
        if let Some((t, x)) = bad(&at.potential, points) {
            let (i, e, u) = self
                .energy
                .iter()
                .enumerate()
                .find_map(|(i, e)| e.term().position_only(space, &x).filter(|u| !u.is_finite()).map(|u| (i, e, u)))
                .expect("a potential term is not finite there");
            return Err(Error::invalid(
                format!("energy[{i}] ({})", e.describe()),
                format!("U = {u} at point {t}, x = {x:?}"),
                "a finite value at every particle and evaluation point",
            ));
        }
        for (values, pts) in [(&at.log_ref, points), (&at.log_ref_nodes, &at.nodes[..])] {
            if let (Some((t, x)), Reference::Gibbs(u)) = (bad(values, pts), &self.reference) {
                return Err(Error::invalid(
                    format!("reference.potential ({})", u.name()),
                    format!("log π = {} at point {t}, x = {x:?}", values[t]),
                    "a finite value at every particle, quadrature node and evaluation point",
                ));
            }
        }
        Ok(at)
    }
}

/// The model's position-only quantities at a set of T points (see [`Model::at_points`]).
#[derive(Clone, Debug, PartialEq)]
pub struct AtPoints {
    /// log π(x_t), or log K_ε π(x_t) for variant B.
    pub log_ref: Vec<f64>,
    /// Σ of the potential terms U(x_t) (δF of the linear part of F).
    pub potential: Vec<f64>,
    /// Quadrature nodes y_{t,q}, (T·Q) × d, for D and D′ with σ > 0 (else empty).
    pub nodes: Vec<f64>,
    /// log π or log K_ε π at the nodes.
    pub log_ref_nodes: Vec<f64>,
}
