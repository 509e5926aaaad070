//! The energies of SPEC §5 beyond the potential, on the device: their data sets are uploaded
//! once and stay there; each evaluation adds every term's δF/δm to the per-particle total
//! `energy = (δF, f)` (f: F's per-particle part) and writes F's per-data-point part to `data_f`.
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
//! in that copy. The MMD's constant (1/M²) Σ_kl k(Y_k, Y_l) is an M × M pass at construction,
//! summed on the host in f64. With a cutoff, the interaction's and the MMD's N ← N and T ← N sums
//! are cell sums on a grid for their own width (see the `cells` module), as on the CPU.

use super::build::{Builder, KernelSpace, Pass, Split, read_f32, split, submit};
use super::cells::{DataCells, KernelCells, largest};
use super::context::GpuContext;
use super::host::{AccumulateParams, Counts, DataParams, NetParams, pack_inputs, pack_neurons};
use super::kernels::{self, Header, KERNEL_WG};
use crate::engine::pairwise_sum;
use crate::error::Error;
use crate::error::Result;
use crate::model::{CustomTerm, Energy, Gaussian, Model, PairKernel};
use std::sync::Arc;

/// `kind` in energy_accumulate.wgsl.
const INTERACTION: u32 = 0;
const MMD: u32 = 1;
const LINEAR: u32 = 2;
const NPMLE: u32 = 3;

/// A user's whole term and the buffer its δF/δm at `rates_at`'s points is written into.
pub(crate) type HostAt = (CustomTerm, wgpu::Buffer);

/// Pairs of particles on which a pair kernel's WGSL is checked against its Rust twin.
const PAIR_CHECKS: usize = 512;

/// One energy term's device data.
enum Term {
    Interaction {
        ks: KernelSpace,
        /// The particles packed for this kernel; the coefficient slot holds log w.
        src: wgpu::Buffer,
        strength: f64,
        /// The cell sums and their truncation slot, where the cutoff uses cells.
        cells: Option<(KernelCells, u32)>,
    },
    Mmd {
        ks: KernelSpace,
        src: wgpu::Buffer,
        cells: Option<(KernelCells, u32)>,
        /// The sample packed with coefficient −log M.
        sample: wgpu::Buffer,
        m: usize,
        /// log (k * ν)(X_i), fixed.
        nu: wgpu::Buffer,
    },
    Network {
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
    },
    Npmle {
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
        offset: usize,
        /// Its cell sums and the first of their two truncation slots, where the cutoff uses them
        /// (boxed: two grids' worth of buffers, against the other terms' few).
        cells: Option<Box<(DataCells, u32)>>,
    },
    Pair {
        /// The engine's constants with the user's `pair_kernel`.
        header: Header,
        /// The particles' raw coordinates, d f32 per point.
        pos: wgpu::Buffer,
    },
    Host {
        term: CustomTerm,
        /// δF/δm at the particles, uploaded before each evaluation.
        values: wgpu::Buffer,
    },
}

/// Every non-potential energy term of a model, on the device.
pub(crate) struct Energies {
    terms: Vec<Term>,
    /// F's per-data-point terms (r_k²/2M, −log p_k / M), all terms concatenated.
    pub data_f: wgpu::Buffer,
    /// Entries of `data_f`.
    pub m_data: usize,
    /// F's constant: ½ (1/M²) Σ_kl k(Y_k, Y_l) summed over the MMD terms (f64, from the device's
    /// f32 kernel sums).
    pub f_const: f64,
    /// Scratch per particle: a term's kernel sums.
    l1: wgpu::Buffer,
    l2: wgpu::Buffer,
    /// Zeros per particle (a host term's share of F is added on the host).
    zeros: wgpu::Buffer,
    /// (bound bits, target) per term with cell sums.
    truncation: wgpu::Buffer,
    slots: usize,
}

