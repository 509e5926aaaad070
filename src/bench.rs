//! `frflow bench`: pair throughput of the kernel-sum pass alone, of whole steps and, with
//! `--sinkhorn`, of one pass of entropic OT's Sinkhorn iteration.
//!
//! Each figure is the median over `repeats` timed batches after a warm-up. The kernel pass is
//! timed on the device with timestamp queries where the adapter offers them, else by wall clock
//! around its submission and wait; steps are timed by wall clock around a submission and a
//! blocking readback (one submit and one small transfer per batch, amortised over the batch).
//! Batches grow until one lasts at least `min_batch_seconds`, so launch overhead is measured
//! honestly at small N and hidden at large N only as far as the step itself hides it.

use crate::config::GpuSettings;
use crate::engine::Engine;
use crate::engine::cells::Cutoff;
use crate::engine::cpu::{CpuEngine, log_kernel_sum, minimal_kernel_sum};
use crate::engine::gpu::context::GpuContext;
use crate::engine::gpu::{
    GpuEngine, GpuOptions, ImageExponentials, KernelPath, SinkhornLogSum, bench_log_kernel_sum,
    bench_minimal_kernel_sum,
};
use crate::error::{Error, Result};
use crate::io::data::{bumps_regression, gaussian_mixture_sample};
use crate::model::{
    Divergence, Domain, Energy, Gaussian, Interaction, Mmd, Model, ModelSpec, Npmle, Points, Potential, QuadratureSpec,
    Reference, Space, TwoLayerNet, Variant,
};
use crate::particles::{Component, Initial, Particles};
use crate::stepper::{Scheme, StepSize, Stepper};
use crate::transport::{Cost, DEFAULT_EPSILON_RATIO, LogSum, sinkhorn_log_sum};
use std::sync::Arc;
use std::time::Instant;

/// Which energy F the benchmarked problem has (besides the divergence).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BenchEnergy {
    /// F = 0.
    None,
    /// A quadratic potential (N work).
    Potential,
    /// A Gaussian interaction (one more N×N pass).
    Interaction,
    /// Half squared MMD to M points (N×N + N×M).
    Mmd,
    /// A two-layer network on M data points (M×N + N×M); needs d ≥ 3.
    TwoLayerNet,
    /// Gaussian-mixture NPMLE on M observations (M×N + N×M).
    Npmle,
}

impl std::str::FromStr for BenchEnergy {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s {
            "none" => BenchEnergy::None,
            "potential" => BenchEnergy::Potential,
            "interaction" => BenchEnergy::Interaction,
            "mmd" => BenchEnergy::Mmd,
            "two-layer-net" => BenchEnergy::TwoLayerNet,
            "npmle" => BenchEnergy::Npmle,
            _ => return Err(format!("`{s}`: allowed none, potential, interaction, mmd, two-layer-net, npmle")),
        })
    }
}

/// What to benchmark.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Particle counts.
    pub n: Vec<usize>,
    /// Dimension.
    pub dim: usize,
    /// Kernelization variants of the whole-step benchmark, one step row each.
    pub variants: Vec<Variant>,
    /// Energy of the whole-step benchmark.
    pub energy: BenchEnergy,
    /// Data size M for the MMD, network and NPMLE energies.
    pub m: usize,
    /// Timed batches per figure (the median is reported).
    pub repeats: usize,
    /// A batch is grown until it lasts at least this long.
    pub min_batch_seconds: f64,
    /// `None`: the CPU engine; `Some(selector)`: the GPU engine on that adapter ("" = best).
    pub device: Option<String>,
    /// Use bounds-checked shader modules.
    pub checked: bool,
    /// Workgroup size (and source tile) of the kernel-sum passes, timed alone and in steps
    /// (default 128).
    pub workgroup_size: Option<u32>,
    /// Where the steps' GPU engine computes the periodic images' exponentials (the kernel
    /// passes time both ways: `torus-images` and `torus-images-sfu`).
    pub image_exponentials: ImageExponentials,
    /// The card's pair-evaluation ceiling, to report the fraction reached.
    pub ceiling: Option<f64>,
    /// Also time one Sinkhorn pass (see [`BenchKind::Sinkhorn`]).
    pub sinkhorn: bool,
    /// Refuse a software adapter (lavapipe, WARP): for scripted runs on a GPU machine, where a
    /// silent fallback would take hours at large N and report meaningless figures.
    pub hardware_only: bool,
    /// ε of the steps' problem (default 0.1).
    pub epsilon: f64,
    /// The steps' cutoff (see `engine::cells`; default `Auto`).
    pub cutoff: Cutoff,
    /// The kernel-sum paths timed alone on the GPU engine (default: all of [`KernelPath::ALL`]):
    /// a scripted run times each once and leaves them out of its other runs.
    pub kernel_paths: Vec<KernelPath>,
}

