//! The wgpu/WGSL engine: the same rates, steps and diagnostics as [`super::cpu::CpuEngine`], in
//! f32 on any adapter wgpu can open (a GPU, or Mesa's lavapipe on the CPU).
//!
//! # Architecture
//!
//! Positions never move, so everything that depends only on them (the potentials U, log π or
//! log K_ε π, the quadrature nodes and log π there, log μ₀) is computed once on the host in f64,
//! exactly as the CPU engine does, and uploaded as f32; the energies' data sets are uploaded once
//! and stay on the device. Positions are packed with the log2 coefficient of
//! each point into `P = ⌈(d+1)/4⌉` vec4s, centred and scaled so that the kernel is
//! `exp2(-|x' - y'|²)`; as f32, or as 32-bit fixed point when ε is small against the domain
//! (exact differences, and the torus' minimum image by wrapping integer arithmetic).
//!
//! The kernel sum never underflows: each target keeps a shift m (starting at its own
//! coefficient in an N × N pass, the self term) and accumulates exp2(e − m), raising m with a
//! rescale when a term exceeds it by a factor 2³², so weights spanning 1e−30..1 and ε far below the
//! spacing still give finite logs. Grids beyond the device's workgroups per dimension are 2-D.
//! A sum with few targets (under 256 workgroups' worth: data points, a small reference system)
//! splits its sources into chunks, one workgroup per (target tile, chunk), and `log_sum_merge`
//! combines the chunks in a fixed order, so a large GPU stays busy and results stay deterministic.
//!
//! One evaluation is a fixed list of dispatches (the CPU twin of each is named in its file).
//! First the energies (see the `energies` module: interaction, MMD, two-layer network, NPMLE,
//! each ending in `energy_accumulate`, which keeps (δF, F's per-particle part) per particle),
//! then the divergence:
//!
//! | variant | passes |
//! |---|---|
//! | A, B | `log_kernel_sum` (particles × particles; a split sum's chunks are merged by `summarise`) |
//! | C | `log_kernel_sum`, `blob_coefficients`, `log_kernel_sum` |
//! | D, D′ | `log_kernel_sum` (N·Q nodes × particles), `node_coefficients`, `log_kernel_sum` (particles × N·Q nodes) |
//! | exact | none |
//!
//! followed by `summarise` and `summarise_final`, a deterministic two-level tree reduction of the
//! mass, Σ w g, Σ w², the energies, F's per-data-point terms, max/min g with the arg-max, the
//! first non-finite g, and the weighted moments; `summarise` computes each g_i = δF_i + σ h_i
//! (and the divergence's integrand) on the way with the `divergence_derivative` function.
//! [`Engine::rates_at`] runs the same shaders and function with other points as targets, against
//! the sources the evaluation left on the device (see the `at_points` module). In a step,
//! `summarise_final` also runs the `step_control` function (chooses h, automatic or fixed, caps
//! it at the final time, checks finiteness and positivity, and halts the device loop on failure),
//! then comes `euler_update`, or `exponential_update` + `normalise`: a variant-A or B Euler step
//! with a potential is four dispatches (`log_kernel_sum`, `summarise`, `summarise_final`,
//! `euler_update`). With a cutoff (see the `cells` module) each `log_kernel_sum` pass of the
//! ε-kernel is `cell_mass`, `log_kernel_sum_cells` and `cell_bound` instead: the 3^d neighbour
//! cells of every target only, and the largest truncation bound, which halts the loop above
//! `max_error` (a split A/B sum's merge then stays its own pass). Every pass of the loop reads the halt
//! word, so once a step fails or the final time is reached the remaining encoded steps do
//! nothing and the weights stay those after the last good step; the host reads the control block
//! once per [`GpuOptions::steps_per_readback`] steps and turns it into the CPU engine's errors, with the
//! same step and particle.
//!
//! Time: with a fixed h the host runs the CPU engine's f64 clock (so both engines take the same
//! number of steps to a final time) and tells the device how many steps to take and the last,
//! shortened h. With an automatic h the device accumulates the elapsed time in 64-bit fixed point
//! (exact integer sums of each f32 h quantised to 2⁻⁵² of the span), the host converts it back to
//! f64 after the readback, and a step that lands on the final time sets the time to it exactly.

mod at_points;
pub(crate) mod build;
pub(crate) mod cells;
mod chain;
pub mod context;
mod energies;
pub(crate) mod host;
pub(crate) mod kernels;
mod sinkhorn;
mod standalone;

