//! Propagation of chaos (SPEC §4): how fast the interacting particle system approaches the
//! mean-field flow as N grows.
//!
//! For every variant × N × replicate (positions seeded by `seed + replicate`; the same seed gives
//! the same first N positions for every N, so the sizes are coupled too), the interacting system
//! and the non-interacting reference system ([`super::reference`]) are run on the same positions
//! to the final time T, and two distances are recorded:
//!
//! - the coupled weight distance (1/N) Σ_i |W_i − W̄_i| = Σ_i |w_i − w̄_i| (W = N w);
//! - W₂(μᴺ_T, μ_T): exact in 1-D against the Gaussian μ_T where it is known (T2); otherwise
//!   against the simulated reference's large cloud, or against the reference weights on the same
//!   positions (closed-form T1); exact on the line in d = 1, exact OT for up to
//!   [`EXACT_OT_PAIRS`] pairs and the debiased Sinkhorn divergence beyond in d > 1 (on the GPU
//!   when the sweep runs there).
//!
//! Per N the mean and standard error over replicates are reported, and the log–log slope of each
//! mean against N is fitted by least squares with a 95% t interval ([`super::stats`]).

use super::figures::{LogLogPlot, Series, loglog};
use super::reference::{GaussianCase, ReferenceMode, ReferenceSystem, run_coupled};
use super::report::{Block, html};
use super::stats::{MeanSe, PowerFit, fit_power_law};
use super::sweep::{
    Bars, BaseProblem, ResultsStore, at_point, base_problem, fingerprint, finite, in_problem, parse_sweep,
    particle_counts, pin_data_seeds, reject_duplicates, write_text,
};
use crate::config::{Config, EngineChoice};
use crate::engine::gpu::{GpuContext, SinkhornLogSum};
use crate::error::{Error, Result};
use crate::io::output::write_csv;
use crate::model::{Space, Variant};
use crate::runner::build_engine;
use crate::stepper::normalised_weights;
use crate::transport::{
    Cost, GPU_TOLERANCE, SinkhornOptions, exact_ot, sinkhorn_divergence, sinkhorn_divergence_with, w2_squared_1d,
    w2_squared_1d_gaussian,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

/// Above this many point pairs (n·m) W₂ in d > 1 uses the Sinkhorn divergence instead of exact OT.
pub const EXACT_OT_PAIRS: usize = 4_000_000;

/// A chaos sweep file: the base problem and the `[sweep]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChaosFile {
    #[serde(default)]
    problem: Option<Config>,
    #[serde(default)]
    problem_file: Option<PathBuf>,
    sweep: ChaosSweep,
}

/// The `[sweep]` table of a chaos sweep.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChaosSweep {
    /// The particle counts N.
    pub n: Vec<i64>,
    /// Replicates per (variant, N) (default 16); replicate r uses the seed `seed + r`.
    #[serde(default = "default_replicates")]
    pub replicates: i64,
    /// The variants (default: the problem's).
    #[serde(default)]
    pub variants: Option<Vec<Variant>>,
    /// The base seed of the positions (default: the problem's `seed`).
    #[serde(default)]
    pub seed: Option<u64>,
    /// How the reference system is obtained (default `auto`).
    #[serde(default)]
    pub reference: ReferenceMode,
    /// N_ref, the size of the simulated reference system (default 16384).
    #[serde(default = "default_n_ref")]
    pub n_ref: i64,
    /// The base seed of the simulated reference system's positions (default `seed + 2³²`); replicate r
    /// adds r.
    #[serde(default)]
    pub ref_seed: Option<u64>,
    /// The final time T (default: the problem's `time.final_time`, which must then be set).
    #[serde(default)]
    pub final_time: Option<f64>,
}

fn default_replicates() -> i64 {
    16
}

fn default_n_ref() -> i64 {
    16384
}

/// A checked chaos sweep, ready to run.
#[derive(Clone, Debug)]
pub struct ChaosSpec {
    /// The base problem.
    pub base: BaseProblem,
    /// The sweep settings as written.
    pub sweep: ChaosSweep,
    /// The sweep file's text (saved beside the results and shown in the report).
    pub text: String,
    /// Checked particle counts.
    pub ns: Vec<usize>,
    /// Checked variants.
    pub variants: Vec<Variant>,
    /// Replicates per (variant, N).
    pub replicates: u64,
    /// The base seed of the positions.
    pub seed: u64,
    /// The base seed of the simulated reference system.
    pub ref_seed: u64,
    /// N_ref.
    pub n_ref: usize,
}

