//! Creating buffers and recorded passes on one device: shared by the engine's construction, its
//! energy terms and `rates_at`.

use super::context::GpuContext;
use super::host::{KernelParams, Layout, MergeParams};
use super::kernels::{self, ELEMENT_WG, Header, Shader};
use crate::error::{Error, Result};
use crate::model::{Gaussian, Space};
use wgpu::util::DeviceExt;

/// One recorded dispatch.
pub(crate) struct Pass {
    pub pipeline: wgpu::ComputePipeline,
    pub bind_group: wgpu::BindGroup,
    pub groups: (u32, u32),
}

/// A Gaussian kernel with the packed layout its points use and the shader constants that go
/// with it (images on the torus, fixed point).
#[derive(Clone, Debug)]
pub(crate) struct KernelSpace {
    pub kernel: Gaussian,
    pub layout: Layout,
    pub header: Header,
}

impl KernelSpace {
    /// The kernel's space for `sets` of points (the layout's bounding box on R^d), with the
    /// engine's `header` specialised to this kernel.
    pub fn new(space: &Space, kernel: Gaussian, sets: &[&[f64]], header: &Header) -> Self {
        let layout = Layout::new(space, sets, kernel.width);
        let header = header.for_kernel(&kernel, &layout);
        KernelSpace { kernel, layout, header }
    }

    /// Points packed for this kernel with no coefficient (SENTINEL): targets of a kernel sum.
    pub fn pack(&self, points: &[f64]) -> Vec<[u32; 4]> {
        let d = self.header.dim as usize;
        self.layout.pack(points, d, self.header.packed as usize)
    }

    /// Points packed with natural-log coefficients: sources of a kernel sum.
    pub fn pack_with(&self, points: &[f64], log_coeffs: &[f64]) -> Vec<[u32; 4]> {
        let mut packed = self.pack(points);
        self.set_coeffs(&mut packed, log_coeffs);
        packed
    }

    /// Writes natural-log coefficients into packed sources.
    pub fn set_coeffs(&self, packed: &mut [[u32; 4]], log_coeffs: &[f64]) {
        let p = self.header.packed as usize;
        for (chunk, c) in packed.chunks_exact_mut(p).zip(log_coeffs) {
            chunk[p - 1][3] = ((c * std::f64::consts::LOG2_E) as f32).to_bits();
        }
    }

    pub fn params(&self, nt: usize, ns: usize, split: Option<Split>) -> KernelParams {
        let (chunk_len, target_groups) = split.map_or((0, 0), |s| (s.chunk_len as u32, s.target_groups as u32));
        KernelParams::new(&self.kernel, &self.layout, nt, ns, chunk_len, target_groups)
    }
}

/// How a kernel sum splits its sources (see log_kernel_sum.wgsl).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Split {
    pub chunk_len: usize,
    pub chunks: usize,
    pub target_groups: usize,
}

/// Workgroups a kernel sum should have before its sources are split: at least 8 per compute unit
/// on any card up to 256 of them (an H100 or H200 has 132 SMs), so that N = 2^14 (128 target
/// groups, 16 chunks) keeps a large GPU busy; wgpu does not report the unit count. A function of
/// the sizes only, so results do not depend on the device.
const MIN_GROUPS: usize = 2048;

/// The split of an nt × ns kernel sum (or any tiled sum over sources), `None` when the targets
/// alone give enough workgroups or the sources are too few to share out (each chunk keeps at
/// least four tiles).
pub(crate) fn split(nt: usize, ns: usize, wg: usize) -> Option<Split> {
    let target_groups = nt.div_ceil(wg).max(1);
    if target_groups >= MIN_GROUPS {
        return None;
    }
    let tiles = ns.div_ceil(wg);
    let chunks = MIN_GROUPS.div_ceil(target_groups).min(tiles / 4).max(1);
    if chunks <= 1 {
        return None;
    }
    let chunk_len = tiles.div_ceil(chunks) * wg;
    Some(Split { chunk_len, chunks: ns.div_ceil(chunk_len), target_groups })
}

/// Makes buffers and passes on one device.
pub(crate) struct Builder<'a> {
    pub ctx: &'a GpuContext,
    /// Build the bounds-checked shader modules.
    pub checked: bool,
    /// Workgroups per grid dimension.
    pub max_dim: u32,
    /// Workgroup size of the `log_kernel_sum` passes (checked by [`check_kernel_workgroup`]).
    pub kernel_wg: u32,
    /// Above how many particles `cutoff = "auto"` sums by cells (see `GpuOptions`).
    pub auto_cells_above: usize,
}

