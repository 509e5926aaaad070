//! The mean-field two-layer network f_m(z) = ∫ c·tanh(a·z + b) m(dx), x = (a, b, c), with the
//! squared loss (1/2M) Σ_k (y_k − f_m(z_k))² plus penalty/2 · ∫ |x|² dm. Each evaluation runs the
//! network forward over the inputs (M ← N), takes the residuals, and pulls them back to every
//! target (N ← M): `net_forward`, `net_residuals`, `net_backward`, each with its CPU twin here.

use super::{
    Accumulate, CpuEval, CpuTerm, DataSource, Energy, GpuEval, GpuSetup, GpuTerm, HostAt, Points, Term, TermConfig,
    energy_accumulate,
};
use crate::config::{DataConfig, DataOrigin, Generator, under};
use crate::engine::gpu::build::{Builder, Pass, Split, check_binding, split};
use crate::engine::gpu::host::DataParams;
use crate::engine::gpu::kernels::{Bind, ELEMENT_WG, Header, KERNEL_WG, Shader};
use crate::engine::pairwise_sum;
use crate::error::{Error, Result};
use crate::io::data::bumps_regression;
use crate::model::{Model, Space};
use rayon::prelude::*;
use std::sync::Arc;

/// Mean-field two-layer network f_m(z) = ∫ c·tanh(a·z + b) m(dx) with x = (a, b, c), squared
/// loss, plus penalty/2 · ∫ |x|² dm.
#[derive(Clone, Debug, PartialEq)]
pub struct TwoLayerNet {
    /// Inputs z_k (M × p, with p = d − 2).
    pub inputs: Arc<Points>,
    /// Targets y_k (M).
    pub targets: Arc<Vec<f64>>,
    /// λ ≥ 0.
    pub penalty: f64,
}

/// `kind = "two-layer-net"` (d ≥ 3).
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwoLayerNetConfig {
    /// λ ≥ 0 (default 0).
    #[serde(default)]
    pub penalty: f64,
    /// One file of d − 1 columns (inputs, then the target), or `generate = "bumps"`.
    #[serde(default)]
    pub data: Option<Box<DataConfig>>,
    /// The inputs (d − 2 columns), with `targets`, instead of `data`.
    #[serde(default)]
    pub inputs: Option<Box<DataConfig>>,
    /// The targets (1 column), with `inputs`.
    #[serde(default)]
    pub targets: Option<Box<DataConfig>>,
}

impl TwoLayerNet {
    /// The neuron φ(x, z) = c · tanh(a·z + b), x = (a, b, c).
    #[inline]
    pub fn neuron(x: &[f64], z: &[f64]) -> f64 {
        let p = z.len();
        let pre: f64 = x[..p].iter().zip(z).map(|(a, zz)| a * zz).sum::<f64>() + x[p];
        x[p + 1] * pre.tanh()
    }
}

/// The error when the domain is too small for x = (a, b, c).
fn check_dim(d: usize) -> Result<()> {
    if d < 3 {
        return Err(Error::invalid(
            "domain.dim",
            d,
            "at least 3 for a two-layer network (x = (a, b, c) with a of the input dimension d − 2)",
        ));
    }
    Ok(())
}

