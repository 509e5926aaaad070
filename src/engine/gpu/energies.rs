//! Every term of F beyond the potential, on the device: each term's GPU part (see
//! [`crate::energy`]) uploads its data once; each evaluation runs every term's passes, which add
//! its δF/δm to the per-particle total `energy = (δF, f)` (f: F's per-particle part) and write
//! F's per-data-point part to `data_f`.
//!
//! | term | passes per evaluation (targets ← sources) | at other points (`rates_at`) |
//! |---|---|---|
//! | interaction | `pack_coefficients`, `log_kernel_sum` (N ← N) | `log_kernel_sum` (T ← N) |
//! | MMD | `pack_coefficients`, `log_kernel_sum` (N ← N); k * ν (N ← M) once | the same two (T ← N, T ← M) |
//! | network | `net_forward` (M ← N, split), `net_residuals`, `net_backward` (N ← M) | `net_backward` (T ← M) |
//! | NPMLE | `pack_coefficients`, `log_kernel_sum` (M ← N), `npmle_coefficients`, `log_kernel_sum` (N ← M) | `log_kernel_sum` (T ← M) |
//! | pair kernel | `pair_sum` (N ← N) with the user's `pair_kernel` | `pair_sum` (T ← N) |
//! | the user's whole term | none: δF/δm computed on the host and uploaded before the evaluation | the same at the points |
//!
//! each followed by `energy_accumulate`. Kernel terms have their own width, so each packs the
//! particles (and its data) in its own scaled layout; `pack_coefficients` refreshes the log-weights
//! in that copy. With a cutoff, the interaction's and the MMD's N ← N and T ← N sums and the
//! NPMLE's are cell sums on grids for their own width (see the `cells` module), as on the CPU.

use super::build::{Builder, Pass};
use super::cells::largest;
use super::context::GpuContext;
use super::kernels::Header;
use crate::energy::{GpuEval, GpuSetup, GpuTerm, HostAt, upload_host_term};
use crate::engine::cells::CellGrid;
use crate::error::Result;
use crate::model::Model;

/// Every non-potential energy term of a model, on the device.
pub(crate) struct Energies {
    terms: Vec<Box<dyn GpuTerm>>,
    /// F's per-data-point terms (r_k²/2M, −log p_k / M), all terms concatenated.
    pub data_f: wgpu::Buffer,
    /// Entries of `data_f`.
    pub m_data: usize,
    /// F's constant parts (the MMD's ½ (1/M²) Σ_kl k(Y_k, Y_l)), f64 from the device's f32 sums.
    pub f_const: f64,
    /// Scratch per particle: a term's kernel sums.
    l1: wgpu::Buffer,
    l2: wgpu::Buffer,
    /// Zeros per particle (a host term's share of F is added on the host).
    zeros: wgpu::Buffer,
    /// (bound bits, target) per cell sum of the terms.
    truncation: wgpu::Buffer,
    slots: usize,
}

impl Energies {
    /// Uploads the terms' data, packed for `positions` (N × d) and, in the layouts' bounding
    /// boxes, `extra` points. `control` must be a running block.
    pub fn new(
        b: &Builder,
        model: &Model,
        positions: &[f64],
        extra: &[f64],
        header: &Header,
        control: &wgpu::Buffer,
    ) -> Result<Self> {
        let n = positions.len() / model.space.dim;
        let mut setup =
            GpuSetup { b, model, positions, extra, header, control, slots: 0, data_entries: 0, f_const: 0.0 };
        let mut terms = Vec::new();
        for e in &model.energy {
            terms.extend(e.term().gpu(&mut setup)?);
        }
        let (slots, m_data, f_const) = (setup.slots, setup.data_entries, setup.f_const);
        Ok(Energies {
            terms,
            data_f: b.zeros("data_f", m_data * 4),
            m_data,
            f_const,
            l1: b.zeros("energy_l1", n * 4),
            l2: b.zeros("energy_l2", n * 4),
            zeros: b.zeros("energy_zeros", n * 4),
            truncation: b.zeros("energy_truncation", slots * 8),
            slots,
        })
    }

    /// Whether any term sums by cells.
    pub fn has_cells(&self) -> bool {
        self.slots > 0
    }

