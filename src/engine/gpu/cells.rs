//! Cutoff kernel sums on the device (see [`crate::engine::cells`] for the grid and the bound):
//! `cell_mass`, `log_kernel_sum_cells` and `cell_bound` (see their files), with the grid's
//! orders and the blocks of targets built once on the host, since positions never move.

use super::build::{Builder, KernelSpace, Pass, check_binding};
use super::context::GpuContext;
use super::host::{KernelParams, LOG_ZERO, control};
use super::kernels::{self, Header};
use crate::engine::cells::{CellGrid, Cutoff};
use crate::error::{Error, Result};
use crate::model::{Gaussian, Space};

/// Above this N, `Cutoff::Auto` uses cells on the GPU (where [`CellGrid::new`] says they save
/// work). Below it all pairs take a few milliseconds on a large GPU and are exact, and the cell
/// sum's fixed costs (three passes; partly filled blocks and tiles, so that on lavapipe a cell
/// step evaluates pairs at 70% of the all-pairs step's rate) eat much of what the cutoff saves.
pub(crate) const AUTO_CELLS_ABOVE: usize = 1 << 16;

/// One cell grid over a set of sources, with blocks of targets, uploaded for the passes of
/// [`CellSum::passes`]. The buffers for cell masses and block results are reused by every sum
/// recorded with it, which run one after the other.
pub(crate) struct CellSum {
    /// Cell starts, then the sources in cell order, then the targets in cell order.
    grid: wgpu::Buffer,
    /// Per block: its cell's coordinates, then (first, count) in the target order.
    blocks: wgpu::Buffer,
    cell_mass: wgpu::Buffer,
    block_out: wgpu::Buffer,
    params: KernelParams,
    n_blocks: usize,
}

impl CellSum {
    /// The grid `grid` of `ns` sources, summed at `targets` (rows of d; blocks of at most
    /// `b.kernel_wg` targets of one cell), for δ = `tolerance` and a halt above `max_error`.
    pub fn new(
        b: &Builder,
        ks: &KernelSpace,
        grid: &CellGrid,
        targets: &[f64],
        ns: usize,
        tolerance: f64,
        max_error: f64,
    ) -> Result<Self> {
        let d = ks.header.dim as usize;
        let nt = targets.len() / d;
        let wg = b.kernel_wg as usize;
        // The workgroup storage of log_kernel_sum_cells: the tile (high and low parts in fixed
        // point), each target's value and index, the 81 neighbour ranges and a few words.
        let tile = ks.header.packed as usize * 16 * if ks.header.fixed { 2 } else { 1 };
        let storage = wg * (tile + 8) + 81 * 8 + 32;
        let limit = b.ctx.limits().max_compute_workgroup_storage_size as usize;
        if storage > limit {
            return Err(Error::invalid(
                "workgroup_size",
                wg,
                format!(
                    "a smaller workgroup for the cutoff's cell sums: {wg} needs {storage} bytes of workgroup \
                     storage here, the device has {limit}"
                ),
            ));
        }
        let counts = grid.counts();
        // Cells as keys over the grid grown by two on each side (R^d targets may lie outside it).
        let coords: Vec<Vec<isize>> = targets.chunks_exact(d).map(|x| grid.coords(x)).collect();
        let keys: Vec<u64> = coords
            .iter()
            .map(|c| c.iter().zip(counts).rev().fold(0u64, |acc, (ck, nk)| acc * (*nk as u64 + 4) + (ck + 2) as u64))
            .collect();
        let mut sorted: Vec<u32> = (0..nt as u32).collect();
        sorted.sort_by_key(|i| keys[*i as usize]);
        let mut blocks: Vec<[i32; 4]> = Vec::new();
        let mut first = 0;
        while first < nt {
            let key = keys[sorted[first] as usize];
            let end = sorted[first..].iter().position(|i| keys[*i as usize] != key).map_or(nt, |k| first + k);
            let mut cell = [0i32; 4];
            for (k, c) in coords[sorted[first] as usize].iter().enumerate() {
                cell[k] = *c as i32;
            }
            for start in (first..end).step_by(wg) {
                blocks.push(cell);
                blocks.push([start as i32, (end - start).min(wg) as i32, 0, 0]);
            }
            first = end;
        }
        let words: Vec<u32> = grid.starts().iter().chain(grid.order()).chain(&sorted).copied().collect();
        check_binding(b.ctx, "the cell grid", words.len(), 4)?;
        let n_cells = grid.starts().len() - 1;
        let n_blocks = blocks.len() / 2;
        let mut params = ks.params(nt, ns, None);
        params.log2_tolerance = tolerance.log2() as f32;
        params.max_error = max_error as f32;
        params.n_cells = n_cells as u32;
        params.n_blocks = n_blocks as u32;
        for (k, c) in counts.iter().enumerate() {
            params.counts[k] = *c as u32;
        }
        Ok(CellSum {
            grid: b.init("cell_grid", bytemuck::cast_slice(&words)),
            blocks: b.init("cell_blocks", bytemuck::cast_slice(&blocks)),
            cell_mass: b.zeros("cell_mass", n_cells * 8),
            block_out: b.zeros("cell_block_out", n_blocks * 16),
            params,
            n_blocks,
        })
    }

