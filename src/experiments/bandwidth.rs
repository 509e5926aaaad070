//! The ε → 0 limit (SPEC §7 T4): stationary states of the kernelized particle systems against the
//! minimiser of the unkernelized problem.
//!
//! The problem must have a known unkernelized minimiser: F a sum of potentials and KL, so that
//! μ* ∝ π e^{−U/σ} (the Gibbs measure). It is Gaussian in closed form for a Gaussian π and
//! quadratic potentials on R^d (e.g. SPEC T2 with λ > 0: precision 1/τ² + λ/σ), and is tabulated on
//! a fine grid for any other potential in d = 1.
//!
//! For every variant × N × ε × replicate (positions seeded by `seed + replicate`, the same for every
//! ε and, as a prefix, for every N), the flow is run to stationarity (the problem's `time.tolerance`
//! on max|a|, or its final time / steps) and compared with μ*:
//!
//! - `w2`: W₂(μᴺ, μ*) in d = 1 (exact, against the Gaussian or the tabulated μ*);
//! - `mean_error`: |mean(μᴺ) − mean(μ*)| (Euclidean norm over coordinates);
//! - `var_error`: variance(μᴺ) − variance(μ*), signed, averaged over coordinates.
//!
//! The stationary weights make K_ε μᴺ match μ* at the particles, a quadrature rather than a Monte
//! Carlo estimate: the moments of μᴺ fluctuate far less than those of i.i.d. samples of μ*, so the
//! ε² bias of the variance shows cleanly already at moderate N.
//!
//! Orders in ε are fitted per (variant, N) on |mean over replicates| by least squares in log–log
//! coordinates with a 95% t interval. With several N a heat map over (N, ε) shows where N ε^d is
//! too small (the self-interaction K_ε(0)/N dominates there, SPEC T4).

use super::chaos::SweepOptions;
use super::figures::{Heatmap, LogLogPlot, Series, heatmap, loglog};
use super::report::{Block, html};
use super::stats::{MeanSe, PowerFit, fit_power_law};
use super::sweep::{
    Bars, BaseProblem, ResultsStore, at_point, base_problem, fingerprint, finite, in_problem, parse_sweep,
    particle_counts, pin_data_seeds, reject_duplicates, write_text,
};
use crate::config::{Config, EngineChoice};
use crate::engine::{Diagnostics, Engine};
use crate::error::{Error, Result};
use crate::flow::{Observer, StopWhen, Termination};
use crate::io::output::{write_csv, write_csv_records};
use crate::model::{Divergence, Domain, Energy, Model, Potential, Reference, Variant};
use crate::runner::build_engine;
use crate::stepper::normalised_weights;
use crate::transport::{w2_squared_1d, w2_squared_1d_gaussian};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A bandwidth sweep file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BandwidthFile {
    #[serde(default)]
    problem: Option<Config>,
    #[serde(default)]
    problem_file: Option<PathBuf>,
    sweep: BandwidthSweep,
}

/// The `[sweep]` table of a bandwidth sweep.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BandwidthSweep {
    /// The bandwidths ε.
    pub epsilon: Vec<f64>,
    /// The particle counts N (default: the problem's `particles.n`).
    #[serde(default)]
    pub n: Option<Vec<i64>>,
    /// Replicates per (variant, N, ε) (default 4); replicate r uses the seed `seed + r`.
    #[serde(default = "default_replicates")]
    pub replicates: i64,
    /// The variants (default: the problem's).
    #[serde(default)]
    pub variants: Option<Vec<Variant>>,
    /// The base seed of the positions (default: the problem's `seed`).
    #[serde(default)]
    pub seed: Option<u64>,
    /// Stationarity: stop once the rms rate (Σ_i w_i a_i²)^{1/2} under μᴺ is below this (checked
    /// every `output.every` steps), besides the problem's own stopping rule.
    #[serde(default)]
    pub tolerance: Option<f64>,
}

fn default_replicates() -> i64 {
    4
}

/// The unkernelized minimiser μ* ∝ π e^{−U/σ}.
#[derive(Clone, Debug, PartialEq)]
pub enum Minimiser {
    /// N(mean, variance · I).
    Gaussian {
        /// The mean, per coordinate.
        mean: Vec<f64>,
        /// The variance of every coordinate.
        variance: f64,
    },
    /// A tabulated density in d = 1: grid midpoints and their normalised masses.
    Grid {
        /// Grid midpoints.
        x: Vec<f64>,
        /// Normalised masses.
        w: Vec<f64>,
        /// Whether the domain is the line (W₂ on a circle is not computed).
        line: bool,
    },
}

/// Points of the tabulated minimiser in d = 1.
const GRID_POINTS: usize = 20_001;