/// `--kernel-paths`: `all`, `none`, or path names separated by commas (see [`KernelPath::name`]).
pub fn parse_kernel_paths(s: &str) -> Result<Vec<KernelPath>> {
    match s {
        "all" => Ok(KernelPath::ALL.to_vec()),
        "none" => Ok(Vec::new()),
        _ => s
            .split(',')
            .map(|name| {
                KernelPath::ALL.into_iter().find(|p| p.name() == name.trim()).ok_or_else(|| {
                    let names: Vec<&str> = KernelPath::ALL.iter().map(|p| p.name()).collect();
                    Error::invalid("--kernel-paths", name, format!("all, none, or some of {}", names.join(", ")))
                })
            })
            .collect(),
    }
}

/// The largest N at which the CPU engine's all-pairs kernel passes (and the minimal kernel) are
/// timed: beyond it they would take hours; their pairs/s hardly depends on N, so the rows at this
/// N are the all-pairs yardstick for the cutoff steps at larger N.
pub const CPU_ALL_PAIRS_MAX_N: usize = 8192;

/// The same bound on a software GPU adapter (lavapipe, ~3e7 pairs/s on two cores: one pass at
/// N = 2^20 would take half a day), so that cutoff steps at large N can be timed there with
/// their all-pairs yardstick in the same run.
pub const SOFTWARE_ALL_PAIRS_MAX_N: usize = 4096;

/// What a row of the benchmark timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BenchKind {
    /// The minimal Gaussian sum (`minimal_kernel_sum`): the yardstick of every other row.
    Minimal,
    /// One N × N kernel-sum pass alone, on the row's kernel path.
    Kernel,
    /// One whole step of the row's variant and energy (every pass, the update and the
    /// diagnostics of the last step of a batch).
    Step,
    /// One N × N pass of entropic OT's Sinkhorn iteration on N standard normal points in R^d, at
    /// the default Sinkhorn ε, host packing, upload and readback included: what each Sinkhorn
    /// iteration pays twice.
    Sinkhorn,
}

/// One row of the benchmark table: one thing timed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchRow {
    /// N.
    pub n: usize,
    /// d.
    pub dim: usize,
    /// What was timed.
    pub kind: BenchKind,
    /// The kernel-sum path timed (for steps: the path of the step's ε-kernel passes; `minimal`
    /// for the yardstick, `f64` on the CPU).
    pub kernel_path: String,
    /// The step's variant (steps only).
    pub variant: Option<String>,
    /// The step's energy (steps only).
    pub energy: Option<BenchEnergy>,
    /// Workgroup size of the kernel-sum passes (GPU).
    pub workgroup_size: Option<u32>,
    /// Kernel pairs one unit (pass or step) evaluates (all N×N, N×M and (N·Q)×N passes of a step).
    pub pairs: f64,
    /// Median seconds per unit.
    pub seconds: f64,
    /// pairs / seconds.
    pub pairs_per_second: f64,
    /// pairs_per_second over the minimal kernel's, measured in the same run on the same device:
    /// 1 means this row costs per pair what the least possible Gaussian sum costs.
    pub ratio_to_minimal: f64,
    /// pairs_per_second / ceiling, when a ceiling was given.
    pub fraction_of_ceiling: Option<f64>,
    /// 1 / seconds (steps only).
    pub steps_per_second: Option<f64>,
    /// Pairs a step actually evaluates when a cutoff drops far pairs (steps only): `pairs` times
    /// the engine's cutoff fraction (exact for A, B, C; for D and D′ the particles' share stands
    /// for the nodes'); `pairs_per_second` stays the all-pairs-equivalent rate N²-based.
    pub pairs_evaluated: Option<f64>,
    /// The largest relative truncation bound of the step's kernel sums (steps with a cutoff).
    pub truncation_bound: Option<f64>,
    /// Steps per second when the diagnostics are read back every [`DIAGNOSTICS_EVERY`] steps, as
    /// `frflow run` does with its default `output.every` (steps only): what the readback costs.
    pub steps_per_second_with_diagnostics: Option<f64>,
    /// Device dispatches per step (GPU steps only).
    pub dispatches_per_step: Option<usize>,
}

