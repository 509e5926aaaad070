//! The kernel sum on its own: the GPU twin of [`crate::engine::cpu::log_kernel_sum`] with the same
//! arguments, a reusable pass for iterative callers (the GPU Sinkhorn) and a timing hook for
//! `frflow bench`.

use super::context::GpuContext;
use super::host::{KernelParams, LOG_ZERO, Layout, control};
use super::kernels::{self, Header, KERNEL_WG};
use crate::error::{Error, Result};
use crate::model::{Domain, Gaussian, Space};
use wgpu::util::DeviceExt;

/// A `log_kernel_sum` pipeline with buffers for up to a fixed number of targets and sources:
/// loaded with packed points and dispatched as often as needed, so that iterative callers
/// (Sinkhorn) compile the shader once.
pub(crate) struct KernelSum {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    params: wgpu::Buffer,
    targets: wgpu::Buffer,
    sources: wgpu::Buffer,
    out: wgpu::Buffer,
    workgroup: u32,
    capacity: (usize, usize),
    groups: (u32, u32),
    n_targets: usize,
}

/// How the pass is compiled: bounds-checked or not, and its workgroup size (and source tile).
#[derive(Clone, Copy)]
pub(crate) struct Shape {
    pub checked: bool,
    pub workgroup: u32,
}

impl Shape {
    /// The engine's own shape: unchecked, [`KERNEL_WG`] invocations.
    pub const DEFAULT: Shape = Shape { checked: false, workgroup: KERNEL_WG };
}

/// One kernel-sum problem packed for the shader (see [`pack`]).
pub(crate) struct Packed {
    pub header: Header,
    pub params: KernelParams,
    /// The packed targets, or `None` when the targets are the sources themselves.
    pub targets: Option<Vec<[u32; 4]>>,
    pub sources: Vec<[u32; 4]>,
}

/// Packs targets and sources in `layout`, each source's coefficient log_coeffs[s] (natural log)
/// in its last lane. Pass the same slice as `targets` and `sources` for an N × N sum: the targets
/// then carry the coefficients too, so the shader's shift starts at the self term.
pub(crate) fn pack(
    space: &Space,
    kernel: &Gaussian,
    layout: &Layout,
    targets: &[f64],
    sources: &[f64],
    log_coeffs: &[f64],
) -> Result<Packed> {
    let d = space.dim;
    let ns = sources.len() / d;
    if ns == 0 || log_coeffs.len() != ns || targets.len() % d != 0 || sources.len() % d != 0 {
        return Err(Error::invalid(
            "log_kernel_sum",
            format!(
                "{} target values, {} source values, {} coefficients",
                targets.len(),
                sources.len(),
                log_coeffs.len()
            ),
            format!("whole points of dimension {d}, at least one source, one coefficient per source"),
        ));
    }
    let p = kernels::packed_len(d);
    let mut packed_sources = layout.pack(sources, d, p);
    for (chunk, c) in packed_sources.chunks_exact_mut(p).zip(log_coeffs) {
        let c = if *c <= f64::from(LOG_ZERO) { LOG_ZERO } else { (*c * std::f64::consts::LOG2_E) as f32 };
        chunk[p - 1][3] = c.to_bits();
    }
    let same = std::ptr::eq(targets, sources);
    Ok(Packed {
        header: Header::plain(d, space.side().is_some()).for_kernel(kernel, layout),
        params: KernelParams::new(kernel, layout, targets.len() / d, ns, 0, 0),
        targets: (!same).then(|| layout.pack(targets, d, p)),
        sources: packed_sources,
    })
}