impl Minimiser {
    /// The unkernelized minimiser of `model`: needs F a sum of potentials, KL and σ > 0; Gaussian
    /// in closed form, else tabulated in d = 1.
    pub fn of(model: &Model) -> Result<Minimiser> {
        let linear = model.energy.iter().all(|e| matches!(e, Energy::Potential(_)));
        if !linear || model.divergence != Divergence::Kl || model.sigma.is_nan() || model.sigma <= 0.0 {
            return Err(Error::invalid(
                "problem",
                "this energy/divergence",
                "a known unkernelized minimiser: F a sum of potentials, divergence kl and σ > 0 (μ* ∝ π e^{−U/σ})",
            ));
        }
        let d = model.space.dim;
        if let (Domain::Euclidean, Reference::Gaussian { mean, std }) = (model.space.domain, &model.reference) {
            // μ* ∝ exp(−|x − c|²/(2τ²) − Σ_j λ_j |x − b_j|²/(2σ)): precision 1/τ² + Λ/σ.
            let mut precision = 1.0 / (std * std);
            let mut shift: Vec<f64> = mean.iter().map(|c| c / (std * std)).collect();
            let mut quadratic = true;
            for e in &model.energy {
                match e {
                    Energy::Potential(Potential::Quadratic { strength, center }) => {
                        precision += strength / model.sigma;
                        shift.iter_mut().zip(center).for_each(|(s, b)| *s += strength * b / model.sigma);
                    }
                    _ => quadratic = false,
                }
            }
            if quadratic {
                return Ok(Minimiser::Gaussian {
                    mean: shift.iter().map(|s| s / precision).collect(),
                    variance: 1.0 / precision,
                });
            }
        }
        if d != 1 {
            return Err(Error::invalid(
                "problem",
                format!("d = {d} with a non-Gaussian μ*"),
                "d = 1, or a Gaussian μ* (Gaussian π and quadratic potentials on R^d)",
            ));
        }
        let log_mu = |x: f64| crate::plot::log_gibbs_target(model, &[x]).expect("linear F and σ > 0");
        let (lo, hi, line) = match model.space.domain {
            Domain::Torus { side } => (0.0, side, false),
            Domain::Euclidean => {
                let (lo, hi) = euclidean_window(&log_mu)?;
                (lo, hi, true)
            }
        };
        let dx = (hi - lo) / GRID_POINTS as f64;
        let x: Vec<f64> = (0..GRID_POINTS).map(|i| lo + (i as f64 + 0.5) * dx).collect();
        let l: Vec<f64> = x.iter().map(|v| log_mu(*v)).collect();
        Ok(Minimiser::Grid { x, w: normalised_weights(&l), line })
    }

    /// (mean per coordinate, variance per coordinate) of μ*.
    pub fn moments(&self, dim: usize) -> (Vec<f64>, Vec<f64>) {
        match self {
            Minimiser::Gaussian { mean, variance } => (mean.clone(), vec![*variance; dim]),
            Minimiser::Grid { x, w, .. } => {
                let m: f64 = x.iter().zip(w).map(|(x, w)| x * w).sum();
                let v: f64 = x.iter().zip(w).map(|(x, w)| w * (x - m).powi(2)).sum();
                (vec![m], vec![v])
            }
        }
    }

    /// W₂(μᴺ, μ*) for a weighted cloud in d = 1 on the line; `None` otherwise.
    pub fn w2(&self, dim: usize, x: &[f64], w: &[f64]) -> Result<Option<f64>> {
        if dim != 1 {
            return Ok(None);
        }
        let sq = match self {
            Minimiser::Gaussian { mean, variance } => w2_squared_1d_gaussian(x, w, mean[0], variance.sqrt())?,
            Minimiser::Grid { x: g, w: gw, line: true } => w2_squared_1d(x, w, g, gw)?,
            Minimiser::Grid { line: false, .. } => return Ok(None),
        };
        Ok(Some(sq.max(0.0).sqrt()))
    }
}

/// A window [lo, hi] of R outside which log μ* is more than 40 below its maximum.
fn euclidean_window(log_mu: &dyn Fn(f64) -> f64) -> Result<(f64, f64)> {
    let mut r = 1.0;
    while r < 1e8 {
        let grid: Vec<f64> = (0..=4000).map(|i| -r + 2.0 * r * f64::from(i) / 4000.0).collect();
        let l: Vec<f64> = grid.iter().map(|x| log_mu(*x)).collect();
        let max = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if l[0] < max - 40.0 && l[l.len() - 1] < max - 40.0 {
            let inside: Vec<usize> = (0..l.len()).filter(|&i| l[i] >= max - 40.0).collect();
            let (a, b) = (inside[0].saturating_sub(1), (inside[inside.len() - 1] + 1).min(l.len() - 1));
            return Ok((grid[a], grid[b]));
        }
        r *= 2.0;
    }
    Err(Error::invalid("problem", "μ* ∝ π e^{−U/σ}", "a normalisable Gibbs measure on R"))
}