/// The cadence of the diagnostics readback timed by [`BenchRow::steps_per_second_with_diagnostics`].
pub const DIAGNOSTICS_EVERY: u64 = 10;

/// The whole report, as written to JSON.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchReport {
    /// frflow's version.
    pub frflow_version: String,
    /// `cpu-f64` or the adapter's name.
    pub device: String,
    /// The wgpu backend (GPU only).
    pub backend: Option<String>,
    /// The device type (GPU only).
    pub device_type: Option<String>,
    /// The driver and its version (GPU only).
    pub driver: Option<String>,
    /// The ceiling given with `--ceiling`.
    pub ceiling: Option<f64>,
    /// How the figures were timed.
    pub timing: String,
    /// One row per thing timed: for each N the minimal kernel, the kernel pass on every path, a
    /// step of every variant and, with `--sinkhorn`, the Sinkhorn pass.
    pub rows: Vec<BenchRow>,
}

/// The benchmark problem: uniform positions on the unit torus (R^d for the network and NPMLE,
/// whose data live there), σ = 1, the given ε, the chosen variant and energy.
pub fn bench_problem(
    n: usize,
    dim: usize,
    variant: Variant,
    energy: BenchEnergy,
    m: usize,
    epsilon: f64,
) -> Result<(Model, Particles)> {
    let euclidean = matches!(energy, BenchEnergy::TwoLayerNet | BenchEnergy::Npmle);
    let space = Space::new(dim, if euclidean { Domain::Euclidean } else { Domain::Torus { side: 1.0 } })?;
    let reference = if euclidean { Reference::Gaussian { mean: vec![0.0; dim], std: 2.0 } } else { Reference::Uniform };
    let sample = |std: f64| -> Result<Arc<Points>> {
        let c = Component { weight: 1.0, mean: vec![0.5; dim], std };
        Ok(Arc::new(gaussian_mixture_sample(&[c], m, 0.0, 7)?))
    };
    let terms = match energy {
        BenchEnergy::None => vec![],
        BenchEnergy::Potential => {
            vec![Energy::Potential(Potential::Quadratic { strength: 1.0, center: vec![0.5; dim] })]
        }
        BenchEnergy::Interaction => vec![Energy::Interaction(Interaction { strength: 0.5, width: 0.2 })],
        BenchEnergy::Mmd => vec![Energy::Mmd(Mmd { width: 0.2, sample: sample(0.1)? })],
        BenchEnergy::TwoLayerNet => {
            if dim < 3 {
                return Err(Error::invalid("--d", dim, "at least 3 for the two-layer network (x = (a, b, c))"));
            }
            let (z1, y) = bumps_regression(m, 0.05, 7)?;
            // Inputs of dimension d − 2: the bumps input in the first column, copies after it.
            let p = dim - 2;
            let values = z1.values.iter().flat_map(|z| std::iter::repeat_n(*z, p)).collect();
            vec![Energy::TwoLayerNet(TwoLayerNet {
                inputs: Arc::new(Points { dim: p, values }),
                targets: Arc::new(y),
                penalty: 1e-3,
            })]
        }
        BenchEnergy::Npmle => vec![Energy::Npmle(Npmle { observations: sample(1.0)?, noise: 0.3 })],
    };
    let model = ModelSpec {
        space,
        reference,
        divergence: Divergence::Kl,
        sigma: 1.0,
        epsilon,
        variant,
        energy: terms,
        quadrature: QuadratureSpec { order: 3, samples: 16, ..Default::default() },
    }
    .build()?;
    let init = if euclidean {
        Initial::Gaussian { mean: vec![0.0; dim], std: 1.5 }
    } else {
        Initial::Uniform { low: 0.0, high: 1.0 }
    };
    Ok((model, Particles::sample(space, &init, n, 1)?))
}