pub use cells::log_kernel_sum_cells;
pub use context::{AdapterReport, DEVICE_ENV, GpuContext, hardware_adapter_available, list_adapters};
pub use sinkhorn::{SinkhornLogSum, sinkhorn_log_sum, sinkhorn_log_sum_cells};
pub use standalone::{
    KernelBench, KernelPath, bench_log_kernel_sum, bench_minimal_kernel_sum, log_kernel_sum, minimal_kernel_sum,
};

use super::{Diagnostics, Engine};
use crate::engine::cells::Cutoff;
use crate::error::{Error, Result};
use crate::model::{Divergence, Model};
use crate::particles::{Particles, State};
use crate::stepper::{Scheme, Stepper};
use crate::variant::GpuDiv;
use build::{Builder, KernelSpace, Pass, check_kernel_workgroup};
use energies::Energies;
use host::{Counts, DivParams, FinalParams, NONE, StepParams, control, stats};
use kernels::{ELEMENT_WG, Header, KERNEL_WG, REDUCE_GROUPS, REDUCE_WG};

/// Where the kernel sums compute their periodic images' exponentials (torus kernels with images,
/// such as ε = 0.1 on the unit torus; every other kernel has none). Both give the same sums to
/// f32 accuracy (`images_on_the_special_unit_give_the_same_sums`); which is faster depends on
/// the card, and `frflow bench` times both (README, "What the counts predict on a GPU").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageExponentials {
    /// `exp2_fma`, a polynomial on the FMA pipe: one special-function op per pair, about ten
    /// more instructions per coordinate.
    #[default]
    Fma,
    /// The hardware `exp2` on the special-function unit: 1 + d special-function ops per pair,
    /// about half the instructions.
    Sfu,
}

impl std::str::FromStr for ImageExponentials {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "fma" => Ok(ImageExponentials::Fma),
            "sfu" => Ok(ImageExponentials::Sfu),
            _ => Err(Error::invalid("image_exponentials", s, "\"fma\" or \"sfu\"")),
        }
    }
}

/// Engine options; the defaults are what a run wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuOptions {
    /// Build the shader modules with wgpu's runtime bounds checks (slower; for tests).
    pub checked_shaders: bool,
    /// Use at most this many workgroups per grid dimension (a test hook that forces the 2-D grid
    /// at small N); the device limit applies in any case.
    pub max_workgroups_per_dimension: Option<u32>,
    /// Steps encoded per queue submission.
    pub steps_per_submission: u32,
    /// Most steps between two readbacks of the control block (bounds the work wasted after an
    /// automatic-h run reaches its final time part way through).
    pub steps_per_readback: u64,
    /// Invocations per workgroup (and points per source tile) of the N×N kernel-sum passes: a
    /// multiple of 4 whose tile fits the device's workgroup storage. The best value depends on
    /// the card; `frflow bench --workgroup-size` measures it.
    pub kernel_workgroup: u32,
    /// Submit the next device loop before reading back the last one when `advance` is called
    /// again with the same request (see the `chain` module): the device works through the
    /// host's readbacks. Never changes a number.
    pub run_ahead: bool,
    /// Above how many particles `cutoff = "auto"` sums by cells (2^16: below it all pairs are
    /// fast on any GPU). A test hook, like `max_workgroups_per_dimension`.
    pub auto_cells_above: usize,
    /// Where the periodic images' exponentials are computed (FMA pipe by default).
    pub image_exponentials: ImageExponentials,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions {
            checked_shaders: false,
            max_workgroups_per_dimension: None,
            steps_per_submission: 64,
            steps_per_readback: 4096,
            kernel_workgroup: KERNEL_WG,
            run_ahead: true,
            auto_cells_above: cells::AUTO_CELLS_ABOVE,
            image_exponentials: ImageExponentials::Fma,
        }
    }
}

/// The device buffers.
struct Buffers {
    lw: wgpu::Buffer,
    src: wgpu::Buffer,
    g: wgpu::Buffer,
    a: wgpu::Buffer,
    stats: wgpu::Buffer,
    control: wgpu::Buffer,
    step_params: wgpu::Buffer,
    staging_small: wgpu::Buffer,
    staging_big: wgpu::Buffer,
    /// Per particle (δF, f): the energies' total (see energy_accumulate.wgsl).
    energy: wgpu::Buffer,
    /// C: the second pass's sources (log w − log S or − log π).
    src2: wgpu::Buffer,
    /// D, D′: the second pass's sources at the quadrature nodes.
    node_src: wgpu::Buffer,
    /// (ω_q, log ω_q).
    quad: wgpu::Buffer,
}

/// What the device buffers hold about the current state.
#[derive(Clone, Debug)]
enum Cache {
    /// Nothing: the state changed since the last evaluation.
    Stale,
    /// The evaluation of the current state is on the device; these are its stats.
    Current(Vec<u32>),
}