/// A checked bandwidth sweep.
#[derive(Clone, Debug)]
pub struct BandwidthSpec {
    /// The base problem.
    pub base: BaseProblem,
    /// The sweep settings as written.
    pub sweep: BandwidthSweep,
    /// The sweep file's text.
    pub text: String,
    /// Checked bandwidths, increasing.
    pub epsilons: Vec<f64>,
    /// Checked particle counts, increasing.
    pub ns: Vec<usize>,
    /// Checked variants.
    pub variants: Vec<Variant>,
    /// Replicates per (variant, N, ε).
    pub replicates: u64,
    /// The base seed of the positions.
    pub seed: u64,
}

impl BandwidthSpec {
    /// Parses a bandwidth sweep file's text; relative paths resolve in `dir`.
    pub fn from_str(text: &str, origin: &str, dir: &Path) -> Result<BandwidthSpec> {
        let (file, table): (BandwidthFile, _) = parse_sweep(text, origin)?;
        let base = base_problem(file.problem, file.problem_file.as_deref(), &table, dir)?;
        let s = file.sweep;
        if s.epsilon.is_empty() {
            return Err(Error::invalid("sweep.epsilon", "[]", "at least one bandwidth"));
        }
        if let Some(e) = s.epsilon.iter().find(|e| !(e.is_finite() && **e > 0.0)) {
            return Err(Error::invalid("sweep.epsilon", e, "finite numbers > 0"));
        }
        reject_duplicates("sweep.epsilon", &s.epsilon)?;
        let mut epsilons = s.epsilon.clone();
        epsilons.sort_by(f64::total_cmp);
        let mut ns = particle_counts("sweep.n", s.n.as_deref().unwrap_or(&[base.config.particles.n]))?;
        ns.sort_unstable();
        if !(1..=1_000_000).contains(&s.replicates) {
            return Err(Error::invalid("sweep.replicates", s.replicates, "an integer from 1 to 10⁶"));
        }
        if let Some(t) = s.tolerance {
            crate::error::check_positive("sweep.tolerance", t)?;
        }
        let t = &base.config.time;
        if t.tolerance.is_none() && t.final_time.is_none() && t.steps.is_none() {
            return Err(Error::invalid(
                "problem.time",
                "no tolerance, final_time or steps",
                "a stopping rule: time.final_time or time.steps (with sweep.tolerance for stationarity)",
            ));
        }
        let variants = s.variants.clone().unwrap_or_else(|| vec![base.config.kernel.variant]);
        if variants.is_empty() {
            return Err(Error::invalid("sweep.variants", "[]", "at least one variant"));
        }
        reject_duplicates("sweep.variants", &variants)?;
        let seed = s.seed.unwrap_or(base.config.seed);
        let spec = BandwidthSpec {
            epsilons,
            ns,
            variants,
            replicates: s.replicates as u64,
            seed,
            sweep: s,
            base,
            text: text.to_string(),
        };
        // Fail now, not after the first run, when μ* is not known.
        let problem = spec
            .config(spec.variants[0], spec.ns[0], spec.epsilons[0], seed)
            .build(&spec.base.base_dir)
            .map_err(|e| in_problem(&spec.base, e))?;
        Minimiser::of(&problem.model)?;
        Ok(spec)
    }

    /// Reads and parses a bandwidth sweep file.
    pub fn load(path: &Path) -> Result<BandwidthSpec> {
        let text = crate::io::guard::read_config_text(path)?;
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        BandwidthSpec::from_str(&text, &path.display().to_string(), dir)
    }

    fn fingerprint(&self) -> String {
        fingerprint(&[
            &self.base.text,
            &format!("bandwidth v1 seed={} tolerance={:?}", self.seed, self.sweep.tolerance),
        ])
    }

    fn config(&self, variant: Variant, n: usize, epsilon: f64, seed: u64) -> Config {
        let mut c = self.base.config.clone();
        pin_data_seeds(&mut c);
        c.seed = seed;
        c.kernel.variant = variant;
        c.kernel.epsilon = epsilon;
        c.particles.n = n as i64;
        c.output.plot = false;
        c
    }
}