/// Kernel pairs one step evaluates: the divergence's passes plus the energy's.
pub fn pairs_per_step(model: &Model, particles: usize) -> f64 {
    let n = particles as f64;
    let q = model.quadrature.len() as f64;
    let divergence = model.variant.pairs_per_evaluation(n, q);
    let energy: f64 = model.energy.iter().map(|e| e.pairs_per_evaluation(particles)).sum();
    divergence + energy
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let k = v.len();
    if k % 2 == 1 { v[k / 2] } else { 0.5 * (v[k / 2 - 1] + v[k / 2]) }
}

/// Times `run(count)`, which does `count` units of work, waits for them, and may return its own
/// measurement of them (device timestamps) to use instead of the wall clock: grows `count` until
/// one batch lasts `min_seconds`, then returns the median seconds per unit over `repeats` batches.
fn time_per_unit(repeats: usize, min_seconds: f64, mut run: impl FnMut(u64) -> Result<Option<f64>>) -> Result<f64> {
    let mut batch = |count: u64| -> Result<f64> {
        let start = Instant::now();
        let measured = run(count)?;
        Ok(measured.unwrap_or_else(|| start.elapsed().as_secs_f64()))
    };
    batch(1)?; // warm-up: pipelines compiled, buffers resident
    let mut count = 1u64;
    loop {
        let s = batch(count)?;
        if s >= min_seconds || count >= 1 << 20 {
            let mut per = vec![s / count as f64];
            for _ in 1..repeats.max(1) {
                per.push(batch(count)? / count as f64);
            }
            return Ok(median(per));
        }
        count = (count * 2).max((count as f64 * min_seconds / s.max(1e-9)).ceil() as u64).min(1 << 20);
    }
}

/// Median seconds of one N × N Sinkhorn pass (see [`BenchKind::Sinkhorn`]).
fn time_sinkhorn_pass(ctx: Option<&GpuContext>, opts: &BenchOptions, n: usize) -> Result<f64> {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
    let x: Vec<f64> = (0..n * opts.dim).map(|_| crate::particles::standard_normal(&mut rng)).collect();
    let coeffs = vec![-(n as f64).ln(); n];
    let inv_eps = 1.0 / (DEFAULT_EPSILON_RATIO * 2.0 * opts.dim as f64);
    let cost = Cost::euclidean(opts.dim)?;
    match ctx {
        Some(ctx) => {
            let mut pass = SinkhornLogSum::new(ctx, &cost)?;
            time_per_unit(opts.repeats, opts.min_batch_seconds, |reps| {
                for _ in 0..reps {
                    std::hint::black_box(pass.log_sum(&x, &x, &coeffs, inv_eps)?);
                }
                Ok(None)
            })
        }
        None => time_per_unit(opts.repeats, opts.min_batch_seconds, |reps| {
            for _ in 0..reps {
                std::hint::black_box(sinkhorn_log_sum(&cost, &x, &x, &coeffs, inv_eps));
            }
            Ok(None)
        }),
    }
}

