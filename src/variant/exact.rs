//! The known-density oracle (SPEC §4): no kernel; the density of μ_t at its own particles is
//! N w_i μ₀(X_i), so h = finish(log N + log w_i + log μ₀(X_i) − log π(X_i)). It knows μᴺ's density
//! only at the particles, so `rates_at` refuses it.

use super::{CpuDiv, GpuDiv, Kernelization, VariantPasses};
use crate::engine::gpu::build::Pass;
use crate::error::Result;

pub(super) struct Exact;

impl Kernelization for Exact {
    fn name(&self) -> &'static str {
        "exact"
    }

    fn is_gradient_flow(&self) -> bool {
        true
    }

    fn kernel_sums(&self) -> usize {
        0
    }

    fn pairs_per_evaluation(&self, _n: f64, _q: f64) -> f64 {
        0.0
    }

    fn variant_h(&self, c: &CpuDiv) -> (Vec<f64>, Option<f64>) {
        let mu0 = c.log_mu0.expect("checked when the engine is built");
        let ln_n = (c.log_weights.len() as f64).ln();
        let log_ratio: Vec<f64> =
            c.log_weights.iter().zip(mu0).zip(&c.own.log_ref).map(|((l, m0), r)| ln_n + l + m0 - r).collect();
        let h = c.finish(log_ratio);
        let e: Vec<f64> = if c.kl { h.clone() } else { h.iter().map(|v| 0.5 * v).collect() };
        let value = c.weighted_sum(&e) + self.value_offset(c.kl);
        (h, Some(value))
    }

    fn wgsl(&self) -> &'static str {
        include_str!("../../shaders/variant_exact.wgsl")
    }

    fn passes(&self, _g: &GpuDiv) -> Result<VariantPasses> {
        Ok((Vec::new(), None))
    }

    fn passes_at(&self, _g: &GpuDiv) -> Result<Vec<Pass>> {
        unreachable!("rates_at refuses the oracle")
    }
}