impl Energies {
    /// Uploads the terms' data, packed for `positions` (N × d) and, in the layouts' bounding
    /// boxes, `extra` points; computes the MMD's fixed sums. `control` must be a running block.
    pub fn new(
        b: &Builder,
        model: &Model,
        positions: &[f64],
        extra: &[f64],
        header: &Header,
        control: &wgpu::Buffer,
    ) -> Result<Self> {
        let (space, d, p) = (&model.space, model.space.dim, header.packed as usize);
        let n = positions.len() / d;
        let mut terms = Vec::new();
        let (mut m_data, mut f_const) = (0, 0.0);
        let mut fixed_passes = Vec::new();
        let mut cnn_out = Vec::new();
        let mut slots = 0;
        // A kernel term's cells and its truncation slot, where the cutoff uses them.
        let cells = |ks: &KernelSpace, slots: &mut usize| -> Result<Option<(KernelCells, u32)>> {
            let c = KernelCells::new(b, ks, model.cutoff, space, positions)?.map(|c| (c, *slots as u32));
            *slots += usize::from(c.is_some());
            Ok(c)
        };
        for e in &model.energy {
            match e {
                Energy::Potential(_) => {}
                Energy::Interaction { strength, width } => {
                    let k = Gaussian::new(space, *width, false, "interaction.width")?;
                    let ks = KernelSpace::new(space, k, &[positions, extra], header);
                    let src = b.init("interaction_src", bytemuck::cast_slice(&ks.pack(positions)));
                    let cells = cells(&ks, &mut slots)?;
                    terms.push(Term::Interaction { ks, src, strength: *strength, cells });
                }
                Energy::Mmd { width, sample } => {
                    let k = Gaussian::new(space, *width, false, "mmd.width")?;
                    let m = sample.len();
                    super::build::check_binding(b.ctx, "the MMD sample (M packed points)", m, p * 16)?;
                    let ks = KernelSpace::new(space, k, &[positions, &sample.values, extra], header);
                    // Until the first evaluation writes log w, the coefficient slot is SENTINEL:
                    // here the particles are the targets of k * ν.
                    let src = b.init("mmd_src", bytemuck::cast_slice(&ks.pack(positions)));
                    let lm = -(m as f64).ln();
                    let packed = ks.pack_with(&sample.values, &vec![lm; m]);
                    let sample_buf = b.init("mmd_sample", bytemuck::cast_slice(&packed));
                    let nu = b.zeros("mmd_nu", n * 4);
                    fixed_passes.extend(b.kernel_sum(&ks, &src, n, &sample_buf, m, &nu, control)?);
                    // The sample against itself: the shift starts at each point's own term.
                    let cnn = b.zeros("mmd_cnn", m * 4);
                    fixed_passes.extend(b.kernel_sum(&ks, &sample_buf, m, &sample_buf, m, &cnn, control)?);
                    cnn_out.push((cnn, m));
                    let cells = cells(&ks, &mut slots)?;
                    terms.push(Term::Mmd { ks, src, cells, sample: sample_buf, m, nu });
                }
                Energy::TwoLayerNet { inputs, targets, penalty } => {
                    let m = inputs.len();
                    super::build::check_binding(b.ctx, "the network's inputs (M packed points)", m, p * 16)?;
                    let neurons = b.init("net_neurons", bytemuck::cast_slice(&pack_neurons(positions, d, p)));
                    let packed = pack_inputs(&inputs.values, inputs.dim, p);
                    let inputs_buf = b.init("net_inputs", bytemuck::cast_slice(&packed));
                    let y: Vec<f32> = targets.iter().map(|v| *v as f32).collect();
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
                    terms.push(Term::Network {
                        neurons,
                        inputs: inputs_buf,
                        y,
                        resid,
                        partials,
                        split,
                        m,
                        penalty: *penalty,
                        offset: m_data,
                    });
                    m_data += m;
                }
                Energy::Npmle { observations, noise } => {
                    let k = Gaussian::new(space, *noise, true, "npmle.noise")?;
                    let m = observations.len();
                    super::build::check_binding(b.ctx, "the NPMLE observations (M packed points)", m, p * 16)?;
                    let ks = KernelSpace::new(space, k, &[positions, &observations.values, extra], header);
                    let packed = ks.pack(positions);
                    let pos = b.init("npmle_pos", bytemuck::cast_slice(&packed));
                    let src = b.init("npmle_src", bytemuck::cast_slice(&packed));
                    let packed = ks.pack(&observations.values);
                    let obs = b.init("npmle_obs", bytemuck::cast_slice(&packed));
                    let obs_src = b.init("npmle_obs_src", bytemuck::cast_slice(&packed));
                    let log_p = b.zeros("npmle_log_p", m * 4);
                    let cells = DataCells::new(b, &ks, model.cutoff, space, positions, &observations.values)?
                        .map(|c| Box::new((c, slots as u32)));
                    slots += 2 * usize::from(cells.is_some());
                    terms.push(Term::Npmle { ks, pos, src, obs, obs_src, log_p, m, offset: m_data, cells });
                    m_data += m;
                }
                Energy::Pair(kernel) => {
                    let header = pair_header(header, kernel, space.side());
                    check_pair_kernel(b, &header, kernel, positions, d)?;
                    let pos = b.init("pair_pos", bytemuck::cast_slice(&to_f32(positions)));
                    terms.push(Term::Pair { header, pos });
                }
                Energy::Custom(term) => {
                    terms.push(Term::Host { term: term.clone(), values: b.zeros("host_values", n * 4) });
                }
            }
        }
        if !fixed_passes.is_empty() {
            submit(b.ctx, &fixed_passes);
            for (cnn, m) in cnn_out {
                let lm = -(m as f64).ln();
                let v: Vec<f64> = read_f32(b.ctx, &cnn, m)?.into_iter().map(|v| (f64::from(v) + lm).exp()).collect();
                f_const += 0.5 * pairwise_sum(&v);
            }
        }
        let data_f = b.zeros("data_f", m_data * 4);
        let l1 = b.zeros("energy_l1", n * 4);
        let l2 = b.zeros("energy_l2", n * 4);
        let truncation = b.zeros("energy_truncation", slots * 8);
        let zeros = b.zeros("energy_zeros", n * 4);
        Ok(Energies { terms, data_f, m_data, f_const, l1, l2, zeros, truncation, slots })
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
    pub fn first_grid(&self) -> Option<&crate::engine::cells::CellGrid> {
        self.terms.iter().find_map(|t| match t {
            Term::Interaction { cells: Some((c, _)), .. } | Term::Mmd { cells: Some((c, _)), .. } => Some(&c.grid),
            _ => None,
        })
    }

    /// The names of the terms the host evaluates at every evaluation (the user's whole terms).
    pub fn host_terms(&self) -> Vec<&str> {
        self.terms
            .iter()
            .filter_map(|t| match t {
                Term::Host { term, .. } => Some(term.0.name()),
                _ => None,
            })
            .collect()
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
        for t in &self.terms {
            if let Term::Host { term, values } = t {
                f += upload_host_term(queue, term, values, positions, weights, positions, dim)?;
            }
        }
        Ok(f)
    }

    /// Whether every kernel term's layout can pack `points` (see `Layout::contains`).
    pub fn contains(&self, points: &[f64], dim: usize) -> bool {
        self.terms.iter().all(|t| match t {
            Term::Interaction { ks, .. } | Term::Mmd { ks, .. } | Term::Npmle { ks, .. } => {
                ks.layout.contains(points, dim)
            }
            Term::Network { .. } | Term::Pair { .. } | Term::Host { .. } => true,
        })
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
        let mut out = Vec::new();
        let n_params = Counts { n: n as u32, aux: 0, m_data: 0, unit: 0.0 };
        let (l1, l2) = (&self.l1, &self.l2);
        for (idx, term) in self.terms.iter().enumerate() {
            let acc = |kind: u32, strength: f64, l2: &wgpu::Buffer| {
                accumulate(b, header, n, idx == 0, kind, strength, [fixed, l1, l2, energy, control])
            };
            // Σ_j w_j k(X_i, X_j) into l1: the current weights into the term's packed copy of
            // the particles, then its kernel sum (interaction and MMD share this part).
            let weighted_sum = |out: &mut Vec<Pass>,
                                ks: &KernelSpace,
                                src: &wgpu::Buffer,
                                cells: &Option<(KernelCells, u32)>|
             -> Result<()> {
                let pack =
                    b.pass(&kernels::PACK_COEFFICIENTS, &ks.header, &n_params, &[lw, src, control], b.elements(n))?;
                out.push(pack);
                out.extend(match cells {
                    Some((c, slot)) => c.sum.passes(b, &ks.header, src, src, l1, control, &self.truncation, *slot)?,
                    None => b.kernel_sum(ks, src, n, src, n, l1, control)?,
                });
                Ok(())
            };
            match term {
                Term::Interaction { ks, src, strength, cells } => {
                    weighted_sum(&mut out, ks, src, cells)?;
                    out.push(acc(INTERACTION, *strength, l1)?);
                }
                Term::Mmd { ks, src, nu, cells, .. } => {
                    weighted_sum(&mut out, ks, src, cells)?;
                    out.push(acc(MMD, 1.0, nu)?);
                }
                Term::Network { neurons, inputs, y, resid, partials, split, m, penalty, offset } => {
                    let params = NetParams {
                        n: n as u32,
                        m: *m as u32,
                        chunk_len: split.chunk_len as u32,
                        target_groups: split.target_groups as u32,
                        inv_m: 1.0 / *m as f32,
                        half_penalty: (0.5 * penalty) as f32,
                        pad0: [0.0; 2],
                    };
                    out.push(b.pass(
                        &kernels::NET_FORWARD,
                        header,
                        &params,
                        &[lw, neurons, inputs, partials, control],
                        b.grid(split.target_groups * split.chunks),
                    )?);
                    let resid_params = DataParams {
                        m: *m as u32,
                        chunks: split.chunks as u32,
                        offset: *offset as u32,
                        a: (0.5 / *m as f64) as f32,
                        ..Default::default()
                    };
                    out.push(b.pass(
                        &kernels::NET_RESIDUALS,
                        header,
                        &resid_params,
                        &[partials, y, resid, &self.data_f, control],
                        b.elements(*m),
                    )?);
                    out.push(net_backward(b, header, n, *m, *penalty, [neurons, inputs, resid, l1, l2, control])?);
                    out.push(acc(LINEAR, 1.0, l2)?);
                }
                Term::Npmle { ks, pos, src, obs, obs_src, log_p, m, offset, cells } => {
                    out.push(b.pass(
                        &kernels::PACK_COEFFICIENTS,
                        &ks.header,
                        &n_params,
                        &[lw, src, control],
                        b.elements(n),
                    )?);
                    out.extend(match cells.as_deref() {
                        Some((c, slot)) => {
                            c.to_data.passes(b, &ks.header, obs, src, log_p, control, &self.truncation, *slot)?
                        }
                        None => b.kernel_sum(ks, obs, *m, src, n, log_p, control)?,
                    });
                    let params = DataParams {
                        m: *m as u32,
                        offset: *offset as u32,
                        a: (*m as f64).ln() as f32,
                        b: (1.0 / *m as f64) as f32,
                        ..Default::default()
                    };
                    out.push(b.pass(
                        &kernels::NPMLE_COEFFICIENTS,
                        &ks.header,
                        &params,
                        &[log_p, obs_src, &self.data_f, control],
                        b.elements(*m),
                    )?);
                    out.extend(match cells.as_deref() {
                        Some((c, slot)) => {
                            c.from_data.passes(b, &ks.header, pos, obs_src, l1, control, &self.truncation, slot + 1)?
                        }
                        None => b.kernel_sum(ks, pos, n, obs_src, *m, l1, control)?,
                    });
                    out.push(acc(NPMLE, 1.0, l1)?);
                }
                Term::Pair { header, pos } => {
                    out.push(pair_sum(b, header, n, n, [pos, pos, lw, l1, l2, control])?);
                    out.push(acc(LINEAR, 1.0, l2)?);
                }
                Term::Host { values, .. } => {
                    out.push(accumulate(
                        b,
                        header,
                        n,
                        idx == 0,
                        LINEAR,
                        1.0,
                        [fixed, values, &self.zeros, energy, control],
                    )?);
                }
            }
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
        let (d, p) = (header.dim as usize, header.packed as usize);
        let t = points.len() / d;
        let l1 = b.zeros("at_l1", t * 4);
        let l2 = b.zeros("at_l2", t * 4);
        let zeros = b.zeros("at_zeros", t * 4);
        // The cell sums' bounds at the points: the control block carries one above max_error.
        let truncation = b.zeros("at_energy_truncation", 8);
        // Σ_j w_j k(x_t, X_j) into l1, by cells where the evaluation's sum uses them.
        let weighted_sum =
            |ks: &KernelSpace, tp: &wgpu::Buffer, src: &wgpu::Buffer, cells: &Option<(KernelCells, u32)>| match cells {
                Some((c, _)) => c.at(b, ks, points)?.passes(b, &ks.header, tp, src, &l1, control, &truncation, 0),
                None => b.kernel_sum(ks, tp, t, src, n, &l1, control),
            };
        let mut out = Vec::new();
        let mut host = Vec::new();
        for (idx, term) in self.terms.iter().enumerate() {
            let acc = |kind: u32, strength: f64| {
                accumulate(b, header, t, idx == 0, kind, strength, [fixed, &l1, &l2, energy, control])
            };
            match term {
                Term::Interaction { ks, src, strength, cells } => {
                    let tp = b.init("at_points", bytemuck::cast_slice(&ks.pack(points)));
                    out.extend(weighted_sum(ks, &tp, src, cells)?);
                    out.push(acc(INTERACTION, *strength)?);
                }
                Term::Mmd { ks, src, sample, m, cells, .. } => {
                    let tp = b.init("at_points", bytemuck::cast_slice(&ks.pack(points)));
                    out.extend(weighted_sum(ks, &tp, src, cells)?);
                    out.extend(b.kernel_sum(ks, &tp, t, sample, *m, &l2, control)?);
                    out.push(acc(MMD, 1.0)?);
                }
                Term::Network { inputs, resid, m, penalty, .. } => {
                    let tp = b.init("at_neurons", bytemuck::cast_slice(&pack_neurons(points, d, p)));
                    out.push(net_backward(b, header, t, *m, *penalty, [&tp, inputs, resid, &l1, &l2, control])?);
                    out.push(acc(LINEAR, 1.0)?);
                }
                Term::Npmle { ks, obs_src, m, cells, .. } => {
                    let tp = b.init("at_points", bytemuck::cast_slice(&ks.pack(points)));
                    out.extend(match cells.as_deref() {
                        Some((c, _)) => {
                            c.at(b, ks, points)?.passes(b, &ks.header, &tp, obs_src, &l1, control, &truncation, 0)?
                        }
                        None => b.kernel_sum(ks, &tp, t, obs_src, *m, &l1, control)?,
                    });
                    out.push(acc(NPMLE, 1.0)?);
                }
                Term::Pair { header, pos } => {
                    let tp = b.init("at_pair_points", bytemuck::cast_slice(&to_f32(points)));
                    out.push(pair_sum(b, header, t, n, [&tp, pos, lw, &l1, &l2, control])?);
                    out.push(acc(LINEAR, 1.0)?);
                }
                Term::Host { term, .. } => {
                    let values = b.zeros("at_host_values", t * 4);
                    let first = idx == 0;
                    out.push(accumulate(b, header, t, first, LINEAR, 1.0, [fixed, &values, &zeros, energy, control])?);
                    host.push((term.clone(), values));
                }
            }
        }
        Ok((out, host))
    }
}

/// An `energy_accumulate` pass over `n` targets with bindings (fixed, l1, l2, energy, control).
fn accumulate(
    b: &Builder,
    header: &Header,
    n: usize,
    first: bool,
    kind: u32,
    strength: f64,
    bufs: [&wgpu::Buffer; 5],
) -> Result<Pass> {
    let params = AccumulateParams {
        n: n as u32,
        kind,
        first: u32::from(first),
        strength: strength as f32,
        ..Default::default()
    };
    b.pass(&kernels::ENERGY_ACCUMULATE, header, &params, &bufs, b.elements(n))
}

/// A `net_backward` pass over `n` targets with bindings (targets, inputs, resid, l1, l2, control).
fn net_backward(
    b: &Builder,
    header: &Header,
    n: usize,
    m: usize,
    penalty: f64,
    bufs: [&wgpu::Buffer; 6],
) -> Result<Pass> {
    let params = NetParams {
        n: n as u32,
        m: m as u32,
        inv_m: (1.0 / m as f64) as f32,
        half_penalty: (0.5 * penalty) as f32,
        ..Default::default()
    };
    b.pass(&kernels::NET_BACKWARD, header, &params, &bufs, b.grid(n.div_ceil(KERNEL_WG as usize)))
}

/// f32 copies.
fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|x| *x as f32).collect()
}