impl ChaosSpec {
    /// Parses a chaos sweep file's text; `origin` names it in messages and relative paths resolve
    /// in `dir`.
    pub fn from_str(text: &str, origin: &str, dir: &Path) -> Result<ChaosSpec> {
        let (file, table): (ChaosFile, _) = parse_sweep(text, origin)?;
        let base = base_problem(file.problem, file.problem_file.as_deref(), &table, dir)?;
        let s = file.sweep;
        let ns = particle_counts("sweep.n", &s.n)?;
        if !(1..=1_000_000).contains(&s.replicates) {
            return Err(Error::invalid("sweep.replicates", s.replicates, "an integer from 1 to 10⁶"));
        }
        let n_ref = particle_counts("sweep.n_ref", &[s.n_ref])?[0];
        if let Some(t) = s.final_time {
            crate::error::check_positive("sweep.final_time", t)?;
        }
        if s.final_time.is_none() && base.config.time.final_time.is_none() {
            return Err(Error::invalid(
                "sweep.final_time",
                "missing",
                "a final time T: sweep.final_time or the problem's time.final_time",
            ));
        }
        let variants = s.variants.clone().unwrap_or_else(|| vec![base.config.kernel.variant]);
        if variants.is_empty() {
            return Err(Error::invalid("sweep.variants", "[]", "at least one variant"));
        }
        reject_duplicates("sweep.variants", &variants)?;
        let seed = s.seed.unwrap_or(base.config.seed);
        let ref_seed = s.ref_seed.unwrap_or(seed.wrapping_add(1 << 32));
        Ok(ChaosSpec {
            ns,
            variants,
            replicates: s.replicates as u64,
            seed,
            ref_seed,
            n_ref,
            sweep: s,
            base,
            text: text.to_string(),
        })
    }

    /// Reads and parses a chaos sweep file.
    pub fn load(path: &Path) -> Result<ChaosSpec> {
        let text = crate::io::guard::read_config_text(path)?;
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        ChaosSpec::from_str(&text, &path.display().to_string(), dir)
    }

    /// The fingerprint of everything a result depends on beyond its (variant, N, replicate) key.
    fn fingerprint(&self) -> String {
        let settings = format!(
            "chaos v1 seed={} ref_seed={} n_ref={} reference={} final_time={:?}",
            self.seed,
            self.ref_seed,
            self.n_ref,
            self.sweep.reference.name(),
            self.sweep.final_time
        );
        fingerprint(&[&self.base.text, &settings])
    }

    /// The run config of one (variant, N, seed).
    fn config(&self, variant: Variant, n: usize, seed: u64) -> Config {
        let mut c = self.base.config.clone();
        pin_data_seeds(&mut c);
        c.seed = seed;
        c.kernel.variant = variant;
        c.particles.n = n as i64;
        c.output.plot = false;
        if let Some(t) = self.sweep.final_time {
            c.time.final_time = Some(t);
        }
        c
    }
}

/// One finished (variant, N, replicate).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChaosRun {
    /// The variant's short name.
    pub variant: String,
    /// N.
    pub n: usize,
    /// The replicate index.
    pub replicate: u64,
    /// The seed of the positions.
    pub seed: u64,
    /// (1/N) Σ |W_i − W̄_i|.
    pub coupling: f64,
    /// W₂(μᴺ_T, μ_T) or its stand-in (see `w2_target`).
    pub w2: f64,
    /// What W₂ was measured against: `gaussian` (the exact μ_T), `big-system` (the simulated
    /// reference's cloud) or `reference-weights` (w̄ on the same positions).
    pub w2_target: String,
    /// The reference system used: `closed-form`, `stepped` or `simulated`.
    pub reference: String,
    /// The final flow time reached.
    pub time: f64,
    /// Steps taken.
    pub steps: u64,
    /// Effective sample size of μᴺ_T.
    pub ess: f64,
    /// Wall-clock seconds of the run.
    pub wall_seconds: f64,
}

/// Mean ± standard error of both distances at one (variant, N).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChaosCell {
    /// The variant's short name.
    pub variant: String,
    /// N.
    pub n: usize,
    /// The weight coupling over replicates.
    pub coupling: MeanSe,
    /// W₂ over replicates.
    pub w2: MeanSe,
}