impl KernelSum {
    /// Compiles the pass for `header` and allocates room for `max_targets` targets and
    /// `max_sources` sources.
    pub fn new(
        ctx: &GpuContext,
        header: &Header,
        shape: Shape,
        max_targets: usize,
        max_sources: usize,
    ) -> Result<Self> {
        let Shape { checked, workgroup } = shape;
        let p = header.packed as usize;
        super::build::check_kernel_workgroup(ctx, workgroup, p, header.fixed)?;
        let limits = ctx.limits();
        let limit = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
        let per_point = (p * 16) as u64;
        let most = max_targets.max(max_sources).max(1);
        let largest = most as u64 * per_point;
        if largest > limit || most as u64 > u64::from(u32::MAX) {
            return Err(Error::TooLarge {
                what: "the packed points of a kernel sum".into(),
                needed: largest,
                limit,
                max_n: limit / per_point,
            });
        }
        let device = &ctx.device;
        let storage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        let buffer = |label: &str, size: u64, usage| {
            device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size, usage, mapped_at_creation: false })
        };
        let scope = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let targets = buffer("kernel_targets", max_targets.max(1) as u64 * per_point, storage);
        let sources = buffer("kernel_sources", max_sources.max(1) as u64 * per_point, storage);
        let out = buffer("kernel_out", max_targets.max(1) as u64 * 4, storage);
        let params = buffer(
            "kernel_params",
            std::mem::size_of::<KernelParams>() as u64,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        );
        let ctl = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("kernel_control"),
            contents: bytemuck::cast_slice(&control::fresh()),
            usage: storage,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::gpu_from(
                format_args!("allocating a kernel sum of {max_targets} × {max_sources} points"),
                e,
            ));
        }
        let shader = kernels::Shader { workgroup, ..kernels::LOG_KERNEL_SUM };
        let pipeline = kernels::pipeline(ctx, &shader, header, checked)?;
        let entries: Vec<wgpu::BindGroupEntry> = [&params, &targets, &sources, &out, &ctl]
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32, resource: b.as_entire_binding() })
            .collect();
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("log_kernel_sum"),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        Ok(KernelSum {
            pipeline,
            bind_group,
            params,
            targets,
            sources,
            out,
            workgroup,
            capacity: (max_targets, max_sources),
            groups: (0, 0),
            n_targets: 0,
        })
    }

    /// Uploads a packed problem (its header must be the one the pass was compiled for).
    pub fn load(&mut self, ctx: &GpuContext, packed: &Packed) {
        let (nt, ns) = (packed.params.n_targets as usize, packed.params.n_sources as usize);
        assert!(nt <= self.capacity.0 && ns <= self.capacity.1, "kernel sum loaded beyond its capacity");
        ctx.queue.write_buffer(&self.params, 0, bytemuck::bytes_of(&packed.params));
        ctx.queue.write_buffer(&self.sources, 0, bytemuck::cast_slice(&packed.sources));
        let targets = packed.targets.as_deref().unwrap_or(&packed.sources);
        if !targets.is_empty() {
            ctx.queue.write_buffer(&self.targets, 0, bytemuck::cast_slice(targets));
        }
        self.groups = grid(ctx, nt.div_ceil(self.workgroup as usize));
        self.n_targets = nt;
    }

    /// Submits `count` dispatches and waits for them.
    pub fn run(&self, ctx: &GpuContext, count: u32) -> Result<()> {
        self.run_timed(ctx, count, false).map(|_| ())
    }

    /// Runs `count` dispatches in one compute pass and waits; with `timed` and a device that
    /// offers timestamp queries, returns the pass's device time in seconds.
    fn run_timed(&self, ctx: &GpuContext, count: u32, timed: bool) -> Result<Option<f64>> {
        dispatch(ctx, &self.pipeline, &self.bind_group, self.groups, count, timed)
    }

    pub fn read(&self, ctx: &GpuContext) -> Result<Vec<f64>> {
        Ok(super::build::read_f32(ctx, &self.out, self.n_targets)?.into_iter().map(f64::from).collect())
    }
}