/// The GPU engine (f32). See the module docs for the passes and buffers.
pub struct GpuEngine {
    ctx: GpuContext,
    model: Model,
    particles: Particles,
    options: GpuOptions,
    n: usize,
    /// The smoothing kernel K_ε's layout and the engine's shader constants.
    eps: KernelSpace,
    packed_pos: Vec<[u32; 4]>,
    buffers: Buffers,
    energies: Energies,
    /// The evaluation up to `summarise`'s partials.
    eval: Vec<Pass>,
    /// `summarise_final` alone: ends an evaluation.
    eval_final: Pass,
    /// `summarise_final` with the step control: ends the evaluation that a step starts with.
    step_final: Pass,
    /// The updates, after `step_final`.
    euler: Vec<Pass>,
    exponential: Vec<Pass>,
    rates_pass: Pass,
    step: u64,
    time: f64,
    cache: Cache,
    /// Corners of the box of earlier `rates_at` points, included in the layouts on R^d.
    extra: Vec<f64>,
    /// The passes of the last `rates_at` call, reused while the points stay the same.
    at_points: Option<at_points::AtPoints>,
    /// The device loop of the last `advance`, possibly running ahead of the host.
    chain: Option<chain::Chain>,
    /// Its staging slots, made with the first chain.
    slots: Option<chain::Slots>,
    /// What the last `advance` asked one device loop for, and whether nothing touched the device
    /// since: the pattern under which the next loop is submitted ahead.
    last_request: Option<chain::Request>,
    clean: bool,
    /// F(μᴺ) of the user's whole terms at the current evaluation (computed on the host).
    host_f: f64,
    /// The step from which `auto` sums all pairs, where a truncation bound made it fall back.
    fell_back_at: Option<u64>,
    /// The ε-kernel's cell sums, where the cutoff uses them.
    cells: Option<cells::EngineCells>,
}

/// Size of the small readback (and of a chain's slot): stats then control.
const SMALL_BYTES: u64 = ((stats::LEN + control::LEN) * 4) as u64;

impl GpuEngine {
    /// An engine at uniform weights 1/N on `context`'s device, with default options.
    pub fn new(context: GpuContext, model: Model, particles: Particles) -> Result<Self> {
        Self::with_options(context, model, particles, GpuOptions::default())
    }

    /// An engine with explicit options.
    pub fn with_options(context: GpuContext, model: Model, particles: Particles, options: GpuOptions) -> Result<Self> {
        Self::build(context, model, particles, options, Vec::new())
    }

