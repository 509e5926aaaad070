//! Sinkhorn's N × M log-sum-exp pass on the GPU: the twin of [`crate::transport::sinkhorn_log_sum`].
//!
//! The pass is the `log_kernel_sum` shader itself: its Gaussian kernel exp(−|x − y|²/(2w²)) is
//! the Gibbs kernel exp(−|x − y|²/ε) of entropic OT at w = √(ε/2), without normalisation and with
//! the minimum image only (the cost on the torus is the squared minimum-image distance).

use super::context::GpuContext;
use super::host::Layout;
use super::standalone::{KernelSum, Shape, pack};
use crate::error::{Error, Result};
use crate::model::{Domain, Gaussian, Space};
use crate::transport::{Cost, LogSum};

/// The largest |coefficient| the f32 pass accepts: its ulp there is 0.06, a 6% error in every
/// term. Sinkhorn at the default ε stays near 1e3–1e4.
const MAX_COEFFICIENT: f64 = 1e6;

/// Sinkhorn's pass on one device: compiled at the first call and reused by every later one
/// (reallocated only for more points than before), so an iteration costs one dispatch, O(N)
/// uploads and one O(N) readback. Pass it to [`crate::transport::sinkhorn_with`] or
/// [`crate::transport::sinkhorn_divergence_with`].
///
/// Coordinates are packed in fixed point whatever ε is (as in the engine at small ε), so the
/// same pipeline serves the whole ε-scaling schedule. Results are f32 log-sums: an absolute error
/// of about 6e-8 times the largest exponent magnitude |log b_j + g_j/ε| − c/ε involved.
pub struct SinkhornLogSum<'a> {
    ctx: &'a GpuContext,
    cost: Cost,
    space: Space,
    pass: Option<KernelSum>,
    capacity: usize,
}

impl<'a> SinkhornLogSum<'a> {
    /// A pass for `cost` on `ctx`.
    pub fn new(ctx: &'a GpuContext, cost: &Cost) -> Result<Self> {
        let domain = match cost.side() {
            Some(side) => Domain::Torus { side },
            None => Domain::Euclidean,
        };
        Ok(SinkhornLogSum { ctx, cost: *cost, space: Space::new(cost.dim(), domain)?, pass: None, capacity: 0 })
    }
}

impl LogSum for SinkhornLogSum<'_> {
    fn cost(&self) -> &Cost {
        &self.cost
    }

    fn log_sum(&mut self, targets: &[f64], sources: &[f64], log_coeffs: &[f64], inv_eps: f64) -> Result<Vec<f64>> {
        let largest = log_coeffs.iter().filter(|c| c.is_finite()).fold(0.0f64, |m, c| m.max(c.abs()));
        if largest > MAX_COEFFICIENT {
            return Err(Error::invalid(
                "log_coeffs",
                format!("{largest:e} (largest |log b_j + g_j/ε|)"),
                format!(
                    "at most {MAX_COEFFICIENT:e} in the GPU's f32 pass, whose rounding would swamp the sum beyond it: \
                     use a larger ε or the f64 CPU solver"
                ),
            ));
        }
        let kernel = Gaussian { width: (0.5 / inv_eps).sqrt(), log_norm: 0.0, images: 0 };
        let layout = Layout::fixed_point(&self.space, &[targets, sources], kernel.width);
        let packed = pack(&self.space, &kernel, &layout, targets, sources, log_coeffs)?;
        let needed = (packed.params.n_targets.max(packed.params.n_sources)) as usize;
        if self.pass.is_none() || needed > self.capacity {
            self.pass = Some(KernelSum::new(self.ctx, &packed.header, Shape::DEFAULT, needed, needed)?);
            self.capacity = needed;
        }
        let pass = self.pass.as_mut().expect("just made");
        pass.load(self.ctx, &packed);
        pass.run(self.ctx, 1)?;
        pass.read(self.ctx)
    }
}

/// For every target t: log Σ_s exp(ℓ_s − c(t, y_s)/ε), on the GPU in f32: the twin of
/// [`crate::transport::sinkhorn_log_sum`], with the same arguments plus the device.
pub fn sinkhorn_log_sum(
    ctx: &GpuContext,
    cost: &Cost,
    targets: &[f64],
    sources: &[f64],
    log_coeffs: &[f64],
    inv_eps: f64,
) -> Result<Vec<f64>> {
    SinkhornLogSum::new(ctx, cost)?.log_sum(targets, sources, log_coeffs, inv_eps)
}