/// Runs `count` dispatches of one pipeline in one compute pass and waits; with `timed` and a
/// device that offers timestamp queries, returns the pass's device time in seconds.
fn dispatch(
    ctx: &GpuContext,
    pipeline: &wgpu::ComputePipeline,
    bind_group: &wgpu::BindGroup,
    groups: (u32, u32),
    count: u32,
    timed: bool,
) -> Result<Option<f64>> {
    let queries = (timed && ctx.has_timestamps()).then(|| {
        let set = ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("kernel_time"),
            ty: wgpu::QueryType::Timestamp,
            count: 2,
        });
        let buffer = |usage| {
            ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("kernel_time"),
                size: 16,
                usage,
                mapped_at_creation: false,
            })
        };
        let resolve = buffer(wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC);
        let staging = buffer(wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST);
        (set, resolve, staging)
    });
    let mut encoder = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("kernel") });
    {
        let timestamp_writes = queries.as_ref().map(|(set, _, _)| wgpu::ComputePassTimestampWrites {
            query_set: set,
            beginning_of_pass_write_index: Some(0),
            end_of_pass_write_index: Some(1),
        });
        let mut cpass =
            encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("kernel"), timestamp_writes });
        cpass.set_pipeline(pipeline);
        cpass.set_bind_group(0, bind_group, &[]);
        for _ in 0..count {
            cpass.dispatch_workgroups(groups.0, groups.1, 1);
        }
    }
    if let Some((set, resolve, staging)) = &queries {
        encoder.resolve_query_set(set, 0..2, resolve, 0);
        encoder.copy_buffer_to_buffer(resolve, 0, staging, 0, 16);
    }
    ctx.queue.submit([encoder.finish()]);
    ctx.wait()?;
    let Some((_, _, staging)) = queries else { return Ok(None) };
    let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&super::build::map_read(ctx, &staging, 16)?);
    let period_ns = f64::from(ctx.queue.get_timestamp_period());
    Ok(Some(ticks[1].saturating_sub(ticks[0]) as f64 * period_ns * 1e-9))
}

/// The grid of `total` workgroups on this device (folded into 2-D beyond the per-dimension limit).
fn grid(ctx: &GpuContext, total: usize) -> (u32, u32) {
    let total = total.max(1) as u32;
    let max_dim = ctx.limits().max_compute_workgroups_per_dimension.max(1);
    if total <= max_dim { (total, 1) } else { (max_dim, total.div_ceil(max_dim)) }
}

/// log Σ_s exp(log_coeffs\[s\]) · K(t, y_s) for every target t, on the GPU in f32: the twin of
/// [`crate::engine::cpu::log_kernel_sum`], with the same arguments plus the device. Pass the same
/// slice as `targets` and `sources` for an N × N sum (the shift then starts at the self term).
pub fn log_kernel_sum(
    ctx: &GpuContext,
    space: &Space,
    kernel: &Gaussian,
    targets: &[f64],
    sources: &[f64],
    log_coeffs: &[f64],
) -> Result<Vec<f64>> {
    let layout = Layout::new(space, &[targets, sources], kernel.width);
    let packed = pack(space, kernel, &layout, targets, sources, log_coeffs)?;
    let (nt, ns) = (packed.params.n_targets as usize, packed.params.n_sources as usize);
    let mut k = KernelSum::new(ctx, &packed.header, Shape::DEFAULT, nt, ns)?;
    k.load(ctx, &packed);
    k.run(ctx, 1)?;
    k.read(ctx)
}

/// The specialisations of the kernel-sum shader (see log_kernel_sum.wgsl), each with a problem
/// that takes it: what `frflow bench` times beside the minimal kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelPath {
    /// R^d, f32 coordinates (scaled half-extent ≤ 8): points in [−2, 2]^d, ε = 0.5.
    EuclideanF32,
    /// R^d, fixed point (large scaled coordinates): points in [−2, 2]^d, ε = 0.05.
    EuclideanFixed,
    /// Unit torus, f32 coordinates, minimum image only: ε = 0.06.
    TorusF32,
    /// Unit torus, fixed point: ε = 0.01.
    TorusFixed,
    /// Unit torus with the nearer periodic images: ε = 0.1 (the benchmark steps' kernel).
    TorusImages,
    /// Unit torus with nearer and farther images: ε = 0.3.
    TorusImagesFar,
    /// `TorusImages` with the images' exponentials on the special-function unit (one `exp2` per
    /// coordinate and image) instead of the FMA pipe, as `GpuOptions::image_exponentials = Sfu`
    /// gives an engine: it measures that trade.
    TorusImagesSfu,
}

impl KernelPath {
    /// Every path.
    pub const ALL: [KernelPath; 7] = [
        KernelPath::EuclideanF32,
        KernelPath::EuclideanFixed,
        KernelPath::TorusF32,
        KernelPath::TorusFixed,
        KernelPath::TorusImages,
        KernelPath::TorusImagesFar,
        KernelPath::TorusImagesSfu,
    ];