/// One finished (variant, N, ε, replicate).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BandwidthRun {
    /// The variant's short name.
    pub variant: String,
    /// N.
    pub n: usize,
    /// ε.
    pub epsilon: f64,
    /// The replicate index.
    pub replicate: u64,
    /// The seed of the positions.
    pub seed: u64,
    /// W₂(μᴺ, μ*), when computed (d = 1 on the line).
    pub w2: Option<f64>,
    /// |mean(μᴺ) − mean(μ*)|.
    pub mean_error: f64,
    /// variance(μᴺ) − variance(μ*), averaged over coordinates.
    pub var_error: f64,
    /// Why the run stopped (`stationary`, `final_time`, `max_steps`).
    pub termination: String,
    /// Final flow time.
    pub time: f64,
    /// Steps taken.
    pub steps: u64,
    /// max_i |a_i| at the end.
    pub max_abs_rate: f64,
    /// Effective sample size at the end.
    pub ess: f64,
    /// Wall-clock seconds.
    pub wall_seconds: f64,
}

/// Means over replicates at one (variant, N, ε).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BandwidthCell {
    /// The variant's short name.
    pub variant: String,
    /// N.
    pub n: usize,
    /// ε.
    pub epsilon: f64,
    /// N ε^d.
    pub n_eps_d: f64,
    /// W₂ (NaN mean when not computed).
    pub w2: MeanSe,
    /// |mean error|.
    pub mean_error: MeanSe,
    /// Signed variance error.
    pub var_error: MeanSe,
    /// Runs that stopped by the tolerance.
    pub stationary: usize,
}

/// Fitted orders in ε at one (variant, N).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BandwidthFit {
    /// The variant's short name.
    pub variant: String,
    /// N.
    pub n: usize,
    /// Order of W₂.
    pub w2: Option<PowerFit>,
    /// Order of |mean error|.
    pub mean_error: Option<PowerFit>,
    /// Order of |mean variance error|.
    pub var_error: Option<PowerFit>,
}

/// Everything a bandwidth sweep reports (also `bandwidth.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BandwidthSummary {
    /// The sweep settings.
    pub sweep: BandwidthSweep,
    /// The dimension d.
    pub dim: usize,
    /// Mean of μ* per coordinate.
    pub target_mean: Vec<f64>,
    /// Variance of μ* per coordinate.
    pub target_variance: Vec<f64>,
    /// How the confidence intervals are computed.
    pub ci_method: String,
    /// Per (variant, N, ε).
    pub cells: Vec<BandwidthCell>,
    /// Per (variant, N).
    pub fits: Vec<BandwidthFit>,
}

/// What a bandwidth sweep did.
#[derive(Clone, Debug)]
pub struct BandwidthOutcome {
    /// Runs computed by this call.
    pub computed: usize,
    /// Runs reused from the results file.
    pub reused: usize,
    /// The summary.
    pub summary: BandwidthSummary,
    /// Every run, in (variant, N, ε, replicate) order.
    pub runs: Vec<BandwidthRun>,
}

/// Moves a configuration's progress bar: by flow time, steps, or the fall of max|a| to the
/// tolerance (on a log scale), whichever the run stops by.
struct BarObserver {
    bar: indicatif::ProgressBar,
    every: u64,
    final_time: Option<f64>,
    max_steps: Option<u64>,
    tolerance: Option<f64>,
    first_rate: Option<f64>,
}

impl Observer for BarObserver {
    fn every(&self) -> u64 {
        self.every
    }

    fn observe(&mut self, d: &Diagnostics, _: &mut dyn Engine) -> Result<()> {
        let mut frac: f64 = 0.0;
        if let Some(t) = self.final_time {
            frac = frac.max(d.time / t);
        }
        if let Some(m) = self.max_steps {
            frac = frac.max(d.step as f64 / m.max(1) as f64);
        }
        if let Some(tol) = self.tolerance {
            let a0 = *self.first_rate.get_or_insert(d.max_abs_rate);
            if a0 > tol && d.max_abs_rate > 0.0 {
                frac = frac.max((a0 / d.max_abs_rate).ln() / (a0 / tol).ln());
            }
        }
        self.bar.set_position((1000.0 * frac.clamp(0.0, 1.0)) as u64);
        self.bar.set_message(format!("t={:.2} max|a|={:.1e}", d.time, d.max_abs_rate));
        Ok(())
    }
}

/// The root mean square rate (Σ_i w_i a_i²)^{1/2} under μᴺ: the square root of the energy
/// dissipation −dV/dt of the gradient-flow variants.
fn rms_rate(engine: &mut dyn Engine) -> Result<f64> {
    let w = normalised_weights(&engine.state()?.log_weights);
    let a = engine.rates()?;
    Ok(w.iter().zip(&a).map(|(w, a)| w * a * a).sum::<f64>().sqrt())
}