/// Median seconds of one N × N kernel pass of `path` (`None`: the minimal kernel) on the GPU.
fn time_gpu_kernel(ctx: &GpuContext, opts: &BenchOptions, n: usize, path: Option<KernelPath>) -> Result<(String, f64)> {
    let mut name = String::new();
    // The hook times only its `reps` dispatches (device timestamps where offered), not its setup.
    let seconds = time_per_unit(opts.repeats, opts.min_batch_seconds, |reps| {
        let reps = u32::try_from(reps).unwrap_or(u32::MAX);
        let b = match path {
            Some(p) => bench_log_kernel_sum(ctx, p, opts.dim, n, reps, opts.checked, opts.workgroup_size)?,
            None => bench_minimal_kernel_sum(ctx, opts.dim, n, reps, opts.workgroup_size)?,
        };
        name = b.path;
        Ok(Some(b.seconds))
    })?;
    Ok((name, seconds))
}

/// Median seconds of one N × N pass on the CPU: the f64 `log_kernel_sum` (`minimal` false) or
/// its minimal twin.
fn time_cpu_kernel(opts: &BenchOptions, n: usize, minimal: bool) -> Result<f64> {
    let space = Space::new(opts.dim, Domain::Euclidean)?;
    let k = Gaussian::new(&space, 0.5, true, "epsilon")?;
    let (_, p) = bench_problem(n, opts.dim, Variant::Measure, BenchEnergy::None, opts.m, 0.1)?;
    let lw = vec![-(n as f64).ln(); n];
    let w = vec![1.0 / n as f64; n];
    time_per_unit(opts.repeats, opts.min_batch_seconds, |reps| {
        for _ in 0..reps {
            if minimal {
                std::hint::black_box(minimal_kernel_sum(&p.positions, &w, opts.dim));
            } else {
                std::hint::black_box(log_kernel_sum(&space, &k, &p.positions, &p.positions, &lw));
            }
        }
        Ok(None)
    })
}