    /// The largest truncation bound of the last evaluation's cell sums (0 without any).
    pub fn largest_bound(&self, ctx: &GpuContext) -> Result<f64> {
        if self.slots == 0 { Ok(0.0) } else { largest(ctx, &self.truncation, self.slots) }
    }

    /// The first kernel term's grid, where it has one.
    pub fn first_grid(&self) -> Option<&CellGrid> {
        self.terms.iter().find_map(|t| t.grid())
    }

    /// Whether the host evaluates any term at every evaluation.
    pub fn has_host_terms(&self) -> bool {
        self.terms.iter().any(|t| t.host().is_some())
    }

    /// The names of the terms the host evaluates at every evaluation (the user's whole terms).
    pub fn host_terms(&self) -> Vec<&str> {
        self.terms.iter().filter_map(|t| t.host()).map(|(term, _)| term.0.name()).collect()
    }

    /// Evaluates the host's terms for the particles at `positions` with `weights` and uploads
    /// their δF/δm; returns their F(μᴺ), summed.
    pub fn upload_host_terms(
        &self,
        queue: &wgpu::Queue,
        positions: &[f64],
        weights: &[f64],
        dim: usize,
    ) -> Result<f64> {
        let mut f = 0.0;
        for (term, values) in self.terms.iter().filter_map(|t| t.host()) {
            f += upload_host_term(queue, term, values, positions, weights, positions, dim)?;
        }
        Ok(f)
    }

    /// Whether every kernel term's layout can pack `points` (see `Layout::contains`).
    pub fn contains(&self, points: &[f64], dim: usize) -> bool {
        self.terms.iter().all(|t| t.contains(points, dim))
    }

    /// The passes of one evaluation at the particles: every term's δF and F parts into
    /// `energy`, and the data terms into `data_f`.
    #[allow(clippy::too_many_arguments)]
    pub fn passes(
        &self,
        b: &Builder,
        header: &Header,
        n: usize,
        lw: &wgpu::Buffer,
        fixed: &wgpu::Buffer,
        energy: &wgpu::Buffer,
        control: &wgpu::Buffer,
    ) -> Result<Vec<Pass>> {
        let e = GpuEval {
            b,
            header,
            targets: n,
            n,
            lw,
            l1: &self.l1,
            l2: &self.l2,
            zeros: &self.zeros,
            fixed,
            energy,
            data_f: &self.data_f,
            truncation: &self.truncation,
            control,
            first: true,
        };
        let mut out = Vec::new();
        for (idx, term) in self.terms.iter().enumerate() {
            out.extend(term.passes(&GpuEval { first: idx == 0, ..e })?);
        }
        Ok(out)
    }

    /// The passes that add every term's δF at `t` other points (row-major in `points`) to
    /// `energy`, from the current evaluation's device state (log-weights in the packed copies,
    /// residuals, NPMLE coefficients). `fixed` holds U at the points. Also returns the host's
    /// terms with the buffers their values at the points go into before each submission.
    #[allow(clippy::too_many_arguments)]
    pub fn passes_at(
        &self,
        b: &Builder,
        header: &Header,
        n: usize,
        points: &[f64],
        lw: &wgpu::Buffer,
        fixed: &wgpu::Buffer,
        energy: &wgpu::Buffer,
        control: &wgpu::Buffer,
    ) -> Result<(Vec<Pass>, Vec<HostAt>)> {
        let t = points.len() / header.dim as usize;
        let (l1, l2, zeros) = (b.zeros("at_l1", t * 4), b.zeros("at_l2", t * 4), b.zeros("at_zeros", t * 4));
        // The cell sums' bounds at the points: the control block carries one above max_error.
        let truncation = b.zeros("at_energy_truncation", 8);
        let e = GpuEval {
            b,
            header,
            targets: t,
            n,
            lw,
            l1: &l1,
            l2: &l2,
            zeros: &zeros,
            fixed,
            energy,
            data_f: &self.data_f,
            truncation: &truncation,
            control,
            first: true,
        };
        let (mut out, mut host) = (Vec::new(), Vec::new());
        for (idx, term) in self.terms.iter().enumerate() {
            out.extend(term.passes_at(&GpuEval { first: idx == 0, ..e }, points, &mut host)?);
        }
        Ok((out, host))
    }
}