/// Runs `flow::run` until the problem's stopping rule holds or, with `rms_tolerance`, until the
/// rms rate under μᴺ falls below it (checked every `options.every` steps; reported as
/// stationary).
///
/// max_i |a_i| is a poor test of stationarity here: particles whose weight decays to 0 keep a
/// positive rate for ever, while the measure has long stopped moving.
fn run_to_stationarity(
    engine: &mut dyn Engine,
    options: &crate::flow::RunOptions,
    rms_tolerance: Option<f64>,
    observer: BarObserver,
) -> Result<(Diagnostics, Termination)> {
    let mut observers: Vec<Box<dyn Observer>> = vec![Box::new(observer)];
    if let Some(tolerance) = rms_tolerance {
        let rms_below = move |_: &Diagnostics, e: &mut dyn Engine| Ok(rms_rate(e)? < tolerance);
        observers.push(Box::new(StopWhen::new(options.every, "rms rate below the tolerance", rms_below)));
    }
    let summary = crate::flow::run(engine, options, &mut observers, None)?;
    let termination = match summary.termination {
        Termination::Stopped => Termination::Stationary,
        t => t,
    };
    Ok((summary.diagnostics, termination))
}

fn run_one(
    spec: &BandwidthSpec,
    choice: EngineChoice,
    (variant, n, epsilon, replicate): (Variant, usize, f64, u64),
    bar: indicatif::ProgressBar,
) -> Result<BandwidthRun> {
    let start = Instant::now();
    let seed = spec.seed.wrapping_add(replicate);
    let problem = spec.config(variant, n, epsilon, seed).build(&spec.base.base_dir)?;
    let model = &problem.model;
    let target = Minimiser::of(model)?;
    let (device, wg) = (problem.device.as_deref(), problem.gpu);
    let mut engine = build_engine(choice, device, wg, model.clone(), problem.particles.clone())?;
    let o = &problem.run;
    let observer = BarObserver {
        bar: bar.clone(),
        every: o.every,
        final_time: o.final_time,
        max_steps: o.max_steps,
        tolerance: spec.sweep.tolerance.or(o.tolerance),
        first_rate: None,
    };
    let (diag, termination) = run_to_stationarity(&mut *engine, o, spec.sweep.tolerance, observer)?;
    bar.finish_and_clear();
    let w = normalised_weights(&engine.state()?.log_weights);
    let d = model.space.dim;
    let x = &problem.particles.positions;
    let (m_star, v_star) = target.moments(d);
    let diag = &diag;
    let mean_error = diag.mean.iter().zip(&m_star).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt();
    let var_error = diag.variance.iter().zip(&v_star).map(|(a, b)| a - b).sum::<f64>() / d as f64;
    let termination = match termination {
        Termination::Stationary => "stationary",
        Termination::FinalTime => "final_time",
        Termination::MaxSteps => "max_steps",
        Termination::Interrupted => "interrupted",
        Termination::Stopped => "stopped",
    };
    Ok(BandwidthRun {
        variant: variant.name().to_string(),
        n,
        epsilon,
        replicate,
        seed,
        w2: target.w2(d, x, &w)?,
        mean_error,
        var_error,
        termination: termination.to_string(),
        time: diag.time,
        steps: diag.step,
        max_abs_rate: diag.max_abs_rate,
        ess: diag.ess,
        wall_seconds: start.elapsed().as_secs_f64(),
    })
}

fn key(variant: Variant, n: usize, epsilon: f64, replicate: u64) -> String {
    // The bits of ε, so that keys never depend on how a float is printed.
    format!("{}/{n}/{:016x}/{replicate}", variant.name(), epsilon.to_bits())
}