    /// The path's name, as the shader's constants give it (`GpuEngine`'s `kernel_path`).
    pub fn name(self) -> &'static str {
        match self {
            KernelPath::EuclideanF32 => "euclidean-f32",
            KernelPath::EuclideanFixed => "euclidean-fixed",
            KernelPath::TorusF32 => "torus-f32",
            KernelPath::TorusFixed => "torus-fixed",
            KernelPath::TorusImages => "torus-images",
            KernelPath::TorusImagesFar => "torus-images-far",
            KernelPath::TorusImagesSfu => "torus-images-sfu",
        }
    }

    /// The domain and ε of this path's problem.
    fn geometry(self) -> (Domain, f64) {
        let torus = Domain::Torus { side: 1.0 };
        match self {
            KernelPath::EuclideanF32 => (Domain::Euclidean, 0.5),
            KernelPath::EuclideanFixed => (Domain::Euclidean, 0.05),
            KernelPath::TorusF32 => (torus, 0.06),
            KernelPath::TorusFixed => (torus, 0.01),
            KernelPath::TorusImages | KernelPath::TorusImagesSfu => (torus, 0.1),
            KernelPath::TorusImagesFar => (torus, 0.3),
        }
    }
}

/// What [`bench_log_kernel_sum`] and [`bench_minimal_kernel_sum`] measured.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct KernelBench {
    /// The adapter's name.
    pub adapter: String,
    /// The path the shader was specialised for (`minimal` for the minimal kernel).
    pub path: String,
    /// Dimension d.
    pub dim: usize,
    /// N (targets = sources).
    pub n: usize,
    /// Kernel sums timed (after one warm-up).
    pub reps: u32,
    /// Wall-clock seconds for all `reps`.
    pub seconds: f64,
    /// N² · reps / seconds.
    pub pairs_per_second: f64,
    /// The pass's device time from timestamp queries, where the adapter offers them (then
    /// `seconds` and `pairs_per_second` use it instead of the wall clock).
    pub device_seconds: Option<f64>,
}

/// N points of dimension d for a benchmark on `domain`: uniform on the unit torus or in [−2, 2]^d.
fn bench_points(domain: Domain, n: usize, dim: usize) -> Vec<f64> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    (0..n * dim)
        .map(|_| match domain {
            Domain::Torus { side } => side * rng.random::<f64>(),
            Domain::Euclidean => 4.0 * rng.random::<f64>() - 2.0,
        })
        .collect()
}

/// Times `reps` dispatches of a loaded pass after a warm-up one (device timestamps where offered).
fn time_reps(
    ctx: &GpuContext,
    path: &str,
    dim: usize,
    n: usize,
    reps: u32,
    mut run: impl FnMut(u32, bool) -> Result<Option<f64>>,
) -> Result<KernelBench> {
    run(1, false)?;
    let reps = reps.max(1);
    let start = std::time::Instant::now();
    let device_seconds = run(reps, true)?;
    let seconds = device_seconds.unwrap_or_else(|| start.elapsed().as_secs_f64());
    Ok(KernelBench {
        adapter: ctx.adapter_info().name.clone(),
        path: path.into(),
        dim,
        n,
        reps,
        seconds,
        pairs_per_second: (n as f64).powi(2) * f64::from(reps) / seconds,
        device_seconds,
    })
}

/// Times the N × N `log_kernel_sum` pass alone on `path` (uniform points, uniform weights):
/// `reps` dispatches in one submission, after a warm-up that compiles the pipeline. `checked`
/// selects the bounds-checked shader module. Timed by timestamp queries on the device where the
/// adapter offers them, else by wall clock around the submission and the wait. `workgroup`
/// overrides the kernel's workgroup size (and source tile), 128 by default.
pub fn bench_log_kernel_sum(
    ctx: &GpuContext,
    path: KernelPath,
    dim: usize,
    n: usize,
    reps: u32,
    checked: bool,
    workgroup: Option<u32>,
) -> Result<KernelBench> {
    let (domain, eps) = path.geometry();
    let space = Space::new(dim, domain)?;
    let kernel = Gaussian::new(&space, eps, true, "epsilon")?;
    let points = bench_points(domain, n, dim);
    let coeffs = vec![-(n as f64).ln(); n];
    let layout = Layout::new(&space, &[&points], kernel.width);
    let mut packed = pack(&space, &kernel, &layout, &points, &points, &coeffs)?;
    packed.header.images_sfu = path == KernelPath::TorusImagesSfu;
    let shape = Shape { checked, workgroup: workgroup.unwrap_or(KERNEL_WG) };
    let mut k = KernelSum::new(ctx, &packed.header, shape, n, n)?;
    k.load(ctx, &packed);
    time_reps(ctx, packed.header.path(), dim, n, reps, |count, timed| k.run_timed(ctx, count, timed))
}

