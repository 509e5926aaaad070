//! The maximum mean discrepancy ½ ‖K m − K ν‖² in the RKHS of k(x, y) = exp(−|x − y|² / (2 width²))
//! to a sample's empirical measure ν: δF/δm = k * m − k * ν, one particle × particle sum per
//! evaluation; k * ν at the particles and the constant ½ (1/M²) Σ_kl k(Y_k, Y_l) are computed once.

use super::interaction::{weighted_sum, weighted_sum_at};
use super::{
    Accumulate, CpuEval, CpuTerm, DataSource, Energy, GpuEval, GpuSetup, GpuTerm, HostAt, Points, Term, TermConfig,
    check_width, energy_accumulate,
};
use crate::config::{DataConfig, DataOrigin};
use crate::engine::cells::CellGrid;
use crate::engine::cpu::log_kernel_sum;
use crate::engine::gpu::build::{KernelSpace, Pass, check_binding, read_f32, submit};
use crate::engine::gpu::cells::KernelCells;
use crate::engine::pairwise_sum;
use crate::error::Result;
use crate::model::{Gaussian, Model, Space};
use std::sync::Arc;

/// ½ ‖K m − K ν‖² in the RKHS of k(x, y) = exp(−|x − y|² / (2 width²)), ν the sample's empirical
/// measure.
#[derive(Clone, Debug, PartialEq)]
pub struct Mmd {
    /// Width of k.
    pub width: f64,
    /// The sample Y_1 … Y_M, each of the domain's dimension.
    pub sample: Arc<Points>,
}

/// `kind = "mmd"`.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MmdConfig {
    /// Width of k (> 0; at most L on the torus).
    pub width: f64,
    /// The sample: a file with d columns or a generated mixture.
    pub sample: DataConfig,
}

impl Mmd {
    fn kernel(&self, space: &Space) -> Result<Gaussian> {
        check_width(space, self.width, "mmd.width")
    }

    /// log (k * ν) at `points`.
    fn log_k_nu(&self, space: &Space, kernel: &Gaussian, points: &[f64]) -> Vec<f64> {
        let m = self.sample.len();
        log_kernel_sum(space, kernel, points, &self.sample.values, &vec![-(m as f64).ln(); m])
    }
}

impl Term for Mmd {
    fn validate(&self, space: &Space, field: &str) -> Result<()> {
        check_width(space, self.width, &format!("{field}.width"))?;
        self.sample.check(&format!("{field}.sample"), space.dim)
    }

    fn describe(&self) -> String {
        format!("mmd (width {}, M = {})", self.width, self.sample.len())
    }

    fn pairs_per_evaluation(&self, n: usize) -> f64 {
        (n * n) as f64
    }

    fn cpu(&self, model: &Model, _positions: &[f64]) -> Result<Option<Box<dyn CpuTerm>>> {
        let space = &model.space;
        let kernel = self.kernel(space)?;
        let lm = -(self.sample.len() as f64).ln();
        let nn = self.log_k_nu(space, &kernel, &self.sample.values);
        let cnn = pairwise_sum(&nn.iter().map(|v| (v + lm).exp()).collect::<Vec<_>>());
        Ok(Some(Box::new(Cpu { term: self.clone(), kernel, cnn })))
    }