/// The fitted rates of one variant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChaosFit {
    /// The variant's short name.
    pub variant: String,
    /// Slope of ln(mean coupling) against ln N.
    pub coupling: Option<PowerFit>,
    /// Slope of ln(mean W₂) against ln N.
    pub w2: Option<PowerFit>,
}

/// Everything a chaos sweep reports (also written as `chaos.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChaosSummary {
    /// The sweep settings.
    pub sweep: ChaosSweep,
    /// The reference systems used (one per variant, in order).
    pub reference: Vec<String>,
    /// What W₂ was measured against (one per variant, in order).
    pub w2_target: Vec<String>,
    /// How the confidence intervals are computed.
    pub ci_method: String,
    /// Per (variant, N).
    pub cells: Vec<ChaosCell>,
    /// Per variant.
    pub fits: Vec<ChaosFit>,
}

/// How a sweep is run.
#[derive(Clone, Debug)]
pub struct SweepOptions {
    /// The output directory (created if missing).
    pub out: PathBuf,
    /// Also write `report.html`.
    pub report: bool,
    /// Show progress bars (when stderr is a terminal).
    pub progress: bool,
}

/// What a sweep did.
#[derive(Clone, Debug)]
pub struct ChaosOutcome {
    /// Runs computed by this call.
    pub computed: usize,
    /// Runs found finished in the results file and not recomputed.
    pub reused: usize,
    /// The summary over all runs of the sweep.
    pub summary: ChaosSummary,
    /// Every run of the sweep, in (variant, N, replicate) order.
    pub runs: Vec<ChaosRun>,
}

/// The CSV/JSON/figure/report files a chaos sweep writes into its output directory.
pub const CHAOS_FILES: [&str; 8] = [
    "results.jsonl",
    "chaos_runs.csv",
    "chaos_summary.csv",
    "chaos.json",
    "chaos_coupling.png",
    "chaos_coupling.svg",
    "chaos_w2.png",
    "chaos_w2.svg",
];

/// Where [`cloud_w2`] runs the Sinkhorn divergence (the only N × M part): on the CPU in f64, or
/// on the GPU the sweep's engine uses (`device` as in the config: name, kind, index or none).
#[derive(Clone, Copy, Debug)]
pub enum W2On<'a> {
    /// [`crate::transport::sinkhorn_divergence`].
    Cpu,
    /// [`crate::transport::sinkhorn_divergence_with`] and [`SinkhornLogSum`].
    Gpu {
        /// The adapter selector (`None`: the default adapter).
        device: Option<&'a str>,
    },
}

/// W₂ between two weighted clouds in `space`: exact on the line in d = 1, exact OT for small
/// clouds and the debiased Sinkhorn divergence for large ones in d > 1.
pub fn cloud_w2(space: &Space, x: &[f64], wx: &[f64], y: &[f64], wy: &[f64], on: W2On) -> Result<f64> {
    let d = space.dim;
    let w2sq = if d == 1 && space.side().is_none() {
        w2_squared_1d(x, wx, y, wy)?
    } else {
        let cost = Cost::of_space(space);
        if (x.len() / d) * (y.len() / d) <= EXACT_OT_PAIRS {
            exact_ot(&cost, x, wx, y, wy, false)?.cost
        } else if let W2On::Gpu { device } = on {
            let ctx = GpuContext::new(device)?;
            let options = SinkhornOptions { tolerance: GPU_TOLERANCE, ..Default::default() };
            sinkhorn_divergence_with(&mut SinkhornLogSum::new(&ctx, &cost)?, x, wx, y, wy, &options)?.value
        } else {
            sinkhorn_divergence(&cost, x, wx, y, wy, &SinkhornOptions::default())?.value
        }
    };
    Ok(w2sq.max(0.0).sqrt())
}