    /// The passes of one cell sum: out_t = log Σ_{s near t} exp(c_s) K(t, y_s) at the targets
    /// (packed in `targets`, the caller's order) over `sources` (packed, the caller's order),
    /// and the largest bound and its target in `truncation[2 slot ..]`.
    #[allow(clippy::too_many_arguments)]
    pub fn passes(
        &self,
        b: &Builder,
        header: &Header,
        targets: &wgpu::Buffer,
        sources: &wgpu::Buffer,
        out: &wgpu::Buffer,
        control: &wgpu::Buffer,
        truncation: &wgpu::Buffer,
        slot: u32,
    ) -> Result<Vec<Pass>> {
        let params = KernelParams { slot, ..self.params };
        let u = b.uniform("cell_params", bytemuck::bytes_of(&params));
        let sum = kernels::Shader { workgroup: b.kernel_wg, ..kernels::LOG_KERNEL_SUM_CELLS };
        Ok(vec![
            b.pass_with(
                &kernels::CELL_MASS,
                header,
                &u,
                &[sources, &self.grid, &self.cell_mass, control],
                b.elements(self.params.n_cells as usize),
            )?,
            b.pass_with(
                &sum,
                header,
                &u,
                &[targets, sources, out, control, &self.grid, &self.blocks, &self.cell_mass, &self.block_out],
                b.grid(self.n_blocks),
            )?,
            b.pass_with(
                &kernels::CELL_BOUND,
                header,
                &u,
                &[&self.cell_mass, &self.block_out, truncation, control],
                (1, 1),
            )?,
        ])
    }
}

/// The ε-kernel's cell sums of an engine: the grid over the particles, its uploaded forms, and
/// the truncation buffer its sums write their bounds to.
pub(crate) struct EngineCells {
    /// The grid over the particles.
    pub grid: CellGrid,
    /// The evaluation's ε-kernel sums at the particles.
    pub sums: EpsCellSums,
    /// D, D′: the grid over the nodes.
    node_grid: Option<CellGrid>,
    tolerance: f64,
    max_error: f64,
    /// (bound bits, target) per cell sum of an evaluation.
    pub truncation: wgpu::Buffer,
    slots: usize,
}