/// The `minimal_kernel_sum` pass loaded with N points (pre-scaled, weight in the last lane).
struct MinimalKernelSum {
    pass: super::build::Pass,
    out: wgpu::Buffer,
    n: usize,
}

impl MinimalKernelSum {
    fn new(ctx: &GpuContext, points: &[f64], weights: &[f64], dim: usize, workgroup: u32) -> Result<Self> {
        let n = weights.len();
        let p = kernels::packed_len(dim);
        super::build::check_kernel_workgroup(ctx, workgroup, p, false)?;
        super::build::check_binding(ctx, "the packed points of the minimal kernel", n, p * 16)?;
        let mut packed = vec![[0f32; 4]; n * p];
        for ((x, w), dst) in points.chunks_exact(dim).zip(weights).zip(packed.chunks_exact_mut(p)) {
            for (k, v) in x.iter().enumerate() {
                dst[k / 4][k % 4] = *v as f32;
            }
            dst[p - 1][3] = *w as f32;
        }
        let max_dim = ctx.limits().max_compute_workgroups_per_dimension.max(1);
        let b = super::build::Builder {
            ctx,
            checked: false,
            max_dim,
            kernel_wg: workgroup,
            auto_cells_above: super::cells::AUTO_CELLS_ABOVE,
        };
        let pts = b.init("minimal_points", bytemuck::cast_slice(&packed));
        let out = b.zeros("minimal_out", n * 4);
        let shader = kernels::Shader { workgroup, ..kernels::MINIMAL_KERNEL_SUM };
        let groups = b.grid(n.div_ceil(workgroup as usize));
        let pass = b.pass(&shader, &Header::plain(dim, false), &[n as u32, 0, 0, 0], &[&pts, &out], groups)?;
        Ok(MinimalKernelSum { pass, out, n })
    }

    fn run_timed(&self, ctx: &GpuContext, count: u32, timed: bool) -> Result<Option<f64>> {
        dispatch(ctx, &self.pass.pipeline, &self.pass.bind_group, self.pass.groups, count, timed)
    }
}

/// Σ_s w_s 2^(−|x_t − x_s|²) for every point, on the GPU in f32: the twin of
/// [`crate::engine::cpu::minimal_kernel_sum`], which checks the yardstick computes what it claims.
pub fn minimal_kernel_sum(ctx: &GpuContext, points: &[f64], weights: &[f64], dim: usize) -> Result<Vec<f64>> {
    if dim == 0 || points.len() != weights.len() * dim || weights.is_empty() {
        return Err(Error::invalid(
            "minimal_kernel_sum",
            format!("{} point values, {} weights, d = {dim}", points.len(), weights.len()),
            "one weight per point of dimension d ≥ 1, at least one point",
        ));
    }
    let k = MinimalKernelSum::new(ctx, points, weights, dim, KERNEL_WG)?;
    k.run_timed(ctx, 1, false)?;
    let values = super::build::read_f32(ctx, &k.out, k.n)?;
    Ok(values.into_iter().map(f64::from).collect())
}

