//! D and D′: the gradient flows of F + σ KL(K_ε m | π) (D) and F + σ KL(K_ε m | K_ε π) (D′). The
//! y-integral is a Gauss–Hermite quadrature over nodes y_{t,q} = x_t + ε ξ_q: h is
//! Σ_q ω_q f(y_{t,q}) plus Σ_{j,q} w_j ω_q K_ε(y_{j,q}, x) / d_{jq}, with f the log ratio (KL) or
//! the ratio (χ²) and d the sum (K_ε μᴺ) (KL) or π (χ²) at the particles' nodes: nodes ←
//! particles, then particles ← nodes over the coefficients of `node_coefficients`.

use super::{CpuDiv, GpuDiv, Kernelization, VariantPasses};
use crate::engine::gpu::build::Pass;
use crate::engine::gpu::host::Counts;
use crate::engine::gpu::kernels::{Bind, ELEMENT_WG, Shader};
use crate::error::Result;

pub(super) struct Smoothed {
    pub name: &'static str,
    pub smooths_reference: bool,
}

/// Variants D and D′: second-pass coefficients at the quadrature nodes,
/// log w_j + log ω_q − log d_{jq} with d = (K μᴺ)(y_{jq}) (KL) or π(y_{jq}) (χ²), nodes ordered
/// particle-major (the CPU twin of `node_coefficients`).
pub fn node_coefficients(log_weights: &[f64], quadrature_weights: &[f64], log_denominators: &[f64]) -> Vec<f64> {
    let q = quadrature_weights.len();
    (0..log_denominators.len())
        .map(|jq| log_weights[jq / q] + quadrature_weights[jq % q].ln() - log_denominators[jq])
        .collect()
}

use Bind::{Read as R, Uniform as U, Write as W};

const NODE_COEFFICIENTS: Shader = Shader {
    name: "node_coefficients",
    source: include_str!("../../shaders/node_coefficients.wgsl"),
    workgroup: ELEMENT_WG,
    binds: &[U, R, R, R, R, R, W, R],
    uniforms: &[size_of::<Counts>()],
};

impl Kernelization for Smoothed {
    fn name(&self) -> &'static str {
        self.name
    }

    fn is_gradient_flow(&self) -> bool {
        true
    }

    fn uses_quadrature(&self) -> bool {
        true
    }

    fn smooths_reference(&self) -> bool {
        self.smooths_reference
    }

    fn kernel_sums(&self) -> usize {
        2
    }

    fn pairs_per_evaluation(&self, n: f64, q: f64) -> f64 {
        2.0 * q * n * n
    }

    fn variant_h(&self, c: &CpuDiv) -> (Vec<f64>, Option<f64>) {
        let quad = c.quadrature;
        let q = quad.len();
        // (K μᴺ) at the particles' nodes (the second pass's denominators) and at the targets' nodes.
        let s_own = (c.sum_from)(&c.own.nodes, false, c.log_weights);
        let s_at = if c.at_particles { s_own.clone() } else { (c.sum_from)(&c.at.nodes, false, c.log_weights) };
        // First term: Σ_q ω_q f(y_{t,q}) with f = log ratio (KL) or ratio (χ²).
        let first: Vec<f64> = s_at
            .iter()
            .zip(&c.at.log_ref_nodes)
            .map(|(s, r)| s - r)
            .collect::<Vec<_>>()
            .chunks_exact(q)
            .map(|r| r.iter().zip(&quad.weights).map(|(r, om)| om * if c.kl { *r } else { r.exp() }).sum())
            .collect();
        // Second term: Σ_{j,q} w_j ω_q K(y_{j,q}, x) / (K μᴺ)(y_{j,q}) (KL) or / π(y_{j,q}) (χ²).
        let denominators = if c.kl { &s_own } else { &c.own.log_ref_nodes };
        let coeffs = node_coefficients(c.log_weights, &quad.weights, denominators);
        let second = (c.sum_from)(c.points, true, &coeffs);
        let h = first.iter().zip(&second).map(|(f, s)| f + s.exp()).collect();
        let value = c.at_particles.then(|| c.weighted_sum(&first) + self.value_offset(c.kl));
        (h, value)
    }

    fn wgsl(&self) -> &'static str {
        include_str!("../../shaders/variant_smoothed.wgsl")
    }

    fn passes(&self, g: &GpuDiv) -> Result<VariantPasses> {
        let (b, n, nq) = (g.b, g.n, g.n * g.q);
        let mut out = (g.eps_sum)(g.nodes, nq, g.src, n, g.node_logs, false, 0)?;
        let counts = Counts { n: nq as u32, aux: g.q as u32, m_data: 0, unit: g.eps.layout.unit as f32 };
        out.push(b.pass(
            &NODE_COEFFICIENTS,
            g.header,
            &counts,
            &[g.lw, g.node_logs, g.node_ref, g.quad, g.nodes, g.node_src, g.control],
            b.elements(nq),
        )?);
        out.extend((g.eps_sum)(g.points, n, g.node_src, nq, g.logs2, true, 1)?);
        Ok((out, None))
    }

    fn passes_at(&self, g: &GpuDiv) -> Result<Vec<Pass>> {
        let (t, q) = (g.targets, g.q);
        let mut out = (g.eps_sum)(g.nodes, t * q, g.src, g.n, g.node_logs, false, 0)?;
        out.extend((g.eps_sum)(g.points, t, g.node_src, g.n * q, g.logs2, true, 1)?);
        Ok(out)
    }

    fn shaders(&self) -> &'static [&'static Shader] {
        &[&NODE_COEFFICIENTS]
    }
}