    /// The engine, with the layouts on R^d covering `extra` points too (see `rates_at`).
    fn build(
        context: GpuContext,
        model: Model,
        particles: Particles,
        options: GpuOptions,
        extra: Vec<f64>,
    ) -> Result<Self> {
        super::check_problem(&model, &particles)?;
        context.check_lost()?;
        context.check_limits_for(&model, particles.len())?;
        let ctx = context;
        let (n, d) = (particles.len(), model.space.dim);
        let p = kernels::packed_len(d);
        let has_div = model.has_divergence();
        let quad = model.variant.uses_quadrature() && has_div;
        let q = if quad { model.quadrature.len() } else { 1 };
        check_size(&ctx, n, q, p, quad)?;

        let fixed = model.at_points(&particles.positions)?;
        let extra_nodes = if quad { model.quadrature_nodes(&extra) } else { Vec::new() };
        let header = Header {
            variant: model.variant.index(),
            kl: model.divergence == Divergence::Kl,
            images_sfu: options.image_exponentials == ImageExponentials::Sfu,
            ..Header::plain(d, model.space.side().is_some())
        };
        let eps = KernelSpace::new(
            &model.space,
            model.kernel,
            &[&particles.positions, &fixed.nodes, &extra, &extra_nodes],
            &header,
        );
        let header = eps.header.clone();
        let layout = &eps.layout;
        let packed_pos = layout.pack(&particles.positions, d, p);
        let max_dim = options
            .max_workgroups_per_dimension
            .unwrap_or(u32::MAX)
            .min(ctx.limits().max_compute_workgroups_per_dimension)
            .max(1);
        check_kernel_workgroup(&ctx, options.kernel_workgroup, p, true)?;
        let b = Builder {
            ctx: &ctx,
            checked: options.checked_shaders,
            max_dim,
            kernel_wg: options.kernel_workgroup,
            auto_cells_above: options.auto_cells_above,
        };
        let device = &ctx.device;
        let scope = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let f32s = |v: &[f64]| v.iter().map(|x| *x as f32).collect::<Vec<f32>>();

        let lw0 = vec![-(n as f32).ln(); n];
        let mut src0 = packed_pos.clone();
        for (chunk, l) in src0.chunks_exact_mut(p).zip(&lw0) {
            chunk[p - 1][3] = (l * std::f32::consts::LOG2_E).to_bits();
        }
        let log_mu0: Vec<f64> = particles.log_initial_density.clone().unwrap_or_else(|| vec![0.0; n]);
        let fixed4: Vec<[f32; 4]> =
            (0..n).map(|i| [fixed.potential[i] as f32, fixed.log_ref[i] as f32, log_mu0[i] as f32, 0.0]).collect();
        let energy0: Vec<[f32; 2]> = fixed.potential.iter().map(|u| [*u as f32; 2]).collect();
        let quad_w: Vec<[f32; 2]> = model.quadrature.weights.iter().map(|w| [*w as f32, w.ln() as f32]).collect();
        let nq = if quad { n * q } else { 0 };
        let buffers = Buffers {
            lw: b.init("lw", bytemuck::cast_slice(&lw0)),
            src: b.init("src", bytemuck::cast_slice(&src0)),
            g: b.zeros("g", n * 4),
            a: b.zeros("a", n * 4),
            stats: b.zeros("stats", stats::LEN * 4),
            control: b.init("control", bytemuck::cast_slice(&control::fresh())),
            step_params: b.uniform("step_params", bytemuck::bytes_of(&StepParams::default())),
            staging_small: build::staging(&ctx, "staging_small", SMALL_BYTES as usize),
            staging_big: build::staging(&ctx, "staging_big", n * 8),
            energy: b.init("energy", bytemuck::cast_slice(&energy0)),
            src2: b.zeros("src2", if model.variant.kernelization().second_particle_sources() { n * p * 16 } else { 0 }),
            node_src: b.zeros("node_src", nq * p * 16),
            quad: b.init("quad", bytemuck::cast_slice(&quad_w)),
        };
        let pos = b.init("pos", bytemuck::cast_slice(&packed_pos));
        let fixed_buf = b.init("fixed", bytemuck::cast_slice(&fixed4));
        let mut logs = b.zeros("logs", n * 4);
        let mut logs_chunks = 0;
        let logs2 = b.zeros("logs2", n * 4);
        let nodes = b.init("nodes", bytemuck::cast_slice(&layout.pack(&fixed.nodes, d, p)));
        let node_logs = b.zeros("node_logs", nq * 4);
        let node_ref = b.init("node_ref", bytemuck::cast_slice(&f32s(&fixed.log_ref_nodes)));
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::gpu_from(format_args!("allocating buffers for N = {n}"), e));
        }

        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let bufs = &buffers;
        let energies = Energies::new(&b, &model, &particles.positions, &extra, &header, &bufs.control)?;
        let m_data = energies.m_data;
        let reduce_groups = n.max(m_data).div_ceil(REDUCE_WG as usize).min(REDUCE_GROUPS as usize).max(1);
        let lse_groups = n.div_ceil(ELEMENT_WG as usize).min(REDUCE_GROUPS as usize).max(1);
        let partials = b.zeros("partials", reduce_groups * (6 + 2 * d + 5) * 4);
        let lse_partials = b.zeros("lse_partials", lse_groups * 8);
        let unit = layout.unit as f32;
        let counts = |n: usize, aux: usize| Counts { n: n as u32, aux: aux as u32, m_data: 0, unit };
        let elements = b.elements(n);
        let ctl = &bufs.control;

        // The ε-kernel's sums (A, B: one; C, D, D′: two) by cells where the cutoff asks for
        // them (and so does `rates_at`; the energies' kernels have their own).
        let variant = model.variant.kernelization();
        let slots = if has_div { variant.kernel_sums() } else { 0 };
        let cell_nodes: &[f64] = if quad { &fixed.nodes } else { &[] };
        let cells =
            cells::EngineCells::new(&b, &eps, model.cutoff, &model.space, &particles.positions, cell_nodes, slots)?;
        let mut eval = energies.passes(&b, &header, n, &bufs.lw, &fixed_buf, &bufs.energy, ctl)?;
        if has_div {
            let eps_sum = cells::eps_sum(&b, &header, &eps, cells.as_ref().map(|c| (&c.sums, &c.truncation)), ctl);
            let (passes, merged_by_summarise) = variant.passes(&GpuDiv {
                b: &b,
                header: &header,
                eps: &eps,
                n,
                targets: n,
                q,
                cells: cells.is_some(),
                eps_sum: &eps_sum,
                points: &pos,
                nodes: &nodes,
                src: &bufs.src,
                src2: &bufs.src2,
                node_src: &bufs.node_src,
                lw: &bufs.lw,
                fixed: &fixed_buf,
                logs: &logs,
                logs2: &logs2,
                node_logs: &node_logs,
                node_ref: &node_ref,
                quad: &bufs.quad,
                control: ctl,
            })?;
            eval.extend(passes);
            if let Some(unmerged) = merged_by_summarise {
                (logs, logs_chunks) = unmerged;
            }
        }
        let div_params = DivParams {
            n: n as u32,
            q: q as u32,
            has_divergence: u32::from(has_div),
            chunks: logs_chunks,
            sigma: model.sigma as f32,
            ln_n: (n as f64).ln() as f32,
            log_norm: eps.kernel.log_norm as f32,
            pad0: 0.0,
        };
        let div_params = b.uniform("div_params", bytemuck::bytes_of(&div_params));
        let reduce_params = Counts { m_data: m_data as u32, ..counts(n, reduce_groups) };
        let reduce_params = b.uniform("reduce_params", bytemuck::bytes_of(&reduce_params));
        eval.push(b.pass_with(
            &kernels::SUMMARISE,
            &header,
            &div_params,
            &[
                &bufs.lw,
                &fixed_buf,
                &logs,
                &logs2,
                &node_logs,
                &node_ref,
                &bufs.quad,
                &bufs.energy,
                ctl,
                &reduce_params,
                &bufs.g,
                &pos,
                &partials,
                &energies.data_f,
            ],
            (reduce_groups as u32, 1),
        )?);
        // The second level, alone (an evaluation) or with the step control (a step).
        let summarise_final = |step: bool| {
            let params = FinalParams { groups: reduce_groups as u32, step: u32::from(step), pad0: 0, pad1: 0 };
            let params = b.uniform("final_params", bytemuck::bytes_of(&params));
            b.pass_with(
                &kernels::SUMMARISE_FINAL,
                &header,
                &bufs.step_params,
                &[&bufs.g, &params, &partials, &bufs.stats, ctl],
                (1, 1),
            )
        };
        let eval_final = summarise_final(false)?;
        let step_final = summarise_final(true)?;
        let n_params = counts(n, 0);
        let euler = vec![b.pass(
            &kernels::EULER_UPDATE,
            &header,
            &n_params,
            &[&bufs.stats, &bufs.g, &bufs.lw, &bufs.src, ctl],
            elements,
        )?];
        let lse_params = counts(n, lse_groups);
        let exponential = vec![
            b.pass(
                &kernels::EXPONENTIAL_UPDATE,
                &header,
                &lse_params,
                &[&bufs.stats, &bufs.g, &bufs.lw, &lse_partials, ctl],
                (lse_groups as u32, 1),
            )?,
            b.pass(&kernels::NORMALISE, &header, &lse_params, &[&lse_partials, &bufs.lw, &bufs.src, ctl], elements)?,
        ];
        let rates_pass = b.pass(&kernels::RATES, &header, &n_params, &[&bufs.stats, &bufs.g, &bufs.a], elements)?;
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::gpu_from("setting up the GPU passes", e));
        }
        ctx.check_lost()?;
        Ok(GpuEngine {
            ctx,
            model,
            particles,
            options,
            n,
            eps,
            packed_pos,
            buffers,
            energies,
            eval,
            eval_final,
            step_final,
            euler,
            exponential,
            rates_pass,
            step: 0,
            time: 0.0,
            cache: Cache::Stale,
            extra,
            at_points: None,
            chain: None,
            slots: None,
            last_request: None,
            clean: false,
            host_f: 0.0,
            fell_back_at: None,
            cells,
        })
    }

    /// The model being solved.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The particles' positions.
    pub fn particles(&self) -> &Particles {
        &self.particles
    }

    /// The device context.
    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// The device buffer of the current log-weights: N f32, natural log, normalised so that the
    /// weights sum to 1 (up to rounding with the Euler step), a zero weight stored as −1e30; current once `advance` has returned. A
    /// host application can bind it or copy it ([`GpuEngine::copy_log_weights`]) without a
    /// round trip through the host. It is the engine's own state: do not write to it.
    pub fn log_weights_buffer(&mut self) -> Result<&wgpu::Buffer> {
        self.touch()?;
        Ok(&self.buffers.lw)
    }

    /// Records a copy of the log-weights (see [`GpuEngine::log_weights_buffer`]) into `dst` at
    /// `offset` in the caller's encoder; `dst` needs COPY_DST and room for 4·N bytes.
    pub fn copy_log_weights(
        &mut self,
        encoder: &mut wgpu::CommandEncoder,
        dst: &wgpu::Buffer,
        offset: u64,
    ) -> Result<()> {
        self.touch()?;
        encoder.copy_buffer_to_buffer(&self.buffers.lw, 0, dst, offset, 4 * self.n as u64);
        Ok(())
    }

    /// Whether a device loop is running past the host's state (see [`GpuOptions::run_ahead`]).
    pub fn running_ahead(&self) -> bool {
        self.chain.as_ref().is_some_and(chain::Chain::is_ahead)
    }

    /// The options the engine was built with.
    pub fn options(&self) -> &GpuOptions {
        &self.options
    }

    /// δF/δm at the particles and F(μᴺ) for the current weights (SPEC §5), as the device computed
    /// them (f32, returned as f64): the energies' part of the rates, before σ h_ε and the mean
    /// are added. The GPU twin of the CPU engine's `energy_derivative` at the particles.
    pub fn energy_derivative(&mut self) -> Result<(Vec<f64>, f64)> {
        self.touch()?;
        self.read_energy_derivative()
    }

    /// Before using the device at the host's state: settles a chain running ahead, and ends the
    /// pattern under which the next `advance` runs ahead.
    fn touch(&mut self) -> Result<()> {
        self.settle()?;
        self.clean = false;
        Ok(())
    }

    /// Whether the model has terms the host evaluates (the user's whole terms): then every step
    /// starts with a readback of the weights.
    fn has_host_terms(&self) -> bool {
        self.energies.has_host_terms()
    }

    /// The weights the device holds (the host's state once the device is settled).
    fn device_weights(&self) -> Result<Vec<f64>> {
        Ok(self.read_f32(&self.buffers.lw, 0, self.n)?.into_iter().map(|l| from_lw(l).exp()).collect())
    }

    /// Evaluates the host's terms at the device's current weights and uploads their δF/δm.
    fn upload_host_terms(&mut self) -> Result<()> {
        if self.has_host_terms() {
            let w = self.device_weights()?;
            let d = self.model.space.dim;
            self.host_f = self.energies.upload_host_terms(&self.ctx.queue, &self.particles.positions, &w, d)?;
        }
        Ok(())
    }

    /// Writes log-weights (device form) and the sources' coefficients; the evaluation is stale.
    fn upload_log_weights(&mut self, lw: &[f32]) {
        let p = kernels::packed_len(self.model.space.dim);
        let mut src = self.packed_pos.clone();
        for (chunk, l) in src.chunks_exact_mut(p).zip(lw) {
            chunk[p - 1][3] = (l * std::f32::consts::LOG2_E).to_bits();
        }
        self.ctx.queue.write_buffer(&self.buffers.lw, 0, bytemuck::cast_slice(lw));
        self.ctx.queue.write_buffer(&self.buffers.src, 0, bytemuck::cast_slice(&src));
        self.cache = Cache::Stale;
    }

    fn encoder(&self) -> wgpu::CommandEncoder {
        self.ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("frflow") })
    }

    /// Maps `staging`'s first `bytes` bytes after everything submitted so far has run.
    fn map_read(&self, staging: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        build::map_read(&self.ctx, staging, bytes)
    }

    /// Submits `encoder` after copying the stats and control blocks out, and returns them.
    fn finish_small(&self, mut encoder: wgpu::CommandEncoder) -> Result<(Vec<u32>, Vec<u32>)> {
        let b = &self.buffers;
        let stats_bytes = (stats::LEN * 4) as u64;
        encoder.copy_buffer_to_buffer(&b.stats, 0, &b.staging_small, 0, stats_bytes);
        encoder.copy_buffer_to_buffer(&b.control, 0, &b.staging_small, stats_bytes, (control::LEN * 4) as u64);
        self.ctx.queue.submit([encoder.finish()]);
        let data = self.map_read(&b.staging_small, SMALL_BYTES)?;
        let words: Vec<u32> = bytemuck::pod_collect_to_vec(&data);
        let (s, c) = words.split_at(stats::LEN);
        Ok((s.to_vec(), c.to_vec()))
    }

    /// Reads `count` f32 values of `buffer` from element `first`.
    fn read_f32(&self, buffer: &wgpu::Buffer, first: usize, count: usize) -> Result<Vec<f32>> {
        let mut encoder = self.encoder();
        let bytes = (count * 4) as u64;
        encoder.copy_buffer_to_buffer(buffer, (first * 4) as u64, &self.buffers.staging_big, 0, bytes);
        self.ctx.queue.submit([encoder.finish()]);
        let data = self.map_read(&self.buffers.staging_big, bytes)?;
        Ok(bytemuck::pod_collect_to_vec(&data))
    }

    fn reset_control(&self) {
        self.ctx.queue.write_buffer(&self.buffers.control, 0, bytemuck::cast_slice(&control::fresh()));
    }

    /// Runs the evaluation passes unless the device already holds the current state's, and
    /// returns its stats.
    fn evaluated(&mut self) -> Result<Vec<u32>> {
        if let Cache::Current(s) = &self.cache {
            return Ok(s.clone());
        }
        self.touch()?;
        self.upload_host_terms()?;
        self.reset_control();
        let scope = self.ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut encoder = self.encoder();
        {
            let mut cpass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
            build::record(&mut cpass, &self.eval);
            build::record(&mut cpass, std::slice::from_ref(&self.eval_final));
        }
        let (s, c) = self.finish_small(encoder)?;
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::gpu_from("evaluating", e));
        }
        self.check_cutoff(&c)?;
        self.cache = Cache::Current(s.clone());
        Ok(s)
    }

    /// Whether `auto` answers `e` by summing all pairs: a truncation bound above max_error
    /// (isolated particles whose neighbourhood holds almost none of the mass) never stops a run
    /// whose cutoff is `auto`.
    fn falls_back_on(&self, e: &Error) -> bool {
        self.model.cutoff == Cutoff::Auto && crate::engine::cells::is_truncation_error(e)
    }

    /// `op`, and once more on an engine summing all pairs if it failed with a truncation bound
    /// that `auto` falls back on.
    fn falling_back<T>(&mut self, op: impl Fn(&mut Self) -> Result<T>) -> Result<T> {
        match op(self) {
            Err(e) if self.falls_back_on(&e) => {
                self.fall_back_to_all_pairs()?;
                op(self)
            }
            r => r,
        }
    }

    /// Rebuilds the engine at its current state with every kernel summed over all pairs (the
    /// step that found the bound has not been taken). Its name then says so.
    fn fall_back_to_all_pairs(&mut self) -> Result<()> {
        let state = Engine::state(self)?;
        let model = Model { cutoff: Cutoff::None, ..self.model.clone() };
        let step = self.step;
        let mut all = GpuEngine::build(
            self.ctx.clone(),
            model,
            self.particles.clone(),
            self.options.clone(),
            self.extra.clone(),
        )?;
        all.set_state(state)?;
        all.fell_back_at = Some(step);
        *self = all;
        Ok(())
    }

    /// The `kernel.cutoff` error if the device halted on a truncation bound above max_error.
    fn check_cutoff(&self, c: &[u32]) -> Result<()> {
        cells::check_halt(c, self.model.cutoff, self.step)
    }

    /// Error::NonFinite if the evaluation found a non-finite rate (as the CPU engine reports it).
    fn check_rates(&mut self, s: &[u32]) -> Result<()> {
        let bad = s[stats::BAD_RATE];
        if bad != NONE {
            // g at the host's state (the device may have run ahead).
            self.touch()?;
            self.evaluated()?;
            let value = f64::from(self.read_f32(&self.buffers.g, bad as usize, 1)?[0]);
            return Err(Error::NonFinite { step: self.step, particle: bad as usize, quantity: "rate", value });
        }
        Ok(())
    }

    fn diagnostics(&self, s: &[u32]) -> Diagnostics {
        let f = |k: usize| f64::from(f32::from_bits(s[k]));
        let m = &self.model;
        let d = m.space.dim;
        let mass = f(stats::MASS);
        // F = Σ w f + the data terms + the MMD constants (f64 on the host).
        let f_energy = f(stats::WDF) + f(stats::FDATA) + self.energies.f_const + self.host_f;
        let energy = if !m.has_divergence() {
            Some(f_energy)
        } else if m.variant.is_gradient_flow() {
            let offset = m.variant.kernelization().value_offset(m.divergence == Divergence::Kl);
            Some(f_energy + m.sigma * (f(stats::WE) + offset))
        } else {
            None
        };
        let sc = self.eps.layout.scale;
        let mut mean = vec![0.0; d];
        let mut variance = vec![0.0; d];
        for k in 0..d {
            let m1 = f(stats::MOMENTS + k) / mass;
            let m2 = f(stats::MOMENTS + d + k) / mass;
            mean[k] = self.eps.layout.center[k] + m1 / sc;
            variance[k] = (m2 - m1 * m1).max(0.0) / (sc * sc);
        }
        Diagnostics {
            step: self.step,
            time: self.time,
            energy,
            f_energy,
            mass,
            ess: mass * mass / f(stats::W2),
            max_abs_rate: f(stats::MAX_ABS_A),
            max_rate: f(stats::MAX_A),
            mean,
            variance,
            truncation_bound: 0.0,
        }
    }
}