/// Runs the benchmark.
pub fn run_bench(opts: &BenchOptions) -> Result<BenchReport> {
    if opts.n.is_empty() || opts.n.contains(&0) {
        return Err(Error::invalid("--n", format!("{:?}", opts.n), "one or more particle counts ≥ 1"));
    }
    if opts.variants.is_empty() {
        return Err(Error::invalid("--variant", "(none)", "one or more of A, B, C, D, D', exact"));
    }
    let ctx = match &opts.device {
        Some(sel) => Some(GpuContext::new((!sel.is_empty()).then_some(sel.as_str()))?),
        None => None,
    };
    if let Some(ctx) = ctx.as_ref().filter(|c| opts.hardware_only && c.is_software()) {
        return Err(Error::invalid(
            "--hardware-only",
            format!("adapter {:?}", ctx.adapter_info().name),
            "a hardware GPU adapter; this one is software: name another with --device or FRFLOW_DEVICE",
        ));
    }
    // Explicit Euler, the paper's scheme and a run's default.
    let stepper = Stepper::new(Scheme::Euler, StepSize::Fixed(1e-4))?;
    let workgroup_size = ctx.as_ref().map(|_| opts.workgroup_size.unwrap_or(128));
    let mut rows = Vec::new();
    for &n in &opts.n {
        let nf = n as f64;
        let row = |kind, kernel_path: String, pairs: f64, seconds: f64, minimal: f64| BenchRow {
            n,
            dim: opts.dim,
            kind,
            kernel_path,
            variant: None,
            energy: None,
            workgroup_size,
            pairs,
            seconds,
            pairs_per_second: pairs / seconds,
            ratio_to_minimal: pairs / seconds / minimal,
            fraction_of_ceiling: opts.ceiling.map(|c| pairs / seconds / c),
            steps_per_second: None,
            pairs_evaluated: None,
            truncation_bound: None,
            steps_per_second_with_diagnostics: None,
            dispatches_per_step: None,
        };
        // The yardstick first, then every kernel path against it (on the CPU at most at
        // CPU_ALL_PAIRS_MAX_N, on a software adapter at most at SOFTWARE_ALL_PAIRS_MAX_N, those
        // rows carrying their own N).
        let nk = match &ctx {
            Some(c) if c.is_software() => n.min(SOFTWARE_ALL_PAIRS_MAX_N),
            Some(_) => n,
            None => n.min(CPU_ALL_PAIRS_MAX_N),
        };
        let nkf = nk as f64;
        let minimal_seconds = match &ctx {
            Some(ctx) => time_gpu_kernel(ctx, opts, nk, None)?.1,
            None => time_cpu_kernel(opts, nk, true)?,
        };
        let minimal = nkf * nkf / minimal_seconds;
        rows.push(BenchRow { n: nk, ..row(BenchKind::Minimal, "minimal".into(), nkf * nkf, minimal_seconds, minimal) });
        match &ctx {
            Some(ctx) => {
                for &path in &opts.kernel_paths {
                    let (name, seconds) = time_gpu_kernel(ctx, opts, nk, Some(path))?;
                    rows.push(BenchRow { n: nk, ..row(BenchKind::Kernel, name, nkf * nkf, seconds, minimal) });
                }
            }
            None => {
                let seconds = time_cpu_kernel(opts, nk, false)?;
                rows.push(BenchRow { n: nk, ..row(BenchKind::Kernel, "f64".into(), nkf * nkf, seconds, minimal) });
            }
        }
        for &variant in &opts.variants {
            let (model, particles) = bench_problem(n, opts.dim, variant, opts.energy, opts.m, opts.epsilon)?;
            let model = Model { cutoff: opts.cutoff, ..model };
            let pairs = pairs_per_step(&model, n);
            let mut engine: Box<dyn Engine> = match &ctx {
                Some(ctx) => {
                    let settings = GpuSettings {
                        workgroup_size: opts.workgroup_size,
                        image_exponentials: opts.image_exponentials,
                    };
                    let options = GpuOptions { checked_shaders: opts.checked, ..settings.options() };
                    Box::new(GpuEngine::with_options(ctx.clone(), model, particles, options)?)
                }
                None => Box::new(CpuEngine::new(model, particles)?),
            };
            // evaluate() reads the diagnostics back, so the clock stops only once the device is done.
            let seconds = time_per_unit(opts.repeats, opts.min_batch_seconds, |steps| {
                engine.advance(steps, &stepper, None)?;
                engine.evaluate().map(|_| None)
            })?;
            let with_diagnostics = time_per_unit(opts.repeats, opts.min_batch_seconds, |steps| {
                let mut left = steps;
                while left > 0 {
                    let k = left.min(DIAGNOSTICS_EVERY);
                    engine.advance(k, &stepper, None)?;
                    engine.evaluate()?;
                    left -= k;
                }
                Ok(None)
            })?;
            let bound = engine.evaluate()?.truncation_bound;
            let fraction = engine.cutoff_fraction();
            rows.push(BenchRow {
                variant: Some(variant.name().into()),
                energy: Some(opts.energy),
                steps_per_second: Some(1.0 / seconds),
                pairs_evaluated: fraction.map(|f| f * pairs),
                truncation_bound: fraction.map(|_| bound),
                steps_per_second_with_diagnostics: Some(1.0 / with_diagnostics),
                dispatches_per_step: engine.dispatches_per_step(stepper.scheme),
                ..row(BenchKind::Step, engine.kernel_path(), pairs, seconds, minimal)
            });
        }
        if opts.sinkhorn {
            let seconds = time_sinkhorn_pass(ctx.as_ref(), opts, n)?;
            let path = if ctx.is_some() { "euclidean-fixed" } else { "f64" };
            rows.push(row(BenchKind::Sinkhorn, path.into(), nf * nf, seconds, minimal));
        }
    }
    let (device, backend, device_type, driver) = match &ctx {
        Some(ctx) => {
            let r = ctx.report();
            (r.name, Some(r.backend), Some(r.device_type), Some(r.driver))
        }
        None => (format!("cpu-f64 ({} threads)", rayon::current_num_threads()), None, None, None),
    };
    Ok(BenchReport {
        frflow_version: env!("CARGO_PKG_VERSION").into(),
        device,
        backend,
        device_type,
        driver,
        ceiling: opts.ceiling,
        timing: format!(
            "median of {} batches after a warm-up, batches ≥ {} s; kernel passes: {}; steps: wall clock around \
             submit + blocking readback",
            opts.repeats,
            opts.min_batch_seconds,
            if ctx.as_ref().is_some_and(GpuContext::has_timestamps) {
                "device timestamps"
            } else {
                "wall clock around submit + wait"
            }
        ),
        rows,
    })
}