    fn gpu(&self, s: &mut GpuSetup) -> Result<Option<Box<dyn GpuTerm>>> {
        let (b, space) = (s.b, &s.model.space);
        let k = self.kernel(space)?;
        let (n, m) = (s.positions.len() / space.dim, self.sample.len());
        check_binding(b.ctx, "the MMD sample (M packed points)", m, s.header.packed as usize * 16)?;
        let ks = KernelSpace::new(space, k, &[s.positions, &self.sample.values, s.extra], s.header);
        // Until the first evaluation writes log w, the coefficient slot is SENTINEL: here the
        // particles are the targets of k * ν.
        let src = b.init("mmd_src", bytemuck::cast_slice(&ks.pack(s.positions)));
        let lm = -(m as f64).ln();
        let sample = b.init("mmd_sample", bytemuck::cast_slice(&ks.pack_with(&self.sample.values, &vec![lm; m])));
        let nu = b.zeros("mmd_nu", n * 4);
        let mut fixed = b.kernel_sum(&ks, &src, n, &sample, m, &nu, s.control)?;
        // The sample against itself: the shift starts at each point's own term.
        let cnn = b.zeros("mmd_cnn", m * 4);
        fixed.extend(b.kernel_sum(&ks, &sample, m, &sample, m, &cnn, s.control)?);
        submit(b.ctx, &fixed);
        let v: Vec<f64> = read_f32(b.ctx, &cnn, m)?.into_iter().map(|v| (f64::from(v) + lm).exp()).collect();
        s.f_const += 0.5 * pairwise_sum(&v);
        let cells = KernelCells::new(b, &ks, s.model.cutoff, space, s.positions)?.map(|c| (c, s.take_slots(1)));
        Ok(Some(Box::new(Gpu { ks, src, cells, sample, m, nu })))
    }
}

impl TermConfig for MmdConfig {
    fn build(&self, field: &str, space: &Space, data: &DataSource) -> Result<Energy> {
        let sample = self.sample.points(&format!("{field}.sample"), space.dim, data.base_dir, data.seed)?;
        let mmd = Mmd { width: self.width, sample: Arc::new(sample) };
        mmd.validate(space, field)?;
        Ok(Energy::Mmd(mmd))
    }

    fn data(&self) -> Vec<(&'static str, &DataConfig)> {
        vec![("sample", &self.sample)]
    }

    fn data_mut(&mut self) -> Vec<&mut DataConfig> {
        vec![&mut self.sample]
    }

    fn origin(&self, dim: usize) -> Option<DataOrigin> {
        Some(self.sample.origin(dim))
    }
}

struct Cpu {
    term: Mmd,
    kernel: Gaussian,
    /// (1/M²) Σ_kl k(Y_k, Y_l).
    cnn: f64,
}

impl CpuTerm for Cpu {
    fn kernel(&self) -> Option<Gaussian> {
        Some(self.kernel)
    }

    /// log (k * ν) at the points.
    fn fixed_at(&self, space: &Space, points: &[f64]) -> Option<Vec<f64>> {
        Some(self.term.log_k_nu(space, &self.kernel, points))
    }

    fn add(&self, e: &CpuEval, energy: &mut [(f64, f64)]) -> Result<f64> {
        let l1 = (e.particle_sum)(&self.kernel, e.log_weights);
        energy_accumulate(Accumulate::Mmd, &l1, e.fixed.expect("fixed_at is Some"), energy);
        Ok(0.5 * self.cnn)
    }
}

struct Gpu {
    ks: KernelSpace,
    src: wgpu::Buffer,
    cells: Option<(KernelCells, u32)>,
    /// The sample packed with coefficient −log M.
    sample: wgpu::Buffer,
    m: usize,
    /// log (k * ν)(X_i), fixed.
    nu: wgpu::Buffer,
}

impl GpuTerm for Gpu {
    fn passes(&self, e: &GpuEval) -> Result<Vec<Pass>> {
        let mut out = weighted_sum(e, &self.ks, &self.src, &self.cells)?;
        out.push(e.accumulate(Accumulate::Mmd, e.l1, &self.nu)?);
        Ok(out)
    }

    fn passes_at(&self, e: &GpuEval, points: &[f64], _host: &mut Vec<HostAt>) -> Result<Vec<Pass>> {
        let tp = e.b.init("at_points", bytemuck::cast_slice(&self.ks.pack(points)));
        let mut out = weighted_sum_at(e, &self.ks, &tp, &self.src, &self.cells, points)?;
        out.extend(e.b.kernel_sum(&self.ks, &tp, e.targets, &self.sample, self.m, e.l2, e.control)?);
        out.push(e.accumulate(Accumulate::Mmd, e.l1, e.l2)?);
        Ok(out)
    }

    fn contains(&self, points: &[f64], dim: usize) -> bool {
        self.ks.layout.contains(points, dim)
    }

    fn grid(&self) -> Option<&CellGrid> {
        self.cells.as_ref().map(|c| &c.0.grid)
    }
}