/// Runs (or resumes) a bandwidth sweep and writes into `options.out`: `sweep.toml`,
/// `results.jsonl`, `bandwidth_runs.csv`, `bandwidth_summary.csv`, `bandwidth.json`,
/// `bandwidth_variance.{png,svg}`, `bandwidth_w2.{png,svg}` (d = 1), one
/// `bandwidth_heatmap_<variant>.{csv,png,svg}` per variant when there are several N (D′ is `Dprime`), and with
/// `options.report` `report.html`.
pub fn run_bandwidth(spec: &BandwidthSpec, options: &SweepOptions) -> Result<BandwidthOutcome> {
    let out = &options.out;
    // One process per output directory: two sweeps appending to one results file would mix.
    let _lock = crate::io::guard::OutputLock::acquire(out)?;
    write_text(&out.join("sweep.toml"), &spec.text)?;
    let mut store = ResultsStore::<BandwidthRun>::open(&out.join("results.jsonl"), &spec.fingerprint())?;
    if store.stale > 0 {
        eprintln!("frflow: {} results in the output directory belong to another problem; ignoring them", store.stale);
    }
    let mut tasks = Vec::new();
    for &v in &spec.variants {
        for &n in &spec.ns {
            for &e in &spec.epsilons {
                for r in 0..spec.replicates {
                    tasks.push((v, n, e, r));
                }
            }
        }
    }
    let pending: Vec<_> = tasks.iter().copied().filter(|&(v, n, e, r)| store.get(&key(v, n, e, r)).is_none()).collect();
    let reused = tasks.len() - pending.len();
    // Resolved once per sweep, so that hundreds of runs do not probe (and print) each.
    let choice = spec.base.config.engine.resolve();
    let bars = Bars::new(tasks.len() as u64, reused as u64, options.progress);
    let run_task = |task: (Variant, usize, f64, u64)| {
        let (v, n, e, r) = task;
        let bar = bars.config_bar(&format!("{} N={n} ε={e} rep={r}", v.name()));
        run_one(spec, choice, task, bar).map_err(|err| {
            at_point(format!("variant {}, N = {n}, ε = {e:e}, replicate {r}", v.name()), in_problem(&spec.base, err))
        })
    };
    // Small runs side by side (each is too short to use every core), large ones one at a time.
    let (small, large): (Vec<(Variant, usize, f64, u64)>, Vec<_>) =
        pending.iter().partition(|t| choice == EngineChoice::Cpu && t.1 <= 1024);
    for chunk in small.chunks(rayon::current_num_threads().max(1) * 2) {
        use rayon::prelude::*;
        let results: Vec<_> = chunk.par_iter().map(|t| (*t, run_task(*t))).collect();
        for (t, r) in results {
            store.append(&key(t.0, t.1, t.2, t.3), r?)?;
            bars.overall.inc(1);
        }
    }
    for t in large {
        let r = run_task(t)?;
        store.append(&key(t.0, t.1, t.2, t.3), r)?;
        bars.overall.inc(1);
    }
    bars.finish();
    let runs: Vec<BandwidthRun> =
        tasks.iter().map(|&(v, n, e, r)| store.get(&key(v, n, e, r)).cloned().expect("every task finished")).collect();
    let summary = summarise(spec, &runs)?;
    write_outputs(spec, &summary, &runs, options)?;
    Ok(BandwidthOutcome { computed: pending.len(), reused, summary, runs })
}

fn summarise(spec: &BandwidthSpec, runs: &[BandwidthRun]) -> Result<BandwidthSummary> {
    let problem = spec.config(spec.variants[0], spec.ns[0], spec.epsilons[0], spec.seed).build(&spec.base.base_dir)?;
    let dim = problem.model.space.dim;
    let (target_mean, target_variance) = Minimiser::of(&problem.model)?.moments(dim);
    let mut cells = Vec::new();
    let mut fits = Vec::new();
    for v in &spec.variants {
        for &n in &spec.ns {
            let mut row = Vec::new();
            for &e in &spec.epsilons {
                let at: Vec<&BandwidthRun> =
                    runs.iter().filter(|r| r.variant == v.name() && r.n == n && r.epsilon == e).collect();
                let col = |f: &dyn Fn(&BandwidthRun) -> Option<f64>| {
                    MeanSe::of(&at.iter().filter_map(|r| f(r)).collect::<Vec<_>>())
                };
                row.push(BandwidthCell {
                    variant: v.name().to_string(),
                    n,
                    epsilon: e,
                    n_eps_d: n as f64 * e.powi(dim as i32),
                    w2: col(&|r| r.w2),
                    mean_error: col(&|r| Some(r.mean_error)),
                    var_error: col(&|r| Some(r.var_error)),
                    stationary: at.iter().filter(|r| r.termination == "stationary").count(),
                });
            }
            let xs: Vec<f64> = row.iter().map(|c| c.epsilon).collect();
            let fit = |f: &dyn Fn(&BandwidthCell) -> f64| fit_power_law(&xs, &row.iter().map(f).collect::<Vec<_>>());
            fits.push(BandwidthFit {
                variant: v.name().to_string(),
                n,
                w2: fit(&|c| c.w2.mean),
                mean_error: fit(&|c| c.mean_error.mean),
                var_error: fit(&|c| c.var_error.mean.abs()),
            });
            cells.extend(row);
        }
    }
    Ok(BandwidthSummary {
        sweep: spec.sweep.clone(),
        dim,
        target_mean,
        target_variance,
        ci_method: "ordinary least squares of ln|mean over replicates| on ln ε; 95% interval from Student's t with \
                    (number of ε values − 2) degrees of freedom"
            .into(),
        cells,
        fits,
    })
}

fn fit_text(f: &Option<PowerFit>) -> String {
    f.as_ref().map_or_else(|| "–".into(), PowerFit::describe)
}