fn from_lw(l: f32) -> f64 {
    host::from_device_log_weight(l)
}

/// Error::TooLarge when the largest binding would exceed the device's limits.
fn check_size(ctx: &GpuContext, n: usize, q: usize, p: usize, quad: bool) -> Result<()> {
    let limits = ctx.limits();
    let limit = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
    let per_particle = (p * 16 * if quad { q } else { 1 }) as u64;
    let needed = n as u64 * per_particle;
    let what = if quad { "the quadrature nodes (N·Q packed points)" } else { "the packed particles" };
    let count_limit = u64::from(u32::MAX) / if quad { q as u64 } else { 1 };
    if needed > limit || n as u64 > count_limit {
        return Err(Error::TooLarge {
            what: what.to_string(),
            needed,
            limit,
            max_n: (limit / per_particle).min(count_limit),
        });
    }
    Ok(())
}

impl Engine for GpuEngine {
    fn name(&self) -> String {
        let info = self.ctx.adapter_info();
        let host = self.energies.host_terms();
        let host =
            if host.is_empty() { String::new() } else { format!(" + on the host each step: {}", host.join(", ")) };
        let fell_back = match self.fell_back_at {
            Some(step) => format!(", all pairs from step {step} (cutoff auto: a truncation bound above max_error)"),
            None => String::new(),
        };
        format!("gpu-f32 ({}, {:?}, {}){fell_back}{host}", info.name, info.backend, self.kernel_path())
    }

