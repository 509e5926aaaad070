//! The Gaussian-mixture NPMLE F = −(1/M) Σ_k log ∫ φ_s(z_k − x) m(dx): each evaluation sums the
//! particles at the observations (p(z_k), M ← N), turns them into coefficients
//! (`npmle_coefficients`), and sums the observations back at the targets (N ← M):
//! δF/δm(x) = −(1/M) Σ_k φ_s(z_k − x) / p(z_k).

use super::{
    Accumulate, CpuEval, CpuTerm, DataSource, Energy, GpuEval, GpuSetup, GpuTerm, HostAt, Points, Term, TermConfig,
    check_width, energy_accumulate,
};
use crate::config::{DataConfig, DataOrigin};
use crate::engine::cpu::{KernelCells, log_kernel_sum};
use crate::engine::gpu::build::{KernelSpace, Pass, check_binding};
use crate::engine::gpu::cells::DataCells;
use crate::engine::gpu::host::{Counts, DataParams};
use crate::engine::gpu::kernels::{self, Bind, ELEMENT_WG, Shader};
use crate::engine::pairwise_sum;
use crate::error::Result;
use crate::model::{Gaussian, Model, Space};
use std::sync::Arc;

/// Gaussian-mixture NPMLE: F = −(1/M) Σ_k log ∫ φ_s(z_k − x) m(dx).
#[derive(Clone, Debug, PartialEq)]
pub struct Npmle {
    /// Observations z_k (M × d).
    pub observations: Arc<Points>,
    /// Noise standard deviation s > 0.
    pub noise: f64,
}

/// `kind = "npmle"`.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NpmleConfig {
    /// Observation noise s > 0 (at most L on the torus).
    pub noise: f64,
    /// The observations: a file with d columns or a generated mixture.
    pub observations: DataConfig,
}

impl Npmle {
    /// φ_s, normalised.
    fn kernel(&self, space: &Space) -> Result<Gaussian> {
        Gaussian::new(space, self.noise, true, "npmle.noise")
    }
}

impl Term for Npmle {
    fn validate(&self, space: &Space, field: &str) -> Result<()> {
        check_width(space, self.noise, &format!("{field}.noise"))?;
        self.observations.check(&format!("{field}.observations"), space.dim)
    }

    fn describe(&self) -> String {
        format!("npmle (noise {}, M = {})", self.noise, self.observations.len())
    }

    fn pairs_per_evaluation(&self, n: usize) -> f64 {
        2.0 * n as f64 * self.observations.len() as f64
    }

    fn cpu(&self, model: &Model, positions: &[f64]) -> Result<Option<Box<dyn CpuTerm>>> {
        let kernel = self.kernel(&model.space)?;
        let cells = KernelCells::new(model, kernel, positions, &self.observations.values);
        Ok(Some(Box::new(Cpu { observations: self.observations.clone(), kernel, cells })))
    }

    fn gpu(&self, s: &mut GpuSetup) -> Result<Option<Box<dyn GpuTerm>>> {
        let (b, space) = (s.b, &s.model.space);
        let k = self.kernel(space)?;
        let obs = &self.observations.values;
        let m = self.observations.len();
        check_binding(b.ctx, "the NPMLE observations (M packed points)", m, s.header.packed as usize * 16)?;
        let ks = KernelSpace::new(space, k, &[s.positions, obs, s.extra], s.header);
        let packed = ks.pack(s.positions);
        let pos = b.init("npmle_pos", bytemuck::cast_slice(&packed));
        let src = b.init("npmle_src", bytemuck::cast_slice(&packed));
        let packed = ks.pack(obs);
        let obs_buf = b.init("npmle_obs", bytemuck::cast_slice(&packed));
        let obs_src = b.init("npmle_obs_src", bytemuck::cast_slice(&packed));
        let log_p = b.zeros("npmle_log_p", m * 4);
        let cells = DataCells::new(b, &ks, s.model.cutoff, space, s.positions, obs)?;
        let cells = cells.map(|c| Box::new((c, s.take_slots(2))));
        let offset = s.take_data(m);
        Ok(Some(Box::new(Gpu { ks, pos, src, obs: obs_buf, obs_src, log_p, m, offset, cells })))
    }
}

impl TermConfig for NpmleConfig {
    fn build(&self, field: &str, space: &Space, data: &DataSource) -> Result<Energy> {
        let obs = self.observations.points(&format!("{field}.observations"), space.dim, data.base_dir, data.seed)?;
        let npmle = Npmle { observations: Arc::new(obs), noise: self.noise };
        npmle.validate(space, field)?;
        Ok(Energy::Npmle(npmle))
    }

    fn data(&self) -> Vec<(&'static str, &DataConfig)> {
        vec![("observations", &self.observations)]
    }

    fn data_mut(&mut self) -> Vec<&mut DataConfig> {
        vec![&mut self.observations]
    }

    fn origin(&self, dim: usize) -> Option<DataOrigin> {
        Some(self.observations.origin(dim))
    }
}

/// The NPMLE's second-pass coefficients log(1 / (M p_k)) and F's value −Σ_k log p_k / M (the CPU
/// twin of `npmle_coefficients`).
pub fn npmle_coefficients(log_p: &[f64]) -> (Vec<f64>, f64) {
    let m = log_p.len() as f64;
    (log_p.iter().map(|lp| -lp - m.ln()).collect(), -pairwise_sum(log_p) / m)
}

