//! The kernelization variants of the divergence (SPEC §3), one module each, holding the CPU
//! computation of h_ε (f64), the GPU passes that feed it and the WGSL function `variant_h` that
//! finishes it on the device (`shaders/variant_<module>.wgsl`), so a variant is read in one place:
//!
//! | module | variants | ε-kernel sums per evaluation |
//! |---|---|---|
//! | `measure.rs` | A (`measure`), B (`measure-target`) | one, particles ← particles |
//! | `blob.rs` | C (`blob`) | two, particles ← particles |
//! | `smoothed.rs` | D (`smoothed`), D′ (`smoothed-target`) | nodes ← particles, particles ← nodes |
//! | `exact.rs` | the known-density oracle (`exact`) | none |
//!
//! A variant is registered in this file: a value of [`Variant`] (with its config names) and its
//! arm in `Variant::kernelization`. B and D′ differ from A and D only in the reference they
//! compare with (log K_ε π instead of log π), which [`crate::model::Model::at_points`] provides.

mod blob;
mod exact;
mod measure;
mod smoothed;

pub use blob::blob_coefficients;
pub use smoothed::node_coefficients;

use crate::engine::gpu::build::{Builder, KernelSpace, Pass};
use crate::engine::gpu::kernels::{Header, Shader};
use crate::engine::pairwise_sum;
use crate::error::Result;
use crate::model::{AtPoints, Quadrature};

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
    /// All variants, in SPEC order (the index is the shaders' `VARIANT`).
    pub const ALL: [Variant; 6] = [
        Variant::Measure,
        Variant::MeasureTarget,
        Variant::Blob,
        Variant::Smoothed,
        Variant::SmoothedTarget,
        Variant::Exact,
    ];

    /// The variant's implementation: the registration of each value.
    pub(crate) fn kernelization(self) -> &'static dyn Kernelization {
        match self {
            Variant::Measure => &measure::Measure { name: "A", smooths_reference: false },
            Variant::MeasureTarget => &measure::Measure { name: "B", smooths_reference: true },
            Variant::Blob => &blob::Blob,
            Variant::Smoothed => &smoothed::Smoothed { name: "D", smooths_reference: false },
            Variant::SmoothedTarget => &smoothed::Smoothed { name: "D'", smooths_reference: true },
            Variant::Exact => &exact::Exact,
        }
    }

    /// The short name used in configs and outputs.
    pub fn name(self) -> &'static str {
        self.kernelization().name()
    }

    /// Whether the flow is the Fisher–Rao gradient flow of an energy that frflow reports.
    pub fn is_gradient_flow(self) -> bool {
        self.kernelization().is_gradient_flow()
    }

    /// Whether h needs the quadrature nodes around each particle.
    pub fn uses_quadrature(self) -> bool {
        self.kernelization().uses_quadrature()
    }

    /// Whether h compares against K_ε π rather than π.
    pub fn smooths_reference(self) -> bool {
        self.kernelization().smooths_reference()
    }

    /// Whether h uses the kernel K_ε (every variant but the oracle).
    pub fn uses_kernel(self) -> bool {
        self.kernelization().kernel_sums() > 0
    }

    /// ε-kernel evaluations per evaluation of h at N particles with Q quadrature nodes each
    /// (the bench's pair count).
    pub fn pairs_per_evaluation(self, n: f64, q: f64) -> f64 {
        self.kernelization().pairs_per_evaluation(n, q)
    }

    /// The shaders' `VARIANT` constant.
    pub(crate) fn index(self) -> u32 {
        Variant::ALL.iter().position(|v| *v == self).expect("listed") as u32
    }
}

/// What a kernelization implements.
pub(crate) trait Kernelization: Sync {
    /// The short name (A, B, C, D, D', exact).
    fn name(&self) -> &'static str;

    /// Whether the flow is the gradient flow of F + σ D_ε with D_ε reported.
    fn is_gradient_flow(&self) -> bool;

    /// Whether h integrates over quadrature nodes around each point (D, D′).
    fn uses_quadrature(&self) -> bool {
        false
    }

    /// Whether h compares with K_ε π rather than π (B, D′).
    fn smooths_reference(&self) -> bool {
        false
    }

    /// ε-kernel sums per evaluation (each a cell sum with its own truncation slot under a
    /// cutoff): 0 for the oracle.
    fn kernel_sums(&self) -> usize;

    /// Whether its sums run particles ← particles only (so the CPU engine may keep the N × N
    /// matrix of K_ε).
    fn particle_sums_only(&self) -> bool {
        false
    }

    /// Whether its second sum has sources of its own at the particles (C's coefficients packed
    /// with the positions: the engine keeps a second packed copy).
    fn second_particle_sources(&self) -> bool {
        false
    }

    /// c in D_ε(μᴺ) = Σ_i w_i e_i + c, with e the integrand `variant_h` returns: −1 for χ², whose
    /// integral ∫ (dm/dπ)² dπ − 1 carries the constant (gradient flows only).
    fn value_offset(&self, kl: bool) -> f64 {
        if kl { 0.0 } else { -1.0 }
    }

    /// Kernel evaluations per evaluation at N particles with Q nodes each.
    fn pairs_per_evaluation(&self, n: f64, q: f64) -> f64;

    /// h_ε at the targets and, at the particles of a gradient flow, D_ε(μᴺ) (see [`CpuDiv`]).
    fn variant_h(&self, c: &CpuDiv) -> (Vec<f64>, Option<f64>);