    fn kernel_path(&self) -> String {
        self.eps.header.path().into()
    }

    fn dispatches_per_step(&self, scheme: Scheme) -> Option<usize> {
        let update = match scheme {
            Scheme::Euler => &self.euler,
            Scheme::Exponential => &self.exponential,
        };
        Some(self.eval.len() + 1 + update.len())
    }

    fn len(&self) -> usize {
        self.n
    }

    fn cutoff_fraction(&self) -> Option<f64> {
        // The ε-kernel's grid, else the first energy kernel's, as on the CPU.
        let grid = self.cells.as_ref().map(|c| &c.grid).or_else(|| self.energies.first_grid())?;
        let pos = &self.particles.positions;
        Some(grid.pairs(pos) as f64 / (self.n as f64).powi(2))
    }

    fn evaluate(&mut self) -> Result<Diagnostics> {
        self.falling_back(|e| {
            let s = e.evaluated()?;
            e.check_rates(&s)?;
            let mut d = e.diagnostics(&s);
            if let Some(cells) = &e.cells {
                d.truncation_bound = cells.largest(&e.ctx)?;
            }
            d.truncation_bound = d.truncation_bound.max(e.energies.largest_bound(&e.ctx)?);
            Ok(d)
        })
    }

    fn rates(&mut self) -> Result<Vec<f64>> {
        self.falling_back(|e| {
            e.touch()?;
            let s = e.evaluated()?;
            e.check_rates(&s)?;
            let mut encoder = e.encoder();
            {
                let mut cpass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
                build::record(&mut cpass, std::slice::from_ref(&e.rates_pass));
            }
            e.ctx.queue.submit([encoder.finish()]);
            Ok(e.read_f32(&e.buffers.a, 0, e.n)?.into_iter().map(f64::from).collect())
        })
    }