/// Evaluates the user's whole `term` at `targets` for the particles at `positions` with
/// `weights`, writes its δF/δm there into `values` and returns its F(μᴺ).
pub(crate) fn upload_host_term(
    queue: &wgpu::Queue,
    term: &CustomTerm,
    values: &wgpu::Buffer,
    positions: &[f64],
    weights: &[f64],
    targets: &[f64],
    dim: usize,
) -> Result<f64> {
    let (f, dfdm) = term.evaluate(positions, weights, targets, dim)?;
    queue.write_buffer(values, 0, bytemuck::cast_slice(&to_f32(&dfdm)));
    Ok(f)
}

/// The engine's constants with `kernel`'s WGSL and the torus' side (0 on R^d) after them.
fn pair_header(header: &Header, kernel: &PairKernel, side: Option<f64>) -> Header {
    let user = format!("const SIDE: f32 = {:?};\n{}", side.unwrap_or(0.0) as f32, kernel.wgsl());
    Header { user: Some(Arc::from(user)), ..header.clone() }
}

/// A `pair_sum` pass over `nt` targets and `ns` sources with bindings (targets, sources, lw, l1,
/// l2, control).
fn pair_sum(b: &Builder, header: &Header, nt: usize, ns: usize, bufs: [&wgpu::Buffer; 6]) -> Result<Pass> {
    let params = Counts { n: nt as u32, aux: ns as u32, m_data: 0, unit: 0.0 };
    b.pass(&kernels::PAIR_SUM, header, &params, &bufs, b.grid(nt.div_ceil(KERNEL_WG as usize)))
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
    let pass = b.pass(&kernels::PAIR_CHECK, header, &params, &[&a_buf, &c_buf, &out], b.elements(k)).map_err(|e| {
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