impl EngineCells {
    /// The cells of the ε-kernel's sums when `cutoff` asks for them and they save work (`Auto`:
    /// only above [`AUTO_CELLS_ABOVE`] particles), with `slots` sums per evaluation; `nodes` are
    /// the quadrature nodes of D and D′ (empty otherwise), which need a grid of their own, as on
    /// the CPU.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        b: &Builder,
        ks: &KernelSpace,
        cutoff: Cutoff,
        space: &Space,
        positions: &[f64],
        nodes: &[f64],
        slots: usize,
    ) -> Result<Option<Self>> {
        if slots == 0 {
            return Ok(None);
        }
        let Some((grid, tolerance, max_error)) = particle_grid(b, &ks.kernel, cutoff, space, positions) else {
            return Ok(None);
        };
        let node_grid = if nodes.is_empty() {
            None
        } else {
            let Some(node_grid) = CellGrid::new(space, nodes, Cutoff::radius(&ks.kernel, tolerance)) else {
                return Ok(None);
            };
            Some(node_grid)
        };
        let sums = Self::sums(b, ks, &grid, node_grid.as_ref(), (tolerance, max_error), positions, nodes)?;
        let truncation = b.zeros("truncation", slots * 8);
        Ok(Some(EngineCells { grid, sums, node_grid, tolerance, max_error, truncation, slots }))
    }

    /// The sums at `points` (and for D and D′ at their quadrature `nodes`) over the evaluation's
    /// sources, for `rates_at` (see [`EngineCells::sums`]).
    pub fn at(&self, b: &Builder, ks: &KernelSpace, points: &[f64], nodes: &[f64]) -> Result<EpsCellSums> {
        let limits = (self.tolerance, self.max_error);
        Self::sums(b, ks, &self.grid, self.node_grid.as_ref(), limits, points, nodes)
    }

    /// Particle sources at `points`, or at their `nodes` for D and D′; for D and D′ node
    /// sources at `points`.
    fn sums(
        b: &Builder,
        ks: &KernelSpace,
        grid: &CellGrid,
        node_grid: Option<&CellGrid>,
        (tolerance, max_error): (f64, f64),
        points: &[f64],
        nodes: &[f64],
    ) -> Result<EpsCellSums> {
        let n = grid.order().len();
        Ok(match node_grid {
            None => EpsCellSums {
                from_particles: CellSum::new(b, ks, grid, points, n, tolerance, max_error)?,
                from_nodes: None,
            },
            Some(node_grid) => EpsCellSums {
                from_particles: CellSum::new(b, ks, grid, nodes, n, tolerance, max_error)?,
                from_nodes: Some(CellSum::new(
                    b,
                    ks,
                    node_grid,
                    points,
                    node_grid.order().len(),
                    tolerance,
                    max_error,
                )?),
            },
        })
    }

    /// The largest bound of the last evaluation's cell sums.
    pub fn largest(&self, ctx: &GpuContext) -> Result<f64> {
        largest(ctx, &self.truncation, self.slots)
    }
}

/// The largest of the first `slots` bounds in a truncation buffer.
pub(crate) fn largest(ctx: &GpuContext, truncation: &wgpu::Buffer, slots: usize) -> Result<f64> {
    let words = super::build::read_f32(ctx, truncation, 2 * slots)?;
    Ok(words.iter().step_by(2).map(|b| f64::from(*b)).fold(0.0, f64::max))
}

/// The `kernel.cutoff` error when a device loop halted on a bound above max_error (`c`: its
/// control block read back; `step`: the step of the evaluated state).
pub(crate) fn check_halt(c: &[u32], cutoff: Cutoff, step: u64) -> Result<()> {
    if c[control::HALTED] != control::ERR_CUTOFF {
        return Ok(());
    }
    let bound = f64::from(f32::from_bits(c[control::VALUE]));
    let max_error = cutoff.parameters().map_or(0.0, |p| p.1);
    Err(crate::engine::cells::truncation_error(bound, c[control::PARTICLE] as usize, step, max_error))
}

/// The grid over the particles for `kernel`'s sums with (δ, max_error), where `cutoff` asks for
/// cells (`Auto`: above [`AUTO_CELLS_ABOVE`] particles) and the grid saves work.
fn particle_grid(
    b: &Builder,
    kernel: &Gaussian,
    cutoff: Cutoff,
    space: &Space,
    positions: &[f64],
) -> Option<(CellGrid, f64, f64)> {
    let (tolerance, max_error) = cutoff.parameters()?;
    if cutoff == Cutoff::Auto && positions.len() / space.dim <= b.auto_cells_above {
        return None;
    }
    Some((CellGrid::new(space, positions, Cutoff::radius(kernel, tolerance))?, tolerance, max_error))
}

/// An energy kernel's cell sums over the particles (its own width, so its own grid, as on the
/// CPU): at the particles in each evaluation, and at `rates_at`'s points.
pub(crate) struct KernelCells {
    pub grid: CellGrid,
    pub sum: CellSum,
    tolerance: f64,
    max_error: f64,
}

impl KernelCells {
    /// The cells of `ks`'s particle × particle sums where `cutoff` asks for them.
    pub fn new(
        b: &Builder,
        ks: &KernelSpace,
        cutoff: Cutoff,
        space: &Space,
        positions: &[f64],
    ) -> Result<Option<Self>> {
        let Some((grid, tolerance, max_error)) = particle_grid(b, &ks.kernel, cutoff, space, positions) else {
            return Ok(None);
        };
        let n = grid.order().len();
        let sum = CellSum::new(b, ks, &grid, positions, n, tolerance, max_error)?;
        Ok(Some(KernelCells { grid, sum, tolerance, max_error }))
    }

    /// The sum at `points` over the particles.
    pub fn at(&self, b: &Builder, ks: &KernelSpace, points: &[f64]) -> Result<CellSum> {
        CellSum::new(b, ks, &self.grid, points, self.grid.order().len(), self.tolerance, self.max_error)
    }
}

