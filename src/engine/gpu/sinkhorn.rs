//! Sinkhorn's N × M log-sum-exp pass on the GPU: the twin of [`crate::transport::sinkhorn_log_sum`].
//!
//! The pass is the `log_kernel_sum` shader itself: its Gaussian kernel exp(−|x − y|²/(2w²)) is
//! the Gibbs kernel exp(−|x − y|²/ε) of entropic OT at w = √(ε/2), without normalisation and with
//! the minimum image only (the cost on the torus is the squared minimum-image distance). Its
//! cutoff passes are `log_kernel_sum_cells` with the same kernel, on the solver's grids
//! ([`sinkhorn_log_sum_cells`], the twin of [`crate::transport::sinkhorn_log_sum_cells`]).

use super::cells::{AUTO_CELLS_ABOVE, CellPass};
use super::context::GpuContext;
use super::host::{Layout, from_device_log_weight};
use super::standalone::{KernelSum, Shape, pack};
use crate::engine::cells::CellGrid;
use crate::error::{Error, Result};
use crate::model::Space;
use crate::transport::{Cost, LogSum, gibbs_kernel};

/// The largest |coefficient| the f32 pass accepts: its ulp there is 0.06, a 6% error in every
/// term. Sinkhorn at the default ε stays near 1e3–1e4.
const MAX_COEFFICIENT: f64 = 1e6;

/// Sinkhorn's pass on one device: compiled at the first call and reused by every later one
/// (reallocated only for more points than before), so an iteration costs one dispatch, O(N)
/// uploads and one O(N) readback. The cutoff passes keep the cell sums of the current ε (the
/// grid, blocks and buffers of each direction) and rebuild them when ε or the points change.
/// `Cutoff::Auto` uses cells above (2^16)² pairs, as the GPU engine does above N = 2^16. Pass
/// it to [`crate::transport::sinkhorn_with`] or [`crate::transport::sinkhorn_divergence_with`].
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
    /// The cell sums of the current ε, one per direction.
    cells: Vec<CachedCells>,
}

/// A cell sum set up for one ε, δ, grid, targets and sources.
struct CachedCells {
    inv_eps: f64,
    tolerance: f64,
    grid: CellGrid,
    targets: Vec<f64>,
    sources: Vec<f64>,
    pass: CellPass,
}

impl<'a> SinkhornLogSum<'a> {
    /// A pass for `cost` on `ctx`.
    pub fn new(ctx: &'a GpuContext, cost: &Cost) -> Result<Self> {
        let space = Space::new(cost.dim(), cost.space().domain)?;
        Ok(SinkhornLogSum { ctx, cost: *cost, space, pass: None, capacity: 0, cells: Vec::new() })
    }
}

/// Refuses coefficients beyond [`MAX_COEFFICIENT`].
fn check_coefficients(log_coeffs: &[f64]) -> Result<()> {
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
    Ok(())
}

impl LogSum for SinkhornLogSum<'_> {
    fn cost(&self) -> &Cost {
        &self.cost
    }

    fn log_sum(&mut self, targets: &[f64], sources: &[f64], log_coeffs: &[f64], inv_eps: f64) -> Result<Vec<f64>> {
        check_coefficients(log_coeffs)?;
        let kernel = gibbs_kernel(inv_eps);
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

    fn log_sum_cells(
        &mut self,
        grid: &CellGrid,
        tolerance: f64,
        targets: &[f64],
        sources: &[f64],
        log_coeffs: &[f64],
        inv_eps: f64,
    ) -> Result<(Vec<f64>, f64)> {
        check_coefficients(log_coeffs)?;
        self.cells.retain(|c| c.inv_eps == inv_eps && c.tolerance == tolerance);
        let found = self.cells.iter().position(|c| c.grid == *grid && c.targets == targets && c.sources == sources);
        let k = match found {
            Some(k) => k,
            None => {
                let kernel = gibbs_kernel(inv_eps);
                let pass = CellPass::new(self.ctx, &self.space, &kernel, grid, tolerance, targets, sources)?;
                let (grid, targets, sources) = (grid.clone(), targets.to_vec(), sources.to_vec());
                self.cells.push(CachedCells { inv_eps, tolerance, grid, targets, sources, pass });
                self.cells.len() - 1
            }
        };
        let (values, (bound, _)) = self.cells[k].pass.run(self.ctx, log_coeffs)?;
        // An empty neighbourhood reads back as the device's zero: −∞, as on the CPU.
        Ok((values.into_iter().map(|v| from_device_log_weight(v as f32)).collect(), bound))
    }

    fn auto_cells_above(&self) -> usize {
        AUTO_CELLS_ABOVE * AUTO_CELLS_ABOVE
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

/// The cutoff pass on the GPU in f32: the twin of [`crate::transport::sinkhorn_log_sum_cells`]
/// with the same arguments plus the device, returning the values and the largest relative
/// truncation bound over the targets (the CPU twin returns every target's).
#[allow(clippy::too_many_arguments)]
pub fn sinkhorn_log_sum_cells(
    ctx: &GpuContext,
    cost: &Cost,
    grid: &CellGrid,
    tolerance: f64,
    targets: &[f64],
    sources: &[f64],
    log_coeffs: &[f64],
    inv_eps: f64,
) -> Result<(Vec<f64>, f64)> {
    SinkhornLogSum::new(ctx, cost)?.log_sum_cells(grid, tolerance, targets, sources, log_coeffs, inv_eps)
}