struct Cpu {
    observations: Arc<Points>,
    kernel: Gaussian,
    /// Its cutoff sums between the particles and the observations, where the cutoff uses cells.
    cells: Option<KernelCells>,
}

impl Cpu {
    /// log Σ_s exp(log_coeffs[s]) φ(t − y_s) from the particles (or, with `observations`, from
    /// the observations) to `targets`: by cells where the cutoff uses them.
    fn sum(&self, space: &Space, targets: &[f64], sources: &[f64], observations: bool, log_coeffs: &[f64]) -> Vec<f64> {
        match &self.cells {
            Some(c) => c.sum(space, targets, sources, observations, log_coeffs),
            None => log_kernel_sum(space, &self.kernel, targets, sources, log_coeffs),
        }
    }
}

impl CpuTerm for Cpu {
    fn add(&self, e: &CpuEval, energy: &mut [(f64, f64)]) -> Result<f64> {
        let z = &self.observations.values;
        let log_p = self.sum(e.space, z, e.positions, false, e.log_weights);
        let (coeffs, data) = npmle_coefficients(&log_p);
        let l1 = self.sum(e.space, e.targets, z, true, &coeffs);
        energy_accumulate(Accumulate::Npmle, &l1, &[], energy);
        Ok(data)
    }

    fn cells(&self) -> Option<&KernelCells> {
        self.cells.as_ref()
    }
}

use Bind::{Read as R, Uniform as U, Write as W};

const NPMLE_COEFFICIENTS: Shader = Shader {
    name: "npmle_coefficients",
    source: include_str!("../../shaders/npmle_coefficients.wgsl"),
    workgroup: ELEMENT_WG,
    binds: &[U, R, W, W, R],
    uniforms: &[size_of::<DataParams>()],
};

/// The NPMLE's shaders.
pub(super) const SHADERS: &[&Shader] = &[&NPMLE_COEFFICIENTS];

struct Gpu {
    ks: KernelSpace,
    /// The particles packed for this kernel, no coefficient (targets).
    pos: wgpu::Buffer,
    /// The same with log w (sources).
    src: wgpu::Buffer,
    /// The observations, no coefficient (targets).
    obs: wgpu::Buffer,
    /// The same with −log p(z_k) − log M (sources).
    obs_src: wgpu::Buffer,
    /// log p(z_k) of the current weights.
    log_p: wgpu::Buffer,
    m: usize,
    /// First entry in the data-term buffer.
    offset: usize,
    /// Its cell sums and the first of their two truncation slots, where the cutoff uses them
    /// (boxed: two grids' worth of buffers).
    cells: Option<Box<(DataCells, u32)>>,
}

impl GpuTerm for Gpu {
    fn passes(&self, e: &GpuEval) -> Result<Vec<Pass>> {
        let (b, n, m, ks) = (e.b, e.n, self.m, &self.ks);
        let counts = Counts { n: n as u32, aux: 0, m_data: 0, unit: 0.0 };
        let mut out = vec![b.pass(
            &kernels::PACK_COEFFICIENTS,
            &ks.header,
            &counts,
            &[e.lw, &self.src, e.control],
            b.elements(n),
        )?];
        out.extend(match self.cells.as_deref() {
            Some((c, slot)) => {
                c.to_data.passes(b, &ks.header, &self.obs, &self.src, &self.log_p, e.control, e.truncation, *slot)?
            }
            None => b.kernel_sum(ks, &self.obs, m, &self.src, n, &self.log_p, e.control)?,
        });
        let params = DataParams {
            m: m as u32,
            offset: self.offset as u32,
            a: (m as f64).ln() as f32,
            b: (1.0 / m as f64) as f32,
            ..Default::default()
        };
        out.push(b.pass(
            &NPMLE_COEFFICIENTS,
            &ks.header,
            &params,
            &[&self.log_p, &self.obs_src, e.data_f, e.control],
            b.elements(m),
        )?);
        out.extend(match self.cells.as_deref() {
            Some((c, slot)) => {
                c.from_data.passes(b, &ks.header, &self.pos, &self.obs_src, e.l1, e.control, e.truncation, slot + 1)?
            }
            None => b.kernel_sum(ks, &self.pos, n, &self.obs_src, m, e.l1, e.control)?,
        });
        out.push(e.accumulate(Accumulate::Npmle, e.l1, e.l2)?);
        Ok(out)
    }

    fn passes_at(&self, e: &GpuEval, points: &[f64], _host: &mut Vec<HostAt>) -> Result<Vec<Pass>> {
        let (b, ks) = (e.b, &self.ks);
        let tp = b.init("at_points", bytemuck::cast_slice(&ks.pack(points)));
        let mut out = match self.cells.as_deref() {
            Some((c, _)) => {
                c.at(b, ks, points)?.passes(b, &ks.header, &tp, &self.obs_src, e.l1, e.control, e.truncation, 0)?
            }
            None => b.kernel_sum(ks, &tp, e.targets, &self.obs_src, self.m, e.l1, e.control)?,
        };
        out.push(e.accumulate(Accumulate::Npmle, e.l1, e.l2)?);
        Ok(out)
    }

    fn contains(&self, points: &[f64], dim: usize) -> bool {
        self.ks.layout.contains(points, dim)
    }
}