/// Runs one (variant, N, replicate).
fn run_one(
    spec: &ChaosSpec,
    choice: EngineChoice,
    variant: Variant,
    n: usize,
    replicate: u64,
    on_time: &mut dyn FnMut(f64),
) -> Result<ChaosRun> {
    let start = Instant::now();
    let seed = spec.seed.wrapping_add(replicate);
    let config = spec.config(variant, n, seed);
    let problem = config.build(&spec.base.base_dir)?;
    let t_end = problem.run.final_time.expect("checked in ChaosSpec::from_str");
    let big = || {
        let mut c = config.clone();
        c.seed = spec.ref_seed.wrapping_add(replicate);
        c.particles.n = spec.n_ref as i64;
        Ok(c.build(&spec.base.base_dir)?.particles)
    };
    let reference = ReferenceSystem::choose(spec.sweep.reference, &problem, big)?;
    let device = problem.device.clone();
    let wg = problem.gpu;
    let mut engine = build_engine(choice, device.as_deref(), wg, problem.model.clone(), problem.particles.clone())?;
    // The large system solves the same model (its data included) from its own positions.
    let big_engine =
        |p: &crate::particles::Particles| build_engine(choice, device.as_deref(), wg, problem.model.clone(), p.clone());
    let outcome = run_coupled(&mut *engine, &reference, &problem, t_end, big_engine, on_time)?;

    let w = normalised_weights(&outcome.state.log_weights);
    let w_bar = normalised_weights(&outcome.reference_log_weights);
    let coupling = crate::engine::pairwise_sum(&w.iter().zip(&w_bar).map(|(a, b)| (a - b).abs()).collect::<Vec<_>>());
    let space = problem.model.space;
    let x = &problem.particles.positions;
    let gaussian = GaussianCase::detect(&problem);
    let w2_on = if choice == EngineChoice::Gpu { W2On::Gpu { device: device.as_deref() } } else { W2On::Cpu };
    let (w2, target) = match (&gaussian, &outcome.big) {
        (Some(g), _) if space.dim == 1 => {
            let (m, v) = g.at(outcome.state.time);
            (w2_squared_1d_gaussian(x, &w, m, v.sqrt())?.max(0.0).sqrt(), "gaussian")
        }
        (_, Some((y, wy))) => (cloud_w2(&space, x, &w, y, wy, w2_on)?, "big-system"),
        _ => (cloud_w2(&space, x, &w, x, &w_bar, w2_on)?, "reference-weights"),
    };
    Ok(ChaosRun {
        variant: variant.name().to_string(),
        n,
        replicate,
        seed,
        coupling,
        w2,
        w2_target: target.to_string(),
        reference: reference.mode().name().to_string(),
        time: outcome.state.time,
        steps: outcome.steps,
        ess: outcome.diagnostics.ess,
        wall_seconds: start.elapsed().as_secs_f64(),
    })
}

/// The results-file key of one run.
fn key(variant: Variant, n: usize, replicate: u64) -> String {
    format!("{}/{n}/{replicate}", variant.name())
}

/// Runs (or resumes) a chaos sweep and writes its outputs into `options.out`: `sweep.toml`,
/// `results.jsonl` (one line per finished run, appended as it finishes), `chaos_runs.csv`,
/// `chaos_summary.csv`, `chaos.json`, `chaos_coupling.{png,svg}`, `chaos_w2.{png,svg}` and, with
/// `options.report`, `report.html`.
pub fn run_chaos(spec: &ChaosSpec, options: &SweepOptions) -> Result<ChaosOutcome> {
    let out = &options.out;
    // One process per output directory: two sweeps appending to one results file would mix.
    let _lock = crate::io::guard::OutputLock::acquire(out)?;
    write_text(&out.join("sweep.toml"), &spec.text)?;
    let store = ResultsStore::<ChaosRun>::open(&out.join("results.jsonl"), &spec.fingerprint())?;
    if store.stale > 0 {
        eprintln!(
            "frflow: {} results in {} were computed for another problem or sweep settings; ignoring them",
            store.stale,
            out.join("results.jsonl").display()
        );
    }
    let mut tasks = Vec::new();
    for &v in &spec.variants {
        for &n in &spec.ns {
            for r in 0..spec.replicates {
                tasks.push((v, n, r));
            }
        }
    }
    let pending: Vec<_> = tasks.iter().copied().filter(|(v, n, r)| store.get(&key(*v, *n, *r)).is_none()).collect();
    let reused = tasks.len() - pending.len();
    // Resolved once per sweep, so that hundreds of runs do not probe (and print) each.
    let choice = spec.base.config.engine.resolve();
    let bars = Bars::new(tasks.len() as u64, reused as u64, options.progress);
    let store = Mutex::new(store);
    let run_task = |&(v, n, r): &(Variant, usize, u64)| -> Result<()> {
        let bar = bars.config_bar(&format!("{} N={n} rep={r}", v.name()));
        let t_end = spec.sweep.final_time.or(spec.base.config.time.final_time).unwrap_or(1.0);
        let mut on_time = |t: f64| bar.set_position((1000.0 * t / t_end) as u64);
        let run = run_one(spec, choice, v, n, r, &mut on_time).map_err(|e| {
            at_point(format!("variant {}, N = {n}, replicate {r}", v.name()), in_problem(&spec.base, e))
        })?;
        bar.finish_and_clear();
        store.lock().expect("no panics while held").append(&key(v, n, r), run)?;
        bars.overall.inc(1);
        Ok(())
    };
    // Small runs are too short to keep all cores busy: run them side by side. Large ones (and GPU
    // runs, which would each open a device) one at a time, each parallel inside.
    let small = |(_, n, _): &&(Variant, usize, u64)| {
        let big = if spec.sweep.reference == ReferenceMode::Simulated { spec.n_ref } else { 0 };
        choice == EngineChoice::Cpu && (*n).max(big) <= 1024
    };
    let (parallel, serial): (Vec<_>, Vec<_>) = pending.iter().partition(small);
    {
        use rayon::prelude::*;
        parallel.par_iter().try_for_each(run_task)?;
    }
    serial.iter().try_for_each(run_task)?;
    bars.finish();
    let computed = pending.len();
    let store = store.into_inner().expect("no panics while held");
    let runs: Vec<ChaosRun> =
        tasks.iter().map(|(v, n, r)| store.get(&key(*v, *n, *r)).cloned().expect("every task finished")).collect();
    let summary = summarise(spec, &runs);
    write_outputs(spec, &summary, &runs, options)?;
    Ok(ChaosOutcome { computed, reused, summary, runs })
}

