//! A pairwise interaction ½ ∬ W(x, y) m(dx) m(dy) with the user's symmetric W, given twice: a
//! WGSL function spliced into `pair_sum.wgsl` and its Rust twin, checked against each other
//! (`pair_check.wgsl`) when the GPU engine is built. δF/δm(x) = ∫ W(x, y) m(dy).

use super::{Accumulate, CpuEval, CpuTerm, GpuEval, GpuSetup, GpuTerm, HostAt, Term, energy_accumulate};
use crate::engine::gpu::build::{Builder, Pass, read_f32, submit};
use crate::engine::gpu::host::Counts;
use crate::engine::gpu::kernels::{Bind, ELEMENT_WG, Header, KERNEL_WG, Shader};
use crate::engine::pairwise_sum;
use crate::error::{Error, Result};
use crate::model::{Model, Space};
use rayon::prelude::*;
use std::sync::Arc;

/// A pairwise interaction ½ ∬ W(x, y) m(dx) m(dy) with the user's symmetric W, given twice: a
/// WGSL function for the GPU and its Rust twin for the CPU. The GPU engine splices the function
/// into its pairwise-sum shader (`pair_sum.wgsl`) and, when it is built, checks it against the twin
/// on pairs of the particles (an error naming the term and the worst pair beyond 1e-4).
///
/// The WGSL is `fn pair_kernel(x: array<f32, D>, y: array<f32, D>) -> f32`, with `D` the
/// dimension and `SIDE` the torus' side (0 on R^d) as constants in scope; coordinates are the
/// raw ones (on the torus in [0, L), so a periodic W takes the minimum image itself). δF/δm(x) =
/// ∫ W(x, y) m(dy), an N × N sum each evaluation.
#[derive(Clone)]
pub struct PairKernel {
    name: String,
    wgsl: Arc<str>,
    twin: Arc<PairFn>,
}

/// The Rust twin behind a [`PairKernel`].
type PairFn = dyn Fn(&[f64], &[f64]) -> f64 + Send + Sync;

impl PairKernel {
    /// W from its WGSL `pair_kernel` function and its Rust twin, called `name` in messages.
    pub fn new(
        name: impl Into<String>,
        wgsl: impl Into<String>,
        twin: impl Fn(&[f64], &[f64]) -> f64 + Send + Sync + 'static,
    ) -> Self {
        PairKernel { name: name.into(), wgsl: Arc::from(wgsl.into()), twin: Arc::new(twin) }
    }

    /// The name given at construction.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The WGSL function.
    pub fn wgsl(&self) -> &Arc<str> {
        &self.wgsl
    }

    /// W(x, y) by the Rust twin.
    #[inline]
    pub fn value(&self, x: &[f64], y: &[f64]) -> f64 {
        (self.twin)(x, y)
    }
}

impl std::fmt::Debug for PairKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PairKernel({:?})", self.name)
    }
}

/// Two pair kernels are equal when they are the same functions (clones of one another).
impl PartialEq for PairKernel {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.twin, &other.twin) && self.wgsl == other.wgsl && self.name == other.name
    }
}

impl Term for PairKernel {
    fn validate(&self, _space: &Space, _field: &str) -> Result<()> {
        Ok(())
    }

    fn describe(&self) -> String {
        format!("pair kernel {}", self.name)
    }

    fn pairs_per_evaluation(&self, n: usize) -> f64 {
        (n * n) as f64
    }

    fn cpu(&self, _model: &Model, _positions: &[f64]) -> Result<Option<Box<dyn CpuTerm>>> {
        Ok(Some(Box::new(self.clone())))
    }

    fn gpu(&self, s: &mut GpuSetup) -> Result<Option<Box<dyn GpuTerm>>> {
        let header = pair_header(s.header, self, s.model.space.side());
        check_pair_kernel(s.b, &header, self, s.positions, s.model.space.dim)?;
        let pos = s.b.init("pair_pos", bytemuck::cast_slice(&to_f32(s.positions)));
        Ok(Some(Box::new(Gpu { header, pos })))
    }
}

/// Σ_j w_j W(t, X_j) for every target t, in f64 by the kernel's Rust twin (the CPU twin of
/// `pair_sum.wgsl`).
pub fn pair_sum(kernel: &PairKernel, d: usize, targets: &[f64], sources: &[f64], w: &[f64]) -> Vec<f64> {
    targets
        .par_chunks_exact(d)
        .map(|t| {
            pairwise_sum(&sources.chunks_exact(d).zip(w).map(|(y, wj)| wj * kernel.value(t, y)).collect::<Vec<_>>())
        })
        .collect()
}

impl CpuTerm for PairKernel {
    fn add(&self, e: &CpuEval, energy: &mut [(f64, f64)]) -> Result<f64> {
        let l1 = pair_sum(self, e.space.dim, e.targets, e.positions, e.weights);
        let l2: Vec<f64> = l1.iter().map(|v| 0.5 * v).collect();
        energy_accumulate(Accumulate::Linear, &l1, &l2, energy);
        Ok(0.0)
    }
}

use Bind::{Read as R, Uniform as U, Write as W};

const PAIR_SUM: Shader = Shader {
    name: "pair_sum",
    source: include_str!("../../shaders/pair_sum.wgsl"),
    workgroup: KERNEL_WG,
    binds: &[U, R, R, R, W, W, R],
    uniforms: &[size_of::<Counts>()],
};
const PAIR_CHECK: Shader = Shader {
    name: "pair_check",
    source: include_str!("../../shaders/pair_check.wgsl"),
    workgroup: ELEMENT_WG,
    binds: &[U, R, R, W],
    uniforms: &[size_of::<Counts>()],
};

