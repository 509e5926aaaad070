//! The interaction ½ ∬ W(x − y) m(dx) m(dy), W(r) = strength · exp(−|r|² / (2 width²)):
//! δF/δm(x) = (W * m)(x), one particle × particle kernel sum per evaluation.

use super::{
    Accumulate, CpuEval, CpuTerm, DataSource, Energy, GpuEval, GpuSetup, GpuTerm, HostAt, Term, TermConfig,
    check_width, energy_accumulate,
};
use crate::engine::cells::CellGrid;
use crate::engine::gpu::build::{KernelSpace, Pass};
use crate::engine::gpu::cells::KernelCells;
use crate::engine::gpu::host::Counts;
use crate::engine::gpu::kernels;
use crate::error::{Error, Result};
use crate::model::{Gaussian, Model, Space};

/// ½ ∬ W(x − y) m(dx) m(dy) with W(r) = strength · exp(−|r|² / (2 width²)). Also the
/// `kind = "interaction"` config (it has no data to load).
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interaction {
    /// Scale of W (> 0: repulsive and convex, since a Gaussian is positive definite).
    pub strength: f64,
    /// Width of W (> 0; at most L on the torus).
    pub width: f64,
}

impl Interaction {
    fn kernel(&self, space: &Space) -> Result<Gaussian> {
        check_width(space, self.width, "interaction.width")
    }
}

impl Term for Interaction {
    fn validate(&self, space: &Space, field: &str) -> Result<()> {
        if !self.strength.is_finite() {
            return Err(Error::invalid(format!("{field}.strength"), self.strength, "a finite number"));
        }
        check_width(space, self.width, &format!("{field}.width")).map(|_| ())
    }

    fn describe(&self) -> String {
        format!("interaction (strength {}, width {})", self.strength, self.width)
    }

    fn pairs_per_evaluation(&self, n: usize) -> f64 {
        (n * n) as f64
    }

    fn cpu(&self, model: &Model, _positions: &[f64]) -> Result<Option<Box<dyn CpuTerm>>> {
        Ok(Some(Box::new(Cpu { kernel: self.kernel(&model.space)?, strength: self.strength })))
    }

    fn gpu(&self, s: &mut GpuSetup) -> Result<Option<Box<dyn GpuTerm>>> {
        let k = self.kernel(&s.model.space)?;
        let ks = KernelSpace::new(&s.model.space, k, &[s.positions, s.extra], s.header);
        let src = s.b.init("interaction_src", bytemuck::cast_slice(&ks.pack(s.positions)));
        let cells = KernelCells::new(s.b, &ks, s.model.cutoff, &s.model.space, s.positions)?;
        let cells = cells.map(|c| (c, s.take_slots(1)));
        Ok(Some(Box::new(Gpu { ks, src, strength: self.strength, cells })))
    }
}

impl TermConfig for Interaction {
    fn build(&self, field: &str, space: &Space, _data: &DataSource) -> Result<Energy> {
        self.validate(space, field)?;
        Ok(Energy::Interaction(self.clone()))
    }
}

struct Cpu {
    kernel: Gaussian,
    strength: f64,
}

impl CpuTerm for Cpu {
    fn kernel(&self) -> Option<Gaussian> {
        Some(self.kernel)
    }

    fn add(&self, e: &CpuEval, energy: &mut [(f64, f64)]) -> Result<f64> {
        let l1 = (e.particle_sum)(&self.kernel, e.log_weights);
        energy_accumulate(Accumulate::Interaction { strength: self.strength }, &l1, &[], energy);
        Ok(0.0)
    }
}

struct Gpu {
    ks: KernelSpace,
    /// The particles packed for this kernel; the coefficient slot holds log w.
    src: wgpu::Buffer,
    strength: f64,
    /// The cell sums and their truncation slot, where the cutoff uses cells.
    cells: Option<(KernelCells, u32)>,
}

impl GpuTerm for Gpu {
    fn passes(&self, e: &GpuEval) -> Result<Vec<Pass>> {
        let mut out = weighted_sum(e, &self.ks, &self.src, &self.cells)?;
        out.push(e.accumulate(Accumulate::Interaction { strength: self.strength }, e.l1, e.l2)?);
        Ok(out)
    }

    fn passes_at(&self, e: &GpuEval, points: &[f64], _host: &mut Vec<HostAt>) -> Result<Vec<Pass>> {
        let tp = e.b.init("at_points", bytemuck::cast_slice(&self.ks.pack(points)));
        let mut out = weighted_sum_at(e, &self.ks, &tp, &self.src, &self.cells, points)?;
        out.push(e.accumulate(Accumulate::Interaction { strength: self.strength }, e.l1, e.l2)?);
        Ok(out)
    }

    fn contains(&self, points: &[f64], dim: usize) -> bool {
        self.ks.layout.contains(points, dim)
    }

    fn grid(&self) -> Option<&CellGrid> {
        self.cells.as_ref().map(|c| &c.0.grid)
    }
}

/// Σ_j w_j k(X_i, X_j) at the particles into `e.l1`: the current log-weights into the term's
/// packed copy of the particles `src`, then its kernel sum (by cells where it has them). The
/// interaction's and the MMD's first part.
pub(super) fn weighted_sum(
    e: &GpuEval,
    ks: &KernelSpace,
    src: &wgpu::Buffer,
    cells: &Option<(KernelCells, u32)>,
) -> Result<Vec<Pass>> {
    let (b, n) = (e.b, e.n);
    let params = Counts { n: n as u32, aux: 0, m_data: 0, unit: 0.0 };
    let mut out =
        vec![b.pass(&kernels::PACK_COEFFICIENTS, &ks.header, &params, &[e.lw, src, e.control], b.elements(n))?];
    out.extend(match cells {
        Some((c, slot)) => c.sum.passes(b, &ks.header, src, src, e.l1, e.control, e.truncation, *slot)?,
        None => b.kernel_sum(ks, src, n, src, n, e.l1, e.control)?,
    });
    Ok(out)
}

/// Σ_j w_j k(x_t, X_j) at `points` (packed for `ks` in `tp`) into `e.l1`, from the packed copy
/// of the particles the last evaluation filled (by cells where that evaluation used them; their
/// bound goes to slot 0).
pub(super) fn weighted_sum_at(
    e: &GpuEval,
    ks: &KernelSpace,
    tp: &wgpu::Buffer,
    src: &wgpu::Buffer,
    cells: &Option<(KernelCells, u32)>,
    points: &[f64],
) -> Result<Vec<Pass>> {
    let b = e.b;
    match cells {
        Some((c, _)) => c.at(b, ks, points)?.passes(b, &ks.header, tp, src, e.l1, e.control, e.truncation, 0),
        None => b.kernel_sum(ks, tp, e.targets, src, e.n, e.l1, e.control),
    }
}