impl BenchReport {
    /// The report as a plain-text table.
    pub fn table(&self) -> String {
        let mut t = format!("device: {}", self.device);
        if let (Some(b), Some(k), Some(d)) = (&self.backend, &self.device_type, &self.driver) {
            t.push_str(&format!(" ({b}, {k}, driver {d})"));
        }
        t.push_str(&format!("\ntiming: {}\n", self.timing));
        t.push_str(&format!(
            "{:>9} {:>2} {:>8} {:>16} {:>5} {:>13} | {:>13} {:>10} {:>8} | {:>11} {:>9} {:>12} {:>5} | {:>13} {:>9}\n",
            "N",
            "d",
            "kind",
            "kernel path",
            "var",
            "energy",
            "pair/s",
            "vs minimal",
            "of ceil",
            "step ms",
            "steps/s",
            format!("diag/{DIAGNOSTICS_EVERY} st/s"),
            "disp",
            "evaluated/s",
            "bound"
        ));
        let pct = |f: Option<f64>| f.map(|f| format!("{:.1}%", 100.0 * f)).unwrap_or_else(|| "-".into());
        for r in &self.rows {
            let kind = serde_json::to_value(r.kind).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
            let (step_ms, steps, diag) = match (r.steps_per_second, r.steps_per_second_with_diagnostics) {
                (Some(s), Some(d)) => (format!("{:.4}", 1e3 * r.seconds), format!("{s:.1}"), format!("{d:.1}")),
                _ => ("-".into(), "-".into(), "-".into()),
            };
            t.push_str(&format!(
                "{:>9} {:>2} {:>8} {:>16} {:>5} {:>13} | {:>13.3e} {:>9.1}% {:>8} | {:>11} {:>9} {:>12} {:>5} | {:>13} {:>9}\n",
                r.n,
                r.dim,
                kind,
                r.kernel_path,
                r.variant.as_deref().unwrap_or("-"),
                r.energy.map(|e| format!("{e:?}").to_lowercase()).unwrap_or_else(|| "-".into()),
                r.pairs_per_second,
                100.0 * r.ratio_to_minimal,
                pct(r.fraction_of_ceiling),
                step_ms,
                steps,
                diag,
                r.dispatches_per_step.map(|k| k.to_string()).unwrap_or_else(|| "-".into()),
                r.pairs_evaluated.map(|p| format!("{:.3e}", p / r.seconds)).unwrap_or_else(|| "-".into()),
                r.truncation_bound.map(|b| format!("{b:.1e}")).unwrap_or_else(|| "-".into())
            ));
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--kernel-paths`: all, none, a list by name; an unknown name is an error that names the
    /// flag, the value and what is allowed.
    #[test]
    fn kernel_paths_parse_by_name_and_refuse_unknown_ones() {
        assert_eq!(parse_kernel_paths("all").unwrap(), KernelPath::ALL.to_vec());
        assert!(parse_kernel_paths("none").unwrap().is_empty());
        assert_eq!(
            parse_kernel_paths("torus-images, euclidean-f32").unwrap(),
            [KernelPath::TorusImages, KernelPath::EuclideanF32]
        );
        let err = parse_kernel_paths("torus-images,torus").unwrap_err().to_string();
        assert!(err.contains("--kernel-paths") && err.contains("torus (") && err.contains("torus-images-sfu"), "{err}");
    }
}
