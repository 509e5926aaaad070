//! C: the gradient flow of F + σ ∫ log(K_ε m / π) dm. h = f(x) + Σ_j w_j K_ε(X_j, x) / d_j with
//! f the log ratio log (K_ε μᴺ / π) (KL) or the ratio (χ²) and d_j = (K_ε μᴺ)(X_j) (KL) or π(X_j)
//! (χ²): two particle × particle sums, the second over the coefficients of `blob_coefficients`.

use super::{CpuDiv, GpuDiv, Kernelization, VariantPasses};
use crate::engine::gpu::build::Pass;
use crate::engine::gpu::host::Counts;
use crate::engine::gpu::kernels::{Bind, ELEMENT_WG, Shader};
use crate::error::Result;

pub(super) struct Blob;

/// Variant C's second-pass coefficients log w_j − log d_j, with d_j = (K μᴺ)(X_j) (KL) or π(X_j)
/// (χ²), so that the next kernel sum gives Σ_j w_j K(X_j, x) / d_j (the CPU twin of
/// `blob_coefficients`).
pub fn blob_coefficients(log_weights: &[f64], log_denominators: &[f64]) -> Vec<f64> {
    log_weights.iter().zip(log_denominators).map(|(l, d)| l - d).collect()
}

use Bind::{Read as R, Uniform as U, Write as W};

const BLOB_COEFFICIENTS: Shader = Shader {
    name: "blob_coefficients",
    source: include_str!("../../shaders/blob_coefficients.wgsl"),
    workgroup: ELEMENT_WG,
    binds: &[U, R, R, R, R, W, R],
    uniforms: &[size_of::<Counts>()],
};

impl Kernelization for Blob {
    fn name(&self) -> &'static str {
        "C"
    }

    fn is_gradient_flow(&self) -> bool {
        true
    }

    fn kernel_sums(&self) -> usize {
        2
    }

    fn particle_sums_only(&self) -> bool {
        true
    }

    fn second_particle_sources(&self) -> bool {
        true
    }

    fn pairs_per_evaluation(&self, n: f64, _q: f64) -> f64 {
        2.0 * n * n
    }

    fn variant_h(&self, c: &CpuDiv) -> (Vec<f64>, Option<f64>) {
        let s = (c.sum_to_targets)(c.log_weights);
        let ratio: Vec<f64> = s.iter().zip(&c.at.log_ref).map(|(s, r)| s - r).collect();
        // Second pass: Σ_j w_j K(x_j, x) / S_j (KL) or / π_j (χ²), with S_j = (K μᴺ)(X_j).
        let coeffs = if c.kl {
            let s_own = if c.at_particles { s.clone() } else { (c.sum_to_particles)(c.log_weights) };
            blob_coefficients(c.log_weights, &s_own)
        } else {
            blob_coefficients(c.log_weights, &c.own.log_ref)
        };
        let second = (c.sum_to_targets)(&coeffs);
        let first: Vec<f64> = if c.kl { ratio } else { ratio.iter().map(|r| r.exp()).collect() };
        let h = first.iter().zip(&second).map(|(f, s)| f + s.exp()).collect();
        let value = c.at_particles.then(|| c.weighted_sum(&first) + self.value_offset(c.kl));
        (h, value)
    }

    fn wgsl(&self) -> &'static str {
        include_str!("../../shaders/variant_blob.wgsl")
    }

    fn passes(&self, g: &GpuDiv) -> Result<VariantPasses> {
        let (b, n) = (g.b, g.n);
        let mut out = (g.eps_sum)(g.src, n, g.src, n, g.logs, false, 0)?;
        let counts = Counts { n: n as u32, aux: 0, m_data: 0, unit: g.eps.layout.unit as f32 };
        out.push(b.pass(
            &BLOB_COEFFICIENTS,
            g.header,
            &counts,
            &[g.lw, g.logs, g.fixed, g.points, g.src2, g.control],
            b.elements(n),
        )?);
        out.extend((g.eps_sum)(g.src2, n, g.src2, n, g.logs2, false, 1)?);
        Ok((out, None))
    }

    fn passes_at(&self, g: &GpuDiv) -> Result<Vec<Pass>> {
        let mut out = (g.eps_sum)(g.points, g.targets, g.src, g.n, g.logs, false, 0)?;
        out.extend((g.eps_sum)(g.points, g.targets, g.src2, g.n, g.logs2, false, 1)?);
        Ok(out)
    }

    fn shaders(&self) -> &'static [&'static Shader] {
        &[&BLOB_COEFFICIENTS]
    }
}