/// Per-(variant, N) means and per-variant fits.
fn summarise(spec: &ChaosSpec, runs: &[ChaosRun]) -> ChaosSummary {
    let mut cells = Vec::new();
    let mut fits = Vec::new();
    let (mut reference, mut w2_target) = (Vec::new(), Vec::new());
    for v in &spec.variants {
        let name = v.name();
        let mine: Vec<&ChaosRun> = runs.iter().filter(|r| r.variant == name).collect();
        reference.push(mine.first().map(|r| r.reference.clone()).unwrap_or_default());
        w2_target.push(mine.first().map(|r| r.w2_target.clone()).unwrap_or_default());
        let mut row = Vec::new();
        for &n in &spec.ns {
            let at: Vec<&&ChaosRun> = mine.iter().filter(|r| r.n == n).collect();
            let c: Vec<f64> = at.iter().map(|r| r.coupling).collect();
            let w: Vec<f64> = at.iter().map(|r| r.w2).collect();
            row.push(ChaosCell { variant: name.to_string(), n, coupling: MeanSe::of(&c), w2: MeanSe::of(&w) });
        }
        let xs: Vec<f64> = row.iter().map(|c| c.n as f64).collect();
        let fit_of = |f: &dyn Fn(&ChaosCell) -> f64| fit_power_law(&xs, &row.iter().map(f).collect::<Vec<_>>());
        fits.push(ChaosFit {
            variant: name.to_string(),
            coupling: fit_of(&|c| c.coupling.mean),
            w2: fit_of(&|c| c.w2.mean),
        });
        cells.extend(row);
    }
    ChaosSummary {
        sweep: spec.sweep.clone(),
        reference,
        w2_target,
        ci_method: "ordinary least squares of ln(mean over replicates) on ln N; 95% interval from Student's t \
                    with (number of N values − 2) degrees of freedom"
            .into(),
        cells,
        fits,
    }
}

fn fit_text(f: &Option<PowerFit>) -> String {
    f.as_ref().map_or_else(|| "–".into(), PowerFit::describe)
}