/// The table of means and the fitted orders, as printed by `frflow bandwidth`.
pub fn summary_text(s: &BandwidthSummary) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "μ*: mean {:?}, variance {:?}", s.target_mean, s.target_variance);
    let _ = writeln!(
        t,
        "{:>7} {:>7} {:>8} {:>10}  {:>21}  {:>21}  {:>21}  stat",
        "variant", "N", "eps", "N eps^d", "W2", "|mean err|", "var err"
    );
    let ms = |m: &MeanSe| format!("{:>10.3e} ± {:<8.1e}", m.mean, m.se);
    for c in &s.cells {
        let _ = writeln!(
            t,
            "{:>7} {:>7} {:>8.4} {:>10.1}  {}  {}  {}  {}/{}",
            c.variant,
            c.n,
            c.epsilon,
            c.n_eps_d,
            ms(&c.w2),
            ms(&c.mean_error),
            ms(&c.var_error),
            c.stationary,
            c.var_error.count
        );
    }
    for f in &s.fits {
        let _ = writeln!(
            t,
            "variant {} N={}: order in ε of W2 {}, |var err| {}, |mean err| {} (95% t intervals)",
            f.variant,
            f.n,
            fit_text(&f.w2),
            fit_text(&f.var_error),
            fit_text(&f.mean_error)
        );
    }
    t
}

/// A file-name-safe variant name (D′ is `D'`).
fn file_name(variant: &str) -> String {
    variant.replace('\'', "prime")
}