/// Whether `workgroup` can run the kernel sum at `packed` vec4s per point on this device: a
/// multiple of 4 (the inner loop takes sources four at a time) within the invocation limit,
/// whose source tile fits the workgroup storage. The tile of fixed-point coordinates holds two
/// vec4 per packed one (high and low parts); callers that do not know yet whether a kernel will
/// be in fixed point pass `fixed = true`.
pub(crate) fn check_kernel_workgroup(ctx: &GpuContext, workgroup: u32, packed: usize, fixed: bool) -> Result<()> {
    let limits = ctx.limits();
    let packed = if fixed { 2 * packed } else { packed };
    let tile_bytes = u64::from(workgroup) * packed as u64 * 16;
    if workgroup < 4
        || workgroup % 4 != 0
        || workgroup > limits.max_compute_invocations_per_workgroup
        || tile_bytes > u64::from(limits.max_compute_workgroup_storage_size)
    {
        return Err(Error::invalid(
            "workgroup_size",
            workgroup,
            format!(
                "a multiple of 4 up to {} whose source tile ({} bytes per point here) fits the {} bytes of \
                 workgroup storage",
                limits.max_compute_invocations_per_workgroup,
                packed * 16,
                limits.max_compute_workgroup_storage_size
            ),
        ));
    }
    Ok(())
}

const STORAGE: wgpu::BufferUsages =
    wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_DST).union(wgpu::BufferUsages::COPY_SRC);

impl Builder<'_> {
    /// A storage buffer holding `bytes` (16 zero bytes when empty: a binding is never empty).
    pub fn init(&self, label: &str, bytes: &[u8]) -> wgpu::Buffer {
        let bytes = if bytes.is_empty() { &[0u8; 16][..] } else { bytes };
        self.ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytes,
            usage: STORAGE,
        })
    }

    /// A zeroed storage buffer of at least `bytes` bytes (and at least 16).
    pub fn zeros(&self, label: &str, bytes: usize) -> wgpu::Buffer {
        self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(16) as u64,
            usage: STORAGE,
            mapped_at_creation: false,
        })
    }

    /// A uniform buffer holding `bytes`.
    pub fn uniform(&self, label: &str, bytes: &[u8]) -> wgpu::Buffer {
        self.ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytes,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        })
    }

    /// A 1-D grid of `groups` workgroups, folded into 2-D beyond the per-dimension limit.
    pub fn grid(&self, groups: usize) -> (u32, u32) {
        let groups = groups.max(1) as u32;
        if groups <= self.max_dim { (groups, 1) } else { (self.max_dim, groups.div_ceil(self.max_dim)) }
    }

    /// The grid of an element-wise pass over `n` items.
    pub fn elements(&self, n: usize) -> (u32, u32) {
        self.grid(n.div_ceil(ELEMENT_WG as usize))
    }

    /// A pass of `shader` under `header` with the uniform `params` at binding 0 and `bufs` after it.
    pub fn pass_with(
        &self,
        shader: &Shader,
        header: &Header,
        params: &wgpu::Buffer,
        bufs: &[&wgpu::Buffer],
        groups: (u32, u32),
    ) -> Result<Pass> {
        let pipeline = kernels::pipeline(self.ctx, shader, header, self.checked)?;
        let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: params.as_entire_binding() }];
        entries.extend(
            bufs.iter()
                .enumerate()
                .map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32 + 1, resource: b.as_entire_binding() }),
        );
        let bind_group = self.ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(shader.name),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        Ok(Pass { pipeline, bind_group, groups })
    }

    /// [`Builder::pass_with`] with a uniform buffer made from `params`.
    pub fn pass<T: bytemuck::Pod>(
        &self,
        shader: &Shader,
        header: &Header,
        params: &T,
        bufs: &[&wgpu::Buffer],
        groups: (u32, u32),
    ) -> Result<Pass> {
        let u = self.uniform(shader.name, bytemuck::bytes_of(params));
        self.pass_with(shader, header, &u, bufs, groups)
    }

    /// out_t = log Σ_s exp(c_s) K(t, y_s) for `nt` packed targets and `ns` packed sources of
    /// `ks`: one `log_kernel_sum` pass, or a split one and `log_sum_merge` when the targets are
    /// few (see [`split`]).
    #[allow(clippy::too_many_arguments)]
    pub fn kernel_sum(
        &self,
        ks: &KernelSpace,
        targets: &wgpu::Buffer,
        nt: usize,
        sources: &wgpu::Buffer,
        ns: usize,
        out: &wgpu::Buffer,
        control: &wgpu::Buffer,
    ) -> Result<Vec<Pass>> {
        match split(nt, ns, self.kernel_wg as usize) {
            None => Ok(vec![self.kernel_sum_pass(ks, targets, nt, sources, ns, out, None, control)?]),
            Some(s) => {
                let partials = self.zeros("kernel_partials", 8 * s.chunks * nt);
                let sum = self.kernel_sum_pass(ks, targets, nt, sources, ns, &partials, Some(s), control)?;
                let merge = MergeParams {
                    n_targets: nt as u32,
                    chunks: s.chunks as u32,
                    pad0: 0,
                    log_norm: ks.kernel.log_norm as f32,
                };
                let merge = self.pass(
                    &kernels::LOG_SUM_MERGE,
                    &ks.header,
                    &merge,
                    &[&partials, out, control],
                    self.elements(nt),
                )?;
                Ok(vec![sum, merge])
            }
        }
    }

    /// [`Builder::kernel_sum`] without the merge, for a consumer that merges the chunks itself
    /// (`divergence_derivative`): the pass, its output buffer and the number of chunks in it (0
    /// when the sum is not split and the buffer holds the final logs).
    pub fn kernel_sum_unmerged(
        &self,
        ks: &KernelSpace,
        targets: &wgpu::Buffer,
        nt: usize,
        sources: &wgpu::Buffer,
        ns: usize,
        control: &wgpu::Buffer,
    ) -> Result<(Pass, wgpu::Buffer, u32)> {
        let s = split(nt, ns, self.kernel_wg as usize);
        let out = self.zeros("logs", 4 * nt * s.map_or(1, |s| 2 * s.chunks));
        let pass = self.kernel_sum_pass(ks, targets, nt, sources, ns, &out, s, control)?;
        Ok((pass, out, s.map_or(0, |s| s.chunks as u32)))
    }

    /// The `log_kernel_sum` pass itself, writing the logs or, split, the chunks' partials.
    #[allow(clippy::too_many_arguments)]
    fn kernel_sum_pass(
        &self,
        ks: &KernelSpace,
        targets: &wgpu::Buffer,
        nt: usize,
        sources: &wgpu::Buffer,
        ns: usize,
        out: &wgpu::Buffer,
        split: Option<Split>,
        control: &wgpu::Buffer,
    ) -> Result<Pass> {
        let wg = self.kernel_wg as usize;
        let shader = Shader { workgroup: self.kernel_wg, ..kernels::LOG_KERNEL_SUM };
        let params = ks.params(nt, ns, split);
        let groups = self.grid(split.map_or(nt.div_ceil(wg), |s| s.target_groups * s.chunks));
        self.pass(&shader, &ks.header, &params, &[targets, sources, out, control], groups)
    }
}