impl Term for TwoLayerNet {
    fn validate(&self, space: &Space, field: &str) -> Result<()> {
        check_dim(space.dim)?;
        self.inputs.check(&format!("{field}.inputs"), space.dim - 2)?;
        if self.targets.len() != self.inputs.len() {
            return Err(Error::invalid(
                format!("{field}.targets"),
                format!("{} values", self.targets.len()),
                format!("one target per input row ({})", self.inputs.len()),
            ));
        }
        if let Some(v) = self.targets.iter().find(|v| !v.is_finite()) {
            return Err(Error::invalid(format!("{field}.targets"), v, "finite numbers only"));
        }
        if !(self.penalty.is_finite() && self.penalty >= 0.0) {
            return Err(Error::invalid(format!("{field}.penalty"), self.penalty, "a finite number ≥ 0"));
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("two-layer-net (M = {}, penalty {})", self.inputs.len(), self.penalty)
    }

    fn pairs_per_evaluation(&self, n: usize) -> f64 {
        2.0 * n as f64 * self.inputs.len() as f64
    }

    fn cpu(&self, _model: &Model, _positions: &[f64]) -> Result<Option<Box<dyn CpuTerm>>> {
        Ok(Some(Box::new(self.clone())))
    }

    fn gpu(&self, s: &mut GpuSetup) -> Result<Option<Box<dyn GpuTerm>>> {
        let b = s.b;
        let (d, p) = (s.model.space.dim, s.header.packed as usize);
        let (n, m) = (s.positions.len() / d, self.inputs.len());
        check_binding(b.ctx, "the network's inputs (M packed points)", m, p * 16)?;
        let neurons = b.init("net_neurons", bytemuck::cast_slice(&pack_neurons(s.positions, d, p)));
        let inputs = b.init("net_inputs", bytemuck::cast_slice(&pack_inputs(&self.inputs.values, self.inputs.dim, p)));
        let y: Vec<f32> = self.targets.iter().map(|v| *v as f32).collect();
        let y = b.init("net_targets", bytemuck::cast_slice(&y));
        let wg = KERNEL_WG as usize;
        // net_forward always runs split; one chunk when splitting does not pay.
        let split = split(m, n, wg).unwrap_or(Split {
            chunk_len: n.div_ceil(wg) * wg,
            chunks: 1,
            target_groups: m.div_ceil(wg),
        });
        let partials = b.zeros("net_partials", split.chunks * m * 4);
        let resid = b.zeros("net_resid", m * 4);
        let offset = s.take_data(m);
        Ok(Some(Box::new(Gpu { neurons, inputs, y, resid, partials, split, m, penalty: self.penalty, offset })))
    }
}

impl TermConfig for TwoLayerNetConfig {
    fn build(&self, field: &str, space: &Space, source: &DataSource) -> Result<Energy> {
        let d = space.dim;
        check_dim(d)?;
        let base_dir = source.base_dir;
        let (inputs, targets) = match (&self.data, &self.inputs, &self.targets) {
            (Some(data), None, None) => net_data(data, &format!("{field}.data"), d, source)?,
            (None, Some(i), Some(t)) => {
                let inputs = i.file_points(&format!("{field}.inputs"), d - 2, base_dir)?;
                let targets = t.file_points(&format!("{field}.targets"), 1, base_dir)?;
                if targets.len() != inputs.len() {
                    return Err(Error::invalid(
                        format!("{field}.targets"),
                        format!("{} rows", targets.len()),
                        format!("one target per input row ({} rows)", inputs.len()),
                    ));
                }
                (inputs, targets.values)
            }
            _ => {
                return Err(Error::invalid(
                    field,
                    "two-layer-net",
                    "either data = { … } or both inputs = { file = … } and targets = { file = … }",
                ));
            }
        };
        let net = TwoLayerNet { inputs: Arc::new(inputs), targets: Arc::new(targets), penalty: self.penalty };
        net.validate(space, field)?;
        Ok(Energy::TwoLayerNet(net))
    }

    fn data(&self) -> Vec<(&'static str, &DataConfig)> {
        let sets = [("data", &self.data), ("inputs", &self.inputs), ("targets", &self.targets)];
        sets.into_iter().filter_map(|(k, d)| d.as_deref().map(|d| (k, d))).collect()
    }

    fn data_mut(&mut self) -> Vec<&mut DataConfig> {
        [&mut self.data, &mut self.inputs, &mut self.targets].into_iter().filter_map(|d| d.as_deref_mut()).collect()
    }