    /// The WGSL of `fn variant_h(i: u32, f: vec4<f32>) -> vec2<f32>` (h_i and the integrand e_i
    /// of the divergence's value), spliced into `divergence_derivative.wgsl`.
    fn wgsl(&self) -> &'static str;

    /// The passes of one evaluation at the particles that fill what `variant_h` reads; a sum
    /// whose chunks `summarise` merges itself may replace `logs` (returned with its chunk count).
    fn passes(&self, g: &GpuDiv) -> Result<VariantPasses>;

    /// The same at `rates_at`'s points, from the sources the last evaluation left.
    fn passes_at(&self, g: &GpuDiv) -> Result<Vec<Pass>>;

    /// Its own shaders (second-pass coefficients).
    fn shaders(&self) -> &'static [&'static Shader] {
        &[]
    }
}

/// An evaluation's passes for a variant, and the first sum's buffer and chunk count when
/// `summarise` merges that split sum itself.
pub(crate) type VariantPasses = (Vec<Pass>, Option<(wgpu::Buffer, u32)>);

/// log Σ_s exp(c_s) K_ε(y, s) at points y (first argument) from the particles or, when the flag
/// is set, from their quadrature nodes, for coefficients c (third argument).
pub(crate) type SumFrom<'a> = dyn Fn(&[f64], bool, &[f64]) -> Vec<f64> + 'a;

/// What a variant's CPU part is given at one evaluation.
pub(crate) struct CpuDiv<'a> {
    /// KL (else χ²).
    pub kl: bool,
    pub log_weights: &'a [f64],
    pub weights: &'a [f64],
    pub quadrature: &'a Quadrature,
    /// log μ₀ at the particles (the oracle's).
    pub log_mu0: Option<&'a [f64]>,
    /// Whether the targets are the particles.
    pub at_particles: bool,
    /// The targets (T × d) and their position-only quantities.
    pub points: &'a [f64],
    pub at: &'a AtPoints,
    /// The particles' position-only quantities.
    pub own: &'a AtPoints,
    /// log Σ_j exp(c_j) K_ε(t, X_j) at the targets (a kept matrix at the particles).
    pub sum_to_targets: &'a dyn Fn(&[f64]) -> Vec<f64>,
    /// The same at the particles.
    pub sum_to_particles: &'a dyn Fn(&[f64]) -> Vec<f64>,
    /// log Σ_s exp(c_s) K_ε(y, s) at points y from the particles or (`nodes`) from the
    /// particles' quadrature nodes.
    pub sum_from: &'a SumFrom<'a>,
}

impl CpuDiv<'_> {
    /// Σ_i w_i v_i.
    pub fn weighted_sum(&self, v: &[f64]) -> f64 {
        pairwise_sum(&self.weights.iter().zip(v).map(|(a, b)| a * b).collect::<Vec<_>>())
    }

    /// δD/δm from log density ratios: log r (KL) or 2 r (χ²).
    pub fn finish(&self, log_ratio: Vec<f64>) -> Vec<f64> {
        if self.kl { log_ratio } else { log_ratio.into_iter().map(|r| 2.0 * r.exp()).collect() }
    }
}

/// One ε-kernel sum on the device: (targets, their count, sources, their count, output, whether
/// the sources are the quadrature nodes, its truncation slot) → its passes (a cell sum where the
/// cutoff uses cells).
pub(crate) type EpsSum<'a> =
    dyn Fn(&wgpu::Buffer, usize, &wgpu::Buffer, usize, &wgpu::Buffer, bool, u32) -> Result<Vec<Pass>> + 'a;

/// The buffers a variant's GPU passes read and write (the engine owns them).
pub(crate) struct GpuDiv<'a, 'b> {
    pub b: &'a Builder<'b>,
    pub header: &'a Header,
    pub eps: &'a KernelSpace,
    /// Particles N, targets T (N at the particles), nodes per point Q.
    pub n: usize,
    pub targets: usize,
    pub q: usize,
    /// Whether the ε-kernel sums are cell sums.
    pub cells: bool,
    pub eps_sum: &'a EpsSum<'a>,
    /// The targets packed for K_ε with no coefficient (the particles, or `rates_at`'s points),
    /// and their quadrature nodes (D, D′).
    pub points: &'a wgpu::Buffer,
    pub nodes: &'a wgpu::Buffer,
    /// The particles packed with log w, and C's and D's second-pass sources.
    pub src: &'a wgpu::Buffer,
    pub src2: &'a wgpu::Buffer,
    pub node_src: &'a wgpu::Buffer,
    pub lw: &'a wgpu::Buffer,
    /// Per target (U, log π or log K_ε π, log μ₀, 0).
    pub fixed: &'a wgpu::Buffer,
    /// What `variant_h` reads: the first and second sums, and at the nodes the sums and log π.
    pub logs: &'a wgpu::Buffer,
    pub logs2: &'a wgpu::Buffer,
    pub node_logs: &'a wgpu::Buffer,
    pub node_ref: &'a wgpu::Buffer,
    /// (ω_q, log ω_q).
    pub quad: &'a wgpu::Buffer,
    pub control: &'a wgpu::Buffer,
}

/// Every variant's own shaders, once each, for the checks that cover every shader.
pub(crate) fn shaders() -> Vec<&'static Shader> {
    let mut all: Vec<&'static Shader> = Vec::new();
    for s in Variant::ALL.iter().flat_map(|v| v.kernelization().shaders()) {
        if !all.iter().any(|a| a.name == s.name) {
            all.push(s);
        }
    }
    all
}