    fn rates_at(&mut self, points: &[f64]) -> Result<Vec<f64>> {
        self.falling_back(|e| {
            e.touch()?;
            e.rates_at_points(points)
        })
    }

    fn advance(&mut self, steps: u64, stepper: &Stepper, until: Option<f64>) -> Result<u64> {
        let start = self.step;
        match self.advance_chained(steps, stepper, until) {
            Err(e) if self.falls_back_on(&e) => {
                let done = self.step - start;
                self.fall_back_to_all_pairs()?;
                Ok(done + self.advance_chained(steps - done, stepper, until)?)
            }
            taken => taken,
        }
    }

    fn state(&mut self) -> Result<State> {
        let lw = match self.log_weights_behind()? {
            Some(lw) => lw,
            None => self.read_f32(&self.buffers.lw, 0, self.n)?,
        };
        Ok(State { log_weights: lw.into_iter().map(from_lw).collect(), step: self.step, time: self.time })
    }

    fn set_state(&mut self, state: State) -> Result<()> {
        if state.log_weights.len() != self.n {
            return Err(Error::invalid(
                "state.log_weights",
                format!("{} values", state.log_weights.len()),
                format!("one per particle ({})", self.n),
            ));
        }
        if let Some(i) = state.log_weights.iter().position(|l| l.is_nan() || *l == f64::INFINITY) {
            return Err(Error::invalid(format!("state.log_weights[{i}]"), state.log_weights[i], "finite or -inf"));
        }
        self.touch()?;
        let lw: Vec<f32> = state.log_weights.iter().map(|l| host::to_device_log_weight(*l)).collect();
        self.upload_log_weights(&lw);
        self.step = state.step;
        self.time = state.time;
        self.cache = Cache::Stale;
        Ok(())
    }
}