    fn origin(&self, dim: usize) -> Option<DataOrigin> {
        Some(self.data.as_ref().map_or(DataOrigin::File, |d| d.origin(dim)))
    }
}

/// The network's `data`: a file of d − 1 columns (inputs, then the target) or bumps.
fn net_data(data: &DataConfig, field: &str, d: usize, source: &DataSource) -> Result<(Points, Vec<f64>)> {
    match (&data.file, data.generate) {
        (None, Some(Generator::Bumps)) => {
            data.only(field, &["generate", "m", "noise", "seed"])?;
            if d != 3 {
                return Err(Error::invalid("domain.dim", d, "3 for the bumps data (one input z, so x = (a, b, c))"));
            }
            let m = data.rows(field)?;
            bumps_regression(m, data.noise.unwrap_or(0.0), data.seed.unwrap_or(source.seed))
                .map_err(|e| under(field, e))
        }
        (Some(_), None) => {
            let table = data.file_points(field, d - 1, source.base_dir)?;
            let (p, rows) = (d - 2, table.len());
            let mut inputs = Vec::with_capacity(rows * p);
            let mut targets = Vec::with_capacity(rows);
            for k in 0..rows {
                let row = table.row(k);
                inputs.extend_from_slice(&row[..p]);
                targets.push(row[p]);
            }
            Ok((Points { dim: p, values: inputs }, targets))
        }
        _ => Err(Error::invalid(
            field,
            data.describe(),
            "{ file = \"…\" } (inputs, then the target, in d − 1 columns) or { generate = \"bumps\", m = … }",
        )),
    }
}

/// f_m(z_k) = Σ_i w_i φ(X_i, z_k) for every input z_k (the CPU twin of `net_forward`).
pub fn net_forward(pos: &[f64], d: usize, w: &[f64], inputs: &Points) -> Vec<f64> {
    (0..inputs.len())
        .into_par_iter()
        .map(|k| {
            let z = inputs.row(k);
            pairwise_sum(&pos.chunks_exact(d).zip(w).map(|(x, wi)| wi * TwoLayerNet::neuron(x, z)).collect::<Vec<_>>())
        })
        .collect()
}

/// r_k = y_k − f_m(z_k) and F's data part Σ_k r_k² / 2M (the CPU twin of `net_residuals`).
pub fn net_residuals(f: &[f64], y: &[f64]) -> (Vec<f64>, f64) {
    let r: Vec<f64> = y.iter().zip(f).map(|(y, f)| y - f).collect();
    let data = pairwise_sum(&r.iter().map(|r| r * r).collect::<Vec<_>>()) / (2.0 * y.len() as f64);
    (r, data)
}

/// Per target x: (−(1/M) Σ_k r_k φ(x, z_k) + λ/2 |x|², λ/2 |x|²) (the CPU twin of `net_backward`);
/// with no residuals only the penalty.
pub fn net_backward(targets: &[f64], d: usize, inputs: &Points, r: &[f64], penalty: f64) -> (Vec<f64>, Vec<f64>) {
    let m = inputs.len() as f64;
    targets
        .par_chunks_exact(d)
        .map(|x| {
            let pull = if r.is_empty() {
                0.0
            } else {
                pairwise_sum(
                    &(0..inputs.len()).map(|k| r[k] * TwoLayerNet::neuron(x, inputs.row(k))).collect::<Vec<_>>(),
                )
            };
            let pen = 0.5 * penalty * x.iter().map(|v| v * v).sum::<f64>();
            (-pull / m + pen, pen)
        })
        .unzip()
}

impl CpuTerm for TwoLayerNet {
    fn add(&self, e: &CpuEval, energy: &mut [(f64, f64)]) -> Result<f64> {
        let d = e.space.dim;
        let (r, data) = net_residuals(&net_forward(e.positions, d, e.weights, &self.inputs), &self.targets);
        let (l1, l2) = net_backward(e.targets, d, &self.inputs, &r, self.penalty);
        energy_accumulate(Accumulate::Linear, &l1, &l2, energy);
        Ok(data)
    }
}

/// Mirrors `NetParams` in net_forward.wgsl and net_backward.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct NetParams {
    n: u32,
    m: u32,
    chunk_len: u32,
    target_groups: u32,
    inv_m: f32,
    half_penalty: f32,
    pad0: [f32; 2],
}

use Bind::{Read as R, Uniform as U, Write as W};

const NET_FORWARD: Shader = Shader {
    name: "net_forward",
    source: include_str!("../../shaders/net_forward.wgsl"),
    workgroup: KERNEL_WG,
    binds: &[U, R, R, R, W, R],
    uniforms: &[size_of::<NetParams>()],
};
const NET_RESIDUALS: Shader = Shader {
    name: "net_residuals",
    source: include_str!("../../shaders/net_residuals.wgsl"),
    workgroup: ELEMENT_WG,
    binds: &[U, R, R, W, W, R],
    uniforms: &[size_of::<DataParams>()],
};
const NET_BACKWARD: Shader = Shader {
    name: "net_backward",
    source: include_str!("../../shaders/net_backward.wgsl"),
    workgroup: KERNEL_WG,
    binds: &[U, R, R, R, W, W, R],
    uniforms: &[size_of::<NetParams>()],
};

/// The network's shaders.
pub(super) const SHADERS: &[&Shader] = &[&NET_FORWARD, &NET_RESIDUALS, &NET_BACKWARD];