/// Records `passes` into a compute pass.
pub(crate) fn record(cpass: &mut wgpu::ComputePass<'_>, passes: &[Pass]) {
    for p in passes {
        cpass.set_pipeline(&p.pipeline);
        cpass.set_bind_group(0, &p.bind_group, &[]);
        cpass.dispatch_workgroups(p.groups.0, p.groups.1, 1);
    }
}

/// Error::TooLarge when `count` items of `bytes_each` exceed the device's binding limit.
pub(crate) fn check_binding(ctx: &GpuContext, what: &str, count: usize, bytes_each: usize) -> Result<()> {
    let limits = ctx.limits();
    let limit = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
    let needed = (count * bytes_each) as u64;
    if needed > limit || count as u64 > u64::from(u32::MAX) {
        return Err(Error::TooLarge {
            what: what.to_string(),
            needed,
            limit,
            max_n: (limit / bytes_each.max(1) as u64).min(u64::from(u32::MAX)),
        });
    }
    Ok(())
}

/// Records `passes` in one submission.
pub(crate) fn submit(ctx: &GpuContext, passes: &[Pass]) {
    let mut encoder = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("frflow") });
    {
        let mut cpass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
        record(&mut cpass, passes);
    }
    ctx.queue.submit([encoder.finish()]);
}

/// Copies `bytes` bytes of `buffer` into `staging` (a MAP_READ buffer at least that large) after
/// everything submitted so far, and returns them.
pub(crate) fn read_bytes(
    ctx: &GpuContext,
    buffer: &wgpu::Buffer,
    staging: &wgpu::Buffer,
    bytes: u64,
) -> Result<Vec<u8>> {
    let mut encoder = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("read") });
    encoder.copy_buffer_to_buffer(buffer, 0, staging, 0, bytes);
    ctx.queue.submit([encoder.finish()]);
    map_read(ctx, staging, bytes)
}

/// Maps `staging`'s first `bytes` bytes once everything submitted so far has run.
pub(crate) fn map_read(ctx: &GpuContext, staging: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
    let slice = staging.slice(..bytes);
    let (tx, rx) = std::sync::mpsc::channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    ctx.wait()?;
    rx.recv().map_err(|_| Error::gpu("the readback was dropped"))?.map_err(|e| Error::gpu_from("reading back", e))?;
    let data = slice.get_mapped_range().map_err(|e| Error::gpu_from("reading back", e))?.to_vec();
    staging.unmap();
    Ok(data)
}

/// A MAP_READ buffer of `bytes` bytes (at least 16).
pub(crate) fn staging(ctx: &GpuContext, label: &str, bytes: usize) -> wgpu::Buffer {
    ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes.max(16) as u64,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// The first `count` f32 values of `buffer`, read through a temporary staging buffer.
pub(crate) fn read_f32(ctx: &GpuContext, buffer: &wgpu::Buffer, count: usize) -> Result<Vec<f32>> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let staging = staging(ctx, "read_f32", count * 4);
    Ok(bytemuck::pod_collect_to_vec(&read_bytes(ctx, buffer, &staging, (count * 4) as u64)?))
}