/// The cell sums of an evaluation's ε-kernel sums at some targets (the particles, or the points
/// of `rates_at`).
pub(crate) struct EpsCellSums {
    /// Particle sources, at the targets (A, B, C) or at their quadrature nodes (D, D′).
    from_particles: CellSum,
    /// D, D′: node sources (a grid over the particles' nodes), at the targets.
    from_nodes: Option<CellSum>,
}

/// One ε-kernel sum of an evaluation, as the variants ask for it ([`crate::variant::EpsSum`]):
/// by `cells` (with the truncation buffer their bounds go to) where the cutoff uses them, else
/// over all pairs.
pub(crate) fn eps_sum<'a>(
    b: &'a Builder,
    header: &'a Header,
    eps: &'a KernelSpace,
    cells: Option<(&'a EpsCellSums, &'a wgpu::Buffer)>,
    control: &'a wgpu::Buffer,
) -> impl Fn(&wgpu::Buffer, usize, &wgpu::Buffer, usize, &wgpu::Buffer, bool, u32) -> Result<Vec<Pass>> + 'a {
    move |targets, nt, sources, ns, out, from_nodes, slot| match cells {
        Some((sums, truncation)) => {
            let sum = if from_nodes {
                sums.from_nodes.as_ref().expect("node sources come only with D and D′, whose cells have a node grid")
            } else {
                &sums.from_particles
            };
            sum.passes(b, header, targets, sources, out, control, truncation, slot)
        }
        None => b.kernel_sum(eps, targets, nt, sources, ns, out, control),
    }
}

/// A data term's cell sums (the NPMLE's, as on the CPU): its data points as targets of the
/// particles (on the particles' grid) and the particles, or `rates_at`'s points, as targets of
/// its data points (on a grid over them). `None` from [`DataCells::new`] where either grid would
/// not save work: both sums then take all pairs.
pub(crate) struct DataCells {
    /// The data points ← the particles.
    pub to_data: CellSum,
    /// The particles ← the data points.
    pub from_data: CellSum,
    data_grid: CellGrid,
    tolerance: f64,
    max_error: f64,
}

impl DataCells {
    /// The cells of `ks`'s sums between the particles at `positions` and the points `data`.
    pub fn new(
        b: &Builder,
        ks: &KernelSpace,
        cutoff: Cutoff,
        space: &Space,
        positions: &[f64],
        data: &[f64],
    ) -> Result<Option<Self>> {
        let Some((grid, tolerance, max_error)) = particle_grid(b, &ks.kernel, cutoff, space, positions) else {
            return Ok(None);
        };
        let Some(data_grid) = CellGrid::new(space, data, Cutoff::radius(&ks.kernel, tolerance)) else {
            return Ok(None);
        };
        let (n, m) = (grid.order().len(), data_grid.order().len());
        let to_data = CellSum::new(b, ks, &grid, data, n, tolerance, max_error)?;
        let from_data = CellSum::new(b, ks, &data_grid, positions, m, tolerance, max_error)?;
        Ok(Some(DataCells { to_data, from_data, data_grid, tolerance, max_error }))
    }

    /// The sum at `points` over the data points.
    pub fn at(&self, b: &Builder, ks: &KernelSpace, points: &[f64]) -> Result<CellSum> {
        let m = self.data_grid.order().len();
        CellSum::new(b, ks, &self.data_grid, points, m, self.tolerance, self.max_error)
    }
}

/// The cell sum on its own, on the GPU in f32: the twin of
/// [`crate::engine::cells::log_kernel_sum_cells`] with the same arguments plus the device. Returns
/// log Σ_{s near t} exp(log_coeffs\[s\]) K(t, y_s) for every target, and the largest relative
/// truncation bound over the targets with its target (the CPU twin returns every target's).
/// Pass the same slice as `targets` and `sources` for an N × N sum.
#[allow(clippy::too_many_arguments)]
pub fn log_kernel_sum_cells(
    ctx: &GpuContext,
    space: &Space,
    kernel: &Gaussian,
    grid: &CellGrid,
    tolerance: f64,
    targets: &[f64],
    sources: &[f64],
    log_coeffs: &[f64],
) -> Result<(Vec<f64>, (f64, usize))> {
    let d = space.dim;
    if log_coeffs.len() * d != sources.len() {
        return Err(Error::invalid(
            "log_kernel_sum_cells",
            format!("{} source values, {} coefficients", sources.len(), log_coeffs.len()),
            format!("one coefficient per source of dimension {d}"),
        ));
    }
    if targets.is_empty() {
        return Ok((Vec::new(), (0.0, 0)));
    }
    CellPass::new(ctx, space, kernel, grid, tolerance, targets, sources)?.run(ctx, log_coeffs)
}

