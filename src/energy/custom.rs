//! A term of F the user brings whole ([`EnergyTerm`]): both engines evaluate it on the host in
//! f64 at every evaluation; the GPU engine uploads its δF/δm before each of its evaluations (one
//! step per device loop) and says so in its name.

use super::{Accumulate, CpuEval, CpuTerm, GpuEval, GpuSetup, GpuTerm, HostAt, Term};
use crate::engine::gpu::build::Pass;
use crate::error::{Error, Result};
use crate::model::{Model, Space};
use std::sync::Arc;

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

impl Term for CustomTerm {
    fn validate(&self, _space: &Space, _field: &str) -> Result<()> {
        Ok(())
    }

    fn describe(&self) -> String {
        format!("custom term {}", self.0.name())
    }

    fn cpu(&self, _model: &Model, _positions: &[f64]) -> Result<Option<Box<dyn CpuTerm>>> {
        Ok(Some(Box::new(self.clone())))
    }

    fn gpu(&self, s: &mut GpuSetup) -> Result<Option<Box<dyn GpuTerm>>> {
        let n = s.positions.len() / s.model.space.dim;
        Ok(Some(Box::new(Gpu { term: self.clone(), values: s.b.zeros("host_values", n * 4) })))
    }
}

impl CpuTerm for CustomTerm {
    fn add(&self, e: &CpuEval, energy: &mut [(f64, f64)]) -> Result<f64> {
        let (f, dfdm) = self.evaluate(e.positions, e.weights, e.targets, e.space.dim)?;
        energy.iter_mut().zip(dfdm).for_each(|(e, v)| e.0 += v);
        Ok(f)
    }
}

/// Evaluates the user's whole `term` at `targets` for the particles at `positions` with
/// `weights`, writes its δF/δm there into `values` and returns its F(μᴺ).
pub(crate) fn upload_host_term(
    queue: &wgpu::Queue,
    term: &CustomTerm,
    values: &wgpu::Buffer,
    positions: &[f64],
    weights: &[f64],
    targets: &[f64],
    dim: usize,
) -> Result<f64> {
    let (f, dfdm) = term.evaluate(positions, weights, targets, dim)?;
    let dfdm: Vec<f32> = dfdm.iter().map(|v| *v as f32).collect();
    queue.write_buffer(values, 0, bytemuck::cast_slice(&dfdm));
    Ok(f)
}

struct Gpu {
    term: CustomTerm,
    /// δF/δm at the particles, uploaded before each evaluation.
    values: wgpu::Buffer,
}

impl GpuTerm for Gpu {
    fn passes(&self, e: &GpuEval) -> Result<Vec<Pass>> {
        Ok(vec![e.accumulate(Accumulate::Linear, &self.values, e.zeros)?])
    }

    fn passes_at(&self, e: &GpuEval, _points: &[f64], host: &mut Vec<HostAt>) -> Result<Vec<Pass>> {
        let values = e.b.zeros("at_host_values", e.targets * 4);
        let pass = e.accumulate(Accumulate::Linear, &values, e.zeros)?;
        host.push((self.term.clone(), values));
        Ok(vec![pass])
    }

    fn host(&self) -> Option<(&CustomTerm, &wgpu::Buffer)> {
        Some((&self.term, &self.values))
    }
}