fn write_outputs(
    spec: &BandwidthSpec,
    s: &BandwidthSummary,
    runs: &[BandwidthRun],
    options: &SweepOptions,
) -> Result<()> {
    let out = &options.out;
    write_csv(&out.join("bandwidth_runs.csv"), runs)?;
    /// A row of `bandwidth_summary.csv` (a mean that is not finite is empty).
    #[derive(serde::Serialize)]
    struct Row<'a> {
        variant: &'a str,
        n: usize,
        epsilon: f64,
        n_eps_d: Option<f64>,
        replicates: usize,
        w2_mean: Option<f64>,
        w2_se: Option<f64>,
        mean_error_mean: Option<f64>,
        mean_error_se: Option<f64>,
        var_error_mean: Option<f64>,
        var_error_se: Option<f64>,
        stationary: usize,
    }
    let rows = s.cells.iter().map(|c| Row {
        variant: &c.variant,
        n: c.n,
        epsilon: c.epsilon,
        n_eps_d: finite(c.n_eps_d),
        replicates: c.var_error.count,
        w2_mean: finite(c.w2.mean),
        w2_se: finite(c.w2.se),
        mean_error_mean: finite(c.mean_error.mean),
        mean_error_se: finite(c.mean_error.se),
        var_error_mean: finite(c.var_error.mean),
        var_error_se: finite(c.var_error.se),
        stationary: c.stationary,
    });
    write_csv(&out.join("bandwidth_summary.csv"), rows)?;
    write_text(&out.join("bandwidth.json"), &serde_json::to_string_pretty(s).expect("plain data"))?;

    // Error against ε at the largest N, one series per variant.
    let n_max = *spec.ns.last().expect("non-empty");
    let series = |value: &dyn Fn(&BandwidthCell) -> MeanSe, fit: &dyn Fn(&BandwidthFit) -> Option<PowerFit>| {
        s.fits
            .iter()
            .filter(|f| f.n == n_max)
            .map(|f| Series {
                label: format!("{}: order {}", f.variant, fit_text(&fit(f))),
                points: s
                    .cells
                    .iter()
                    .filter(|c| c.variant == f.variant && c.n == n_max)
                    .map(|c| {
                        let m = value(c);
                        (c.epsilon, m.mean.abs(), m.se)
                    })
                    .collect(),
                fit: fit(f).map(|p| (p.slope, p.intercept)),
            })
            .collect::<Vec<_>>()
    };
    let mut figures = Vec::new();
    let guide = Some((2.0, "ε²".to_string()));
    let plot = LogLogPlot {
        title: format!("Stationary variance error |Var(μᴺ) − Var(μ*)| at N = {n_max}"),
        x_label: "ε (kernel bandwidth)".into(),
        y_label: "|variance error| (mean ± s.e.)".into(),
        series: series(&|c| c.var_error, &|f| f.var_error),
        guide: guide.clone(),
        x_ticks: spec.epsilons.clone(),
    };
    if plot.series.iter().any(|s| s.points.iter().any(|p| p.1 > 0.0)) {
        let svg = loglog(&plot, &out.join("bandwidth_variance.png"), &out.join("bandwidth_variance.svg"))?;
        figures.push((svg, "Variance error against ε; dashed grey: ε²; thin dashed: fits.".to_string()));
    }
    let has_w2 = s.cells.iter().any(|c| c.w2.count > 0);
    if has_w2 {
        let plot = LogLogPlot {
            title: format!("W₂(μᴺ, μ*) at stationarity, N = {n_max}"),
            x_label: "ε (kernel bandwidth)".into(),
            y_label: "W₂ (mean ± s.e.)".into(),
            series: series(&|c| c.w2, &|f| f.w2),
            guide,
            x_ticks: spec.epsilons.clone(),
        };
        let svg = loglog(&plot, &out.join("bandwidth_w2.png"), &out.join("bandwidth_w2.svg"))?;
        figures.push((svg, "W₂ to the unkernelized minimiser against ε.".to_string()));
    }
    if spec.ns.len() > 1 {
        for v in &spec.variants {
            let value = |c: &BandwidthCell| if has_w2 { c.w2.mean } else { c.var_error.mean.abs() };
            let values: Vec<Vec<Option<f64>>> = spec
                .epsilons
                .iter()
                .map(|&e| {
                    spec.ns
                        .iter()
                        .map(|&n| {
                            s.cells
                                .iter()
                                .find(|c| c.variant == v.name() && c.n == n && c.epsilon == e)
                                .map(value)
                                .filter(|x| x.is_finite())
                        })
                        .collect()
                })
                .collect();
            let what = if has_w2 { "W₂(μᴺ, μ*)" } else { "|variance error|" };
            let map = Heatmap {
                title: format!("Variant {}: {what} over (N, ε)", v.name()),
                x_label: "N (particles)".into(),
                y_label: "ε (kernel bandwidth)".into(),
                value_label: format!("{what} (log colour scale)"),
                xs: spec.ns.iter().map(|n| *n as f64).collect(),
                ys: spec.epsilons.clone(),
                values: values.clone(),
                contours: vec![(10.0, "N ε^d = 10".into()), (100.0, "N ε^d = 100".into())],
                dim: s.dim,
            };
            let stem = format!("bandwidth_heatmap_{}", file_name(v.name()));
            // The same grid as a table: one row per ε, one column per N (empty where not finite).
            let header = std::iter::once("epsilon/N".to_string()).chain(spec.ns.iter().map(|n| n.to_string()));
            let rows = spec.epsilons.iter().zip(&values).map(|(e, row)| {
                let cells = row.iter().map(|v| v.and_then(finite).map_or_else(String::new, |x| x.to_string()));
                std::iter::once(e.to_string()).chain(cells).collect::<Vec<_>>()
            });
            write_csv_records(&out.join(format!("{stem}.csv")), std::iter::once(header.collect()).chain(rows))?;
            let svg = heatmap(&map, &out.join(format!("{stem}.png")), &out.join(format!("{stem}.svg")))?;
            figures.push((svg, format!("Variant {}: {what} over (N, ε); red dashed lines N ε^d = 10, 100.", v.name())));
        }
    }

    if options.report {
        let head = ["variant", "N", "ε", "N ε^d", "W₂", "|mean err|", "var err", "stationary"];
        let ms = |m: &MeanSe| if m.count == 0 { "–".into() } else { format!("{:.3e} ± {:.1e}", m.mean, m.se) };
        let rows = s
            .cells
            .iter()
            .map(|c| {
                vec![
                    c.variant.clone(),
                    c.n.to_string(),
                    format!("{}", c.epsilon),
                    format!("{:.1}", c.n_eps_d),
                    ms(&c.w2),
                    ms(&c.mean_error),
                    ms(&c.var_error),
                    format!("{}/{}", c.stationary, c.var_error.count),
                ]
            })
            .collect();
        let fit_rows = s
            .fits
            .iter()
            .map(|f| {
                vec![
                    f.variant.clone(),
                    f.n.to_string(),
                    fit_text(&f.w2),
                    fit_text(&f.var_error),
                    fit_text(&f.mean_error),
                ]
            })
            .collect();
        let mut blocks = vec![
            Block::Text(format!(
                "Stationary states of the kernelized particle systems against the unkernelized minimiser \
                 μ* ∝ π e^(−U/σ) (mean {:?}, variance {:?}); {} replicates per cell.",
                s.target_mean, s.target_variance, spec.replicates
            )),
            Block::Heading("Fitted orders in ε".into()),
            Block::Text(format!("Order with 95% confidence interval: {}.", s.ci_method)),
            Block::Table(["variant", "N", "W₂", "|var err|", "|mean err|"].map(String::from).to_vec(), fit_rows),
        ];
        blocks.extend(figures.into_iter().map(|(svg, caption)| Block::Figure(svg, caption)));
        blocks.push(Block::Heading("Means over replicates".into()));
        blocks.push(Block::Table(head.map(String::from).to_vec(), rows));
        blocks.push(Block::Heading("Sweep file".into()));
        blocks.push(Block::Pre(spec.text.clone()));
        write_text(&out.join("report.html"), &html("Bandwidth limit ε → 0", &blocks))?;
    }
    Ok(())
}