/// A standalone cell sum set up once for a grid, its targets and its sources, then run for any
/// coefficients: behind [`log_kernel_sum_cells`], and Sinkhorn's cutoff passes, which run it at
/// every iteration of an ε.
pub(crate) struct CellPass {
    ks: KernelSpace,
    /// The sources packed; each run writes its coefficients into them.
    packed: Vec<[u32; 4]>,
    src: wgpu::Buffer,
    out: wgpu::Buffer,
    ctl: wgpu::Buffer,
    truncation: wgpu::Buffer,
    passes: Vec<Pass>,
    nt: usize,
}

impl CellPass {
    /// The cell sum at `targets` over `sources` on `grid` (over the sources) for `kernel` at δ =
    /// `tolerance`, with no halt (the caller judges the bound).
    pub fn new(
        ctx: &GpuContext,
        space: &Space,
        kernel: &Gaussian,
        grid: &CellGrid,
        tolerance: f64,
        targets: &[f64],
        sources: &[f64],
    ) -> Result<Self> {
        let d = space.dim;
        let ns = sources.len() / d;
        if ns == 0 || targets.len() % d != 0 || sources.len() % d != 0 || grid.order().len() != ns || targets.is_empty()
        {
            return Err(Error::invalid(
                "log_kernel_sum_cells",
                format!(
                    "{} target values, {} source values, a grid of {} sources",
                    targets.len(),
                    sources.len(),
                    grid.order().len()
                ),
                format!("whole points of dimension {d}, at least one target and one source, the sources' grid"),
            ));
        }
        let nt = targets.len() / d;
        let ks = KernelSpace::new(space, *kernel, &[targets, sources], &Header::plain(d, space.side().is_some()));
        let p = ks.header.packed as usize;
        super::build::check_kernel_workgroup(ctx, kernels::KERNEL_WG, p, ks.header.fixed)?;
        check_binding(ctx, "the packed points of a kernel sum", nt.max(ns), p * 16)?;
        let max_dim = ctx.limits().max_compute_workgroups_per_dimension.max(1);
        let b =
            Builder { ctx, checked: false, max_dim, kernel_wg: kernels::KERNEL_WG, auto_cells_above: AUTO_CELLS_ABOVE };
        let packed = ks.pack(sources);
        let src = b.zeros("cell_sources", packed.len() * 16);
        let tgt = if std::ptr::eq(targets, sources) {
            None
        } else {
            Some(b.init("cell_targets", bytemuck::cast_slice(&ks.pack(targets))))
        };
        let out = b.zeros("cell_out", nt * 4);
        let ctl = b.zeros("cell_control", std::mem::size_of_val(&control::fresh()));
        let truncation = b.zeros("truncation", 8);
        let sum = CellSum::new(&b, &ks, grid, targets, ns, tolerance, f64::INFINITY)?;
        let passes = sum.passes(&b, &ks.header, tgt.as_ref().unwrap_or(&src), &src, &out, &ctl, &truncation, 0)?;
        Ok(CellPass { ks, packed, src, out, ctl, truncation, passes, nt })
    }

    /// The sum with `log_coeffs` (one per source): every target's value and the largest bound
    /// with its target.
    pub fn run(&mut self, ctx: &GpuContext, log_coeffs: &[f64]) -> Result<(Vec<f64>, (f64, usize))> {
        let device_coeffs: Vec<f64> = log_coeffs.iter().map(|c| c.max(f64::from(LOG_ZERO))).collect();
        self.ks.set_coeffs(&mut self.packed, &device_coeffs);
        ctx.queue.write_buffer(&self.src, 0, bytemuck::cast_slice(&self.packed));
        ctx.queue.write_buffer(&self.ctl, 0, bytemuck::cast_slice(&control::fresh()));
        ctx.queue.write_buffer(&self.truncation, 0, &[0u8; 8]);
        super::build::submit(ctx, &self.passes);
        let values = super::build::read_f32(ctx, &self.out, self.nt)?.into_iter().map(f64::from).collect();
        let words = super::build::read_f32(ctx, &self.truncation, 2)?;
        Ok((values, (f64::from(words[0]), words[1].to_bits() as usize)))
    }
}