/// Times the minimal kernel (see `minimal_kernel_sum.wgsl`) on N points of dimension d, as
/// [`bench_log_kernel_sum`] times a real path: the yardstick in the same run, on the same device.
pub fn bench_minimal_kernel_sum(
    ctx: &GpuContext,
    dim: usize,
    n: usize,
    reps: u32,
    workgroup: Option<u32>,
) -> Result<KernelBench> {
    let points = bench_points(Domain::Euclidean, n, dim);
    let k = MinimalKernelSum::new(ctx, &points, &vec![1.0 / n as f64; n], dim, workgroup.unwrap_or(KERNEL_WG))?;
    time_reps(ctx, "minimal", dim, n, reps, |count, timed| k.run_timed(ctx, count, timed))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The device the GPU tests use (FRFLOW_DEVICE, lavapipe by default), as tests/common's
    /// `context` opens it: `None` skips a test, unless FRFLOW_REQUIRE_GPU=1, which fails it.
    fn context() -> Option<GpuContext> {
        let selector = std::env::var("FRFLOW_DEVICE").unwrap_or_else(|_| "llvmpipe".into());
        match GpuContext::new(Some(&selector)) {
            Ok(ctx) => Some(ctx),
            Err(e) => {
                assert!(std::env::var("FRFLOW_REQUIRE_GPU").as_deref() != Ok("1"), "no adapter {selector:?}: {e}");
                None
            }
        }
    }

    /// The unchecked module of every kernel path (what the engines run) gives the same bits as
    /// the bounds-checked one (d = 1, 3, 4, 8; targets = sources, with and without a partial last
    /// tile): an index past an array that changes a sum shows here. (Not every such index does:
    /// a stray write into unused workgroup memory passes; the cell sum's tests caught one that
    /// did not.)
    #[test]
    fn every_kernel_path_unchecked_matches_the_checked_module() {
        let Some(ctx) = context() else { return };
        for path in KernelPath::ALL {
            let (domain, eps) = path.geometry();
            for (dim, n) in [(1, 300), (3, 256), (4, 97), (8, 130)] {
                let space = Space::new(dim, domain).unwrap();
                let kernel = Gaussian::new(&space, eps, true, "epsilon").unwrap();
                let points = bench_points(domain, n, dim);
                let coeffs: Vec<f64> = (0..n).map(|i| -((i * 7919 % 97) as f64)).collect();
                let layout = Layout::new(&space, &[&points], kernel.width);
                let mut packed = pack(&space, &kernel, &layout, &points, &points, &coeffs).unwrap();
                packed.header.images_sfu = path == KernelPath::TorusImagesSfu;
                let sums: Vec<Vec<u64>> = [false, true]
                    .into_iter()
                    .map(|checked| {
                        let shape = Shape { checked, workgroup: KERNEL_WG };
                        let mut k = KernelSum::new(&ctx, &packed.header, shape, n, n).unwrap();
                        k.load(&ctx, &packed);
                        k.run(&ctx, 1).unwrap();
                        k.read(&ctx).unwrap().iter().map(|v| v.to_bits()).collect()
                    })
                    .collect();
                assert_eq!(sums[0], sums[1], "{} d = {dim}", path.name());
            }
        }
    }

    /// The bench's `torus-images-sfu` specialisation sums what the engines' `torus-images` does:
    /// both within f32 rounding of the f64 sums, in the paper's setting with coefficients over 30
    /// decades. (On the device the GPU tests use; skipped only where they are.)
    #[test]
    fn images_on_the_special_unit_give_the_same_sums() {
        let Some(ctx) = context() else { return };
        let space = Space::new(3, Domain::Torus { side: 1.0 }).unwrap();
        let kernel = Gaussian::new(&space, 0.1, true, "epsilon").unwrap();
        let n = 517;
        let points = bench_points(space.domain, n, 3);
        let coeffs: Vec<f64> = (0..n).map(|i| -69.0 * ((i * 37 % 101) as f64 / 100.0)).collect();
        let cpu = crate::engine::cpu::log_kernel_sum(&space, &kernel, &points, &points, &coeffs);
        let layout = Layout::new(&space, &[&points], kernel.width);
        let mut packed = pack(&space, &kernel, &layout, &points, &points, &coeffs).unwrap();
        for sfu in [false, true] {
            packed.header.images_sfu = sfu;
            assert_eq!(packed.header.path(), if sfu { "torus-images-sfu" } else { "torus-images" });
            let mut k = KernelSum::new(&ctx, &packed.header, Shape::DEFAULT, n, n).unwrap();
            k.load(&ctx, &packed);
            k.run(&ctx, 1).unwrap();
            let gpu = k.read(&ctx).unwrap();
            let err = cpu.iter().zip(&gpu).map(|(a, b)| (a - b).abs() / (1.0 + a.abs())).fold(0.0, f64::max);
            assert!(err < 1e-5, "images_sfu = {sfu}: {err:e}");
        }
    }
}