/// The network's neurons x = (a, b, c) as `packed` vec4 of f32 each: (a, b) in the first d − 1
/// lanes, zeros, c in the last lane (see net_forward.wgsl).
fn pack_neurons(points: &[f64], dim: usize, packed: usize) -> Vec<[f32; 4]> {
    let mut out = vec![[0f32; 4]; points.len() / dim * packed];
    for (x, dst) in points.chunks_exact(dim).zip(out.chunks_exact_mut(packed)) {
        for (k, v) in x[..dim - 1].iter().enumerate() {
            dst[k / 4][k % 4] = *v as f32;
        }
        dst[packed - 1][3] = x[dim - 1] as f32;
    }
    out
}

/// The network's inputs z as `packed` vec4 of f32 each: (z, 1) in the first d − 1 lanes (the 1
/// meets b), zeros after, so that a·z + b is one dot product with a packed neuron.
fn pack_inputs(inputs: &[f64], cols: usize, packed: usize) -> Vec<[f32; 4]> {
    let mut out = vec![[0f32; 4]; inputs.len() / cols * packed];
    for (z, dst) in inputs.chunks_exact(cols).zip(out.chunks_exact_mut(packed)) {
        for (k, v) in z.iter().chain(std::iter::once(&1.0)).enumerate() {
            dst[k / 4][k % 4] = *v as f32;
        }
    }
    out
}

struct Gpu {
    /// The particles as neurons (see `pack_neurons`).
    neurons: wgpu::Buffer,
    /// The inputs (see `pack_inputs`).
    inputs: wgpu::Buffer,
    /// The targets y_k.
    y: wgpu::Buffer,
    /// The residuals r_k of the current weights.
    resid: wgpu::Buffer,
    /// `net_forward`'s per-chunk sums.
    partials: wgpu::Buffer,
    split: Split,
    m: usize,
    penalty: f64,
    /// First entry in the data-term buffer.
    offset: usize,
}

impl Gpu {
    /// A `net_backward` pass over `n` targets with bindings (targets, inputs, resid, l1, l2, control).
    fn backward(&self, b: &Builder, header: &Header, n: usize, bufs: [&wgpu::Buffer; 6]) -> Result<Pass> {
        let params = NetParams {
            n: n as u32,
            m: self.m as u32,
            inv_m: (1.0 / self.m as f64) as f32,
            half_penalty: (0.5 * self.penalty) as f32,
            ..Default::default()
        };
        b.pass(&NET_BACKWARD, header, &params, &bufs, b.grid(n.div_ceil(KERNEL_WG as usize)))
    }
}

impl GpuTerm for Gpu {
    fn passes(&self, e: &GpuEval) -> Result<Vec<Pass>> {
        let (b, header, n, m) = (e.b, e.header, e.n, self.m);
        let split = self.split;
        let params = NetParams {
            n: n as u32,
            m: m as u32,
            chunk_len: split.chunk_len as u32,
            target_groups: split.target_groups as u32,
            inv_m: 1.0 / m as f32,
            half_penalty: (0.5 * self.penalty) as f32,
            pad0: [0.0; 2],
        };
        let forward = b.pass(
            &NET_FORWARD,
            header,
            &params,
            &[e.lw, &self.neurons, &self.inputs, &self.partials, e.control],
            b.grid(split.target_groups * split.chunks),
        )?;
        let resid_params = DataParams {
            m: m as u32,
            chunks: split.chunks as u32,
            offset: self.offset as u32,
            a: (0.5 / m as f64) as f32,
            ..Default::default()
        };
        let residuals = b.pass(
            &NET_RESIDUALS,
            header,
            &resid_params,
            &[&self.partials, &self.y, &self.resid, e.data_f, e.control],
            b.elements(m),
        )?;
        let backward =
            self.backward(b, header, n, [&self.neurons, &self.inputs, &self.resid, e.l1, e.l2, e.control])?;
        Ok(vec![forward, residuals, backward, e.accumulate(Accumulate::Linear, e.l1, e.l2)?])
    }

    fn passes_at(&self, e: &GpuEval, points: &[f64], _host: &mut Vec<HostAt>) -> Result<Vec<Pass>> {
        let (d, p) = (e.header.dim as usize, e.header.packed as usize);
        let tp = e.b.init("at_neurons", bytemuck::cast_slice(&pack_neurons(points, d, p)));
        let bufs = [&tp, &self.inputs, &self.resid, e.l1, e.l2, e.control];
        Ok(vec![self.backward(e.b, e.header, e.targets, bufs)?, e.accumulate(Accumulate::Linear, e.l1, e.l2)?])
    }
}
