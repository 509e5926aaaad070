//! A and B: h = log (K_ε μᴺ)(x) − log π(x) (A) or − log (K_ε π)(x) (B), one ε-kernel sum. The
//! birth–death sampler's rate; not a gradient flow, so no value of D_ε is reported.

use super::{CpuDiv, GpuDiv, Kernelization, VariantPasses};
use crate::engine::gpu::build::Pass;
use crate::error::Result;

pub(super) struct Measure {
    pub name: &'static str,
    pub smooths_reference: bool,
}

impl Kernelization for Measure {
    fn name(&self) -> &'static str {
        self.name
    }

    fn is_gradient_flow(&self) -> bool {
        false
    }

    fn smooths_reference(&self) -> bool {
        self.smooths_reference
    }

    fn kernel_sums(&self) -> usize {
        1
    }

    fn particle_sums_only(&self) -> bool {
        true
    }

    fn pairs_per_evaluation(&self, n: f64, _q: f64) -> f64 {
        n * n
    }

    fn variant_h(&self, c: &CpuDiv) -> (Vec<f64>, Option<f64>) {
        let s = (c.sum_to_targets)(c.log_weights);
        (c.finish(s.iter().zip(&c.at.log_ref).map(|(s, r)| s - r).collect()), None)
    }

    fn wgsl(&self) -> &'static str {
        include_str!("../../shaders/variant_measure.wgsl")
    }

    fn passes(&self, g: &GpuDiv) -> Result<VariantPasses> {
        if g.cells {
            return Ok(((g.eps_sum)(g.src, g.n, g.src, g.n, g.logs, false, 0)?, None));
        }
        // `summarise` merges a split sum's chunks itself: one dispatch fewer.
        let (pass, out, chunks) = g.b.kernel_sum_unmerged(g.eps, g.src, g.n, g.src, g.n, g.control)?;
        Ok((vec![pass], Some((out, chunks))))
    }

    fn passes_at(&self, g: &GpuDiv) -> Result<Vec<Pass>> {
        (g.eps_sum)(g.points, g.targets, g.src, g.n, g.logs, false, 0)
    }
}