/// The pair kernels' shaders.
pub(super) const SHADERS: &[&Shader] = &[&PAIR_SUM, &PAIR_CHECK];

/// Pairs of particles on which a pair kernel's WGSL is checked against its Rust twin.
const PAIR_CHECKS: usize = 512;

/// f32 copies.
fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|x| *x as f32).collect()
}

/// The engine's constants with `kernel`'s WGSL and the torus' side (0 on R^d) after them.
fn pair_header(header: &Header, kernel: &PairKernel, side: Option<f64>) -> Header {
    let user = format!("const SIDE: f32 = {:?};\n{}", side.unwrap_or(0.0) as f32, kernel.wgsl());
    Header { user: Some(Arc::from(user)), ..header.clone() }
}

/// A `pair_sum` pass over `nt` targets and `ns` sources with bindings (targets, sources, lw, l1,
/// l2, control).
fn pair_sum_pass(b: &Builder, header: &Header, nt: usize, ns: usize, bufs: [&wgpu::Buffer; 6]) -> Result<Pass> {
    let params = Counts { n: nt as u32, aux: ns as u32, m_data: 0, unit: 0.0 };
    b.pass(&PAIR_SUM, header, &params, &bufs, b.grid(nt.div_ceil(KERNEL_WG as usize)))
}

/// Compiles `kernel`'s WGSL and compares it with its Rust twin on pairs of the particles (each
/// particle with itself, and random pairs): an error naming the term and the worst pair when
/// they differ by more than 1e-4 of the largest |W| seen (f32 evaluation of an O(1) formula is
/// good to ~1e-6 of it).
fn check_pair_kernel(b: &Builder, header: &Header, kernel: &PairKernel, positions: &[f64], d: usize) -> Result<()> {
    use rand::{Rng, SeedableRng};
    let n = positions.len() / d;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x9a1f);
    let pairs: Vec<(usize, usize)> = (0..PAIR_CHECKS.min(n * n))
        .map(|k| if k < 8 { (k % n, k % n) } else { (rng.random_range(0..n), rng.random_range(0..n)) })
        .collect();
    let row = |i: usize| &positions[i * d..(i + 1) * d];
    let a: Vec<f64> = pairs.iter().flat_map(|p| row(p.0).to_vec()).collect();
    let c: Vec<f64> = pairs.iter().flat_map(|p| row(p.1).to_vec()).collect();
    let k = pairs.len();
    let (a_buf, c_buf) = (
        b.init("pair_check_a", bytemuck::cast_slice(&to_f32(&a))),
        b.init("pair_check_b", bytemuck::cast_slice(&to_f32(&c))),
    );
    let out = b.zeros("pair_check_out", k * 4);
    let params = Counts { n: k as u32, aux: 0, m_data: 0, unit: 0.0 };
    let pass = b.pass(&PAIR_CHECK, header, &params, &[&a_buf, &c_buf, &out], b.elements(k)).map_err(|e| {
        Error::invalid(format!("pair kernel `{}`", kernel.name()), "its WGSL", format!("WGSL that compiles: {e}"))
    })?;
    submit(b.ctx, &[pass]);
    let gpu = read_f32(b.ctx, &out, k)?;
    let cpu: Vec<f64> = pairs.iter().map(|p| kernel.value(row(p.0), row(p.1))).collect();
    let scale = cpu.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(f64::MIN_POSITIVE);
    let (worst, err) = cpu
        .iter()
        .zip(&gpu)
        .map(|(c, g)| if c.is_finite() && g.is_finite() { (f64::from(*g) - c).abs() / scale } else { f64::INFINITY })
        .enumerate()
        .fold((0, 0.0), |best, (i, e)| if e > best.1 || e.is_nan() { (i, e) } else { best });
    if err > 1e-4 || err.is_nan() {
        let (i, j) = pairs[worst];
        return Err(Error::invalid(
            format!("pair kernel `{}`", kernel.name()),
            format!(
                "WGSL {} against Rust {} at particles {i} and {j}, a difference of {err:.1e} of the largest |W| ({scale:.3e})",
                gpu[worst], cpu[worst]
            ),
            "a WGSL `pair_kernel` that computes what its Rust twin does (to 1e-4)",
        ));
    }
    Ok(())
}

struct Gpu {
    /// The engine's constants with the user's `pair_kernel`.
    header: Header,
    /// The particles' raw coordinates, d f32 per point.
    pos: wgpu::Buffer,
}

impl GpuTerm for Gpu {
    fn passes(&self, e: &GpuEval) -> Result<Vec<Pass>> {
        let n = e.n;
        let pass = pair_sum_pass(e.b, &self.header, n, n, [&self.pos, &self.pos, e.lw, e.l1, e.l2, e.control])?;
        Ok(vec![pass, e.accumulate(Accumulate::Linear, e.l1, e.l2)?])
    }

    fn passes_at(&self, e: &GpuEval, points: &[f64], _host: &mut Vec<HostAt>) -> Result<Vec<Pass>> {
        let tp = e.b.init("at_pair_points", bytemuck::cast_slice(&to_f32(points)));
        let bufs = [&tp, &self.pos, e.lw, e.l1, e.l2, e.control];
        Ok(vec![pair_sum_pass(e.b, &self.header, e.targets, e.n, bufs)?, e.accumulate(Accumulate::Linear, e.l1, e.l2)?])
    }
}