/// Writes the CSVs, the JSON summary, the plots and (optionally) the report.
fn write_outputs(spec: &ChaosSpec, summary: &ChaosSummary, runs: &[ChaosRun], options: &SweepOptions) -> Result<()> {
    let out = &options.out;
    write_csv(&out.join("chaos_runs.csv"), runs)?;
    /// A row of `chaos_summary.csv` (a mean that is not finite is empty).
    #[derive(serde::Serialize)]
    struct Row<'a> {
        variant: &'a str,
        n: usize,
        replicates: usize,
        coupling_mean: Option<f64>,
        coupling_se: Option<f64>,
        w2_mean: Option<f64>,
        w2_se: Option<f64>,
    }
    let rows = summary.cells.iter().map(|c| Row {
        variant: &c.variant,
        n: c.n,
        replicates: c.coupling.count,
        coupling_mean: finite(c.coupling.mean),
        coupling_se: finite(c.coupling.se),
        w2_mean: finite(c.w2.mean),
        w2_se: finite(c.w2.se),
    });
    write_csv(&out.join("chaos_summary.csv"), rows)?;
    write_text(&out.join("chaos.json"), &serde_json::to_string_pretty(summary).expect("plain data"))?;

    let series = |value: &dyn Fn(&ChaosCell) -> MeanSe, fit: &dyn Fn(&ChaosFit) -> Option<PowerFit>| -> Vec<Series> {
        summary
            .fits
            .iter()
            .map(|f| Series {
                label: format!("{}: slope {}", f.variant, fit_text(&fit(f))),
                points: summary
                    .cells
                    .iter()
                    .filter(|c| c.variant == f.variant)
                    .map(|c| {
                        let m = value(c);
                        (c.n as f64, m.mean, m.se)
                    })
                    .collect(),
                fit: fit(f).map(|p| (p.slope, p.intercept)),
            })
            .collect()
    };
    let guide = Some((-0.5, "N^(-1/2)".to_string()));
    let coupling_plot = LogLogPlot {
        title: format!("Weight coupling at T (mean ± s.e. over {} replicates)", spec.replicates),
        x_label: "N (particles)".into(),
        y_label: "(1/N) Σ |W_i − W̄_i|".into(),
        series: series(&|c| c.coupling, &|f| f.coupling),
        guide: guide.clone(),
        x_ticks: spec.ns.iter().map(|n| *n as f64).collect(),
    };
    let coupling_svg = loglog(&coupling_plot, &out.join("chaos_coupling.png"), &out.join("chaos_coupling.svg"))?;
    let w2_plot = LogLogPlot {
        title: format!("W₂(μᴺ_T, μ_T) (against: {})", summary.w2_target.join(", ")),
        x_label: "N (particles)".into(),
        y_label: "W₂".into(),
        series: series(&|c| c.w2, &|f| f.w2),
        guide,
        x_ticks: spec.ns.iter().map(|n| *n as f64).collect(),
    };
    let w2_svg = loglog(&w2_plot, &out.join("chaos_w2.png"), &out.join("chaos_w2.svg"))?;

    if options.report {
        let head = ["variant", "N", "replicates", "coupling mean", "coupling s.e.", "W₂ mean", "W₂ s.e."];
        let rows = summary
            .cells
            .iter()
            .map(|c| {
                vec![
                    c.variant.clone(),
                    c.n.to_string(),
                    c.coupling.count.to_string(),
                    format!("{:.4e}", c.coupling.mean),
                    format!("{:.2e}", c.coupling.se),
                    format!("{:.4e}", c.w2.mean),
                    format!("{:.2e}", c.w2.se),
                ]
            })
            .collect();
        let fit_rows = summary
            .fits
            .iter()
            .zip(&summary.reference)
            .zip(&summary.w2_target)
            .map(|((f, r), t)| vec![f.variant.clone(), r.clone(), t.clone(), fit_text(&f.coupling), fit_text(&f.w2)])
            .collect();
        let blocks = vec![
            Block::Text(format!(
                "Interacting vs non-interacting reference system (SPEC §4) at T = {}; {} replicates per N \
                 (positions seeded by seed + replicate, seed = {}).",
                runs.first().map_or(0.0, |r| r.time),
                spec.replicates,
                spec.seed
            )),
            Block::Heading("Fitted rates".into()),
            Block::Text(format!("Slope with 95% confidence interval: {}.", summary.ci_method)),
            Block::Table(
                ["variant", "reference", "W₂ against", "coupling slope", "W₂ slope"].map(String::from).to_vec(),
                fit_rows,
            ),
            Block::Figure(coupling_svg, "Coupled weight distance; dashed grey: N^(−1/2); thin dashed: fits.".into()),
            Block::Figure(w2_svg, "W₂ to the mean-field measure at T.".into()),
            Block::Heading("Means over replicates".into()),
            Block::Table(head.map(String::from).to_vec(), rows),
            Block::Heading("Sweep file".into()),
            Block::Pre(spec.text.clone()),
        ];
        write_text(&out.join("report.html"), &html("Propagation of chaos", &blocks))?;
    }
    Ok(())
}
