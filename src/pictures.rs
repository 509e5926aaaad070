//! Pictures and figures of merit of the application examples (SPEC §5 energies): the two-layer
//! network's fit and loss, the NPMLE's mixing measure and density, the MMD flow's weighted cloud.
//!
//! [`draw_run`] draws the pictures of a finished run directory (`frflow run CONFIG --out DIR`, or
//! [`crate::runner::run_config`]): it rebuilds the problem from `DIR/config.toml`, reads the final
//! `weights.npy` and the `trace.csv`, and writes, next to `particles.png`,
//!
//! | energy | file | panels |
//! |---|---|---|
//! | `two-layer-net` (d = 3) | `two_layer_net.png`, `.svg` | the fit f_m(z) against the data and the target; the loss F against time |
//! | `npmle` (d = 1) | `npmle.png`, `.svg` | the fitted mixing measure (stems) against the true atoms; the fitted density p_m against a histogram of the observations |
//! | `mmd` (d = 2) | `mmd.png`, `.svg` | the weighted particles over the target sample; ½ MMD² against time |
//!
//! The panels, axes, legends and the pixel font come from [`crate::plot`]: the PNG and the SVG
//! show the same text.

use crate::config::{Config, DataOrigin, Problem};
use crate::error::{Error, Result};
use crate::io::data::{bumps_function, load_npy};
use crate::model::{Energy, Mmd, Npmle, Points, TwoLayerNet};
use crate::plot::{
    Axes, BLUE, Canvas, DrawResult, FIT_RED, Figure, GREY, LIGHT_BLUE, LIGHT_GREY, Mark, Panel, TRUTH_BLACK, log_ticks,
    ramp, render, short,
};
use plotters::prelude::*;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------------------------
// Numbers
// ---------------------------------------------------------------------------------------------

/// One row of a run's `trace.csv` (the columns the pictures use).
#[derive(Clone, Copy, Debug, PartialEq, serde::Deserialize)]
pub struct TraceRow {
    /// Steps taken.
    pub step: u64,
    /// Flow time t.
    pub time: f64,
    /// V_ε(μᴺ), when the variant is a gradient flow.
    pub energy: Option<f64>,
    /// F(μᴺ): the network's loss, the NPMLE's negative mean log-likelihood, ½ MMD².
    pub f_energy: f64,
}

/// Reads the `step`, `time`, `energy` and `f_energy` columns of a `trace.csv` (by the `csv`
/// crate and serde, the columns found by name; an empty `energy` is `None`).
pub fn read_trace(path: &Path) -> Result<Vec<TraceRow>> {
    let file = crate::io::guard::open_regular(path)?;
    let bad = |message: String| Error::Data { path: path.display().to_string(), message };
    csv::Reader::from_reader(file)
        .deserialize::<TraceRow>()
        .enumerate()
        .map(|(i, row)| row.map_err(|e| bad(format!("row {}: {e}", i + 1))))
        .collect()
}

/// The mean-field network's output f_m(z) = Σ_i w_i c_i tanh(a_i·z + b_i) for particles
/// x_i = (a_i, b_i, c_i) (row-major, d = z.len() + 2 columns) with weights w_i.
pub fn network_output(positions: &[f64], weights: &[f64], z: &[f64]) -> f64 {
    let d = z.len() + 2;
    positions.chunks_exact(d).zip(weights).map(|(x, w)| w * TwoLayerNet::neuron(x, z)).sum()
}

/// One component of a 1-D mixing distribution: an atom when `std` = 0.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Atom {
    /// Location.
    pub location: f64,
    /// Weight (the atoms of a distribution sum to 1).
    pub weight: f64,
    /// Standard deviation of a Gaussian component (0 for an atom).
    pub std: f64,
}

/// The true mixing distribution of an NPMLE whose observations a config generates
/// (`observations = { generate = "mixture", … }` on a 1-D domain), with normalised weights.
/// `None` when the observations come from a file, the domain is not 1-D or there is no NPMLE term.
pub fn npmle_truth(problem: &Problem) -> Option<Vec<Atom>> {
    if problem.model.space.dim != 1 {
        return None;
    }
    problem.model.energy.iter().zip(&problem.data).find_map(|(e, origin)| match (e, origin) {
        (Energy::Npmle(_), Some(DataOrigin::Mixture(cs))) => {
            let total: f64 = cs.iter().map(|c| c.weight).sum();
            Some(cs.iter().map(|c| Atom { location: c.mean[0], weight: c.weight / total, std: c.std }).collect())
        }
        _ => None,
    })
}

/// The observation density ∫ φ_s(z − x) G(dx) of a mixing distribution G given by its atoms
/// (a Gaussian component of std τ contributes φ with std √(s² + τ²)).
pub fn mixture_density(atoms: &[Atom], noise: f64, z: f64) -> f64 {
    atoms
        .iter()
        .map(|a| {
            let s2 = noise * noise + a.std * a.std;
            a.weight * (-(z - a.location).powi(2) / (2.0 * s2)).exp() / (2.0 * std::f64::consts::PI * s2).sqrt()
        })
        .sum()
}

/// The Wasserstein-1 distance ∫ |F_a − F_b| between two discrete measures on the line, given as
/// (location, weight) pairs; each is normalised to mass 1 first.
pub fn wasserstein1_1d(a: &[(f64, f64)], b: &[(f64, f64)]) -> f64 {
    let (ma, mb) = (a.iter().map(|p| p.1).sum::<f64>(), b.iter().map(|p| p.1).sum::<f64>());
    let mut events: Vec<(f64, f64)> =
        a.iter().map(|(x, w)| (*x, w / ma)).chain(b.iter().map(|(x, w)| (*x, -w / mb))).collect();
    events.sort_by(|p, q| p.0.total_cmp(&q.0));
    let (mut cdf_diff, mut total) = (0.0, 0.0);
    for pair in events.windows(2) {
        cdf_diff += pair[0].1;
        total += cdf_diff.abs() * (pair[1].0 - pair[0].0);
    }
    total
}

/// The mass of Σ w_i δ_{x_i} (1-D positions) within distance `delta` of any of `centres`,
/// divided by the total mass.
pub fn mass_near(positions: &[f64], weights: &[f64], centres: &[f64], delta: f64) -> f64 {
    let near: f64 = positions
        .iter()
        .zip(weights)
        .filter(|(x, _)| centres.iter().any(|c| (*x - c).abs() <= delta))
        .map(|(_, w)| w)
        .sum();
    near / weights.iter().sum::<f64>()
}

/// The masses of Σ w_i δ_{x_i} on the unit 2-torus in the basins of the four wells at
/// {0, ½}² (each point belongs to the well nearest to it), as fractions of the total mass:
/// `[centre (½, ½), the two edge wells (0, ½) and (½, 0) together, corner (0, 0)]`.
pub fn well_masses(positions: &[f64], weights: &[f64]) -> [f64; 3] {
    let mut m = [0.0; 3];
    for (x, w) in positions.chunks_exact(2).zip(weights) {
        // A coordinate is in a centre basin when it is nearer ½ than 0 (mod 1).
        let inner = x.iter().filter(|v| (v.rem_euclid(1.0) - 0.5).abs() < 0.25).count();
        m[2 - inner] += w;
    }
    let total: f64 = m.iter().sum();
    m.map(|v| v / total)
}

// ---------------------------------------------------------------------------------------------
// Run directories
// ---------------------------------------------------------------------------------------------

/// Draws the application pictures of the finished run in `out` (see the module's table) and
/// returns the PNG files written; empty when no term has an application picture.
///
/// Needs `config.toml`, `run.json` (where relative data paths resolve), `weights.npy` and, for
/// the loss panels, `trace.csv`, as [`crate::runner::run_config`] writes them.
pub fn draw_run(out: &Path) -> Result<Vec<PathBuf>> {
    let config_path = out.join("config.toml");
    let config = Config::load(&config_path)?;
    let info_path = out.join("run.json");
    let info = std::fs::read_to_string(&info_path).map_err(|e| Error::io(&info_path, e))?;
    let info: serde_json::Value = serde_json::from_str(&info)
        .map_err(|e| Error::Data { path: info_path.display().to_string(), message: e.to_string() })?;
    let base = info.get("base_dir").and_then(|v| v.as_str()).map(PathBuf::from).unwrap_or_else(|| out.to_path_buf());
    let problem = config.build(&base)?;
    let weights = load_npy(&out.join("weights.npy"), Some(1))?.values;
    let trace_path = out.join("trace.csv");
    let trace = if trace_path.exists() { read_trace(&trace_path)? } else { Vec::new() };
    let positions = &problem.particles.positions;
    let d = problem.model.space.dim;
    if weights.len() * d != positions.len() {
        return Err(Error::invalid("weights.npy", weights.len(), "one weight per particle of config.toml"));
    }
    let mut written = Vec::new();
    let mut emit = |name: &str, figure: &dyn Fn(&Path, &Path) -> Result<()>| -> Result<()> {
        let png = out.join(format!("{name}.png"));
        figure(&png, &out.join(format!("{name}.svg")))?;
        written.push(png);
        Ok(())
    };
    for (i, term) in problem.model.energy.iter().enumerate() {
        match term {
            Energy::TwoLayerNet(TwoLayerNet { inputs, targets, .. }) if inputs.dim == 1 => {
                let bumps = problem.data[i] == Some(DataOrigin::Bumps);
                let fig = NetworkFigure { inputs, targets, positions, weights: &weights, bumps, trace: &trace };
                emit("two_layer_net", &|png, svg| render(&fig, png, svg).map(|_| ()))?;
            }
            Energy::Npmle(Npmle { observations, noise }) if d == 1 => {
                let truth = npmle_truth(&problem);
                let fig = NpmleFigure {
                    observations: &observations.values,
                    noise: *noise,
                    positions,
                    weights: &weights,
                    truth: truth.as_deref(),
                };
                emit("npmle", &|png, svg| render(&fig, png, svg).map(|_| ()))?;
            }
            Energy::Mmd(Mmd { sample, .. }) if d == 2 => {
                let fig = MmdFigure { sample, positions, weights: &weights, trace: &trace };
                emit("mmd", &|png, svg| render(&fig, png, svg).map(|_| ()))?;
            }
            _ => {}
        }
    }
    Ok(written)
}

// ---------------------------------------------------------------------------------------------
// Figures
// ---------------------------------------------------------------------------------------------

/// The fit and the loss of a two-layer network with 1-D inputs.
struct NetworkFigure<'a> {
    inputs: &'a Points,
    targets: &'a [f64],
    positions: &'a [f64],
    weights: &'a [f64],
    bumps: bool,
    trace: &'a [TraceRow],
}

impl Figure for NetworkFigure<'_> {
    fn size(&self) -> (u32, u32) {
        (1200, 520)
    }

    fn draw<DB: DrawingBackend>(&self, c: &Canvas<'_, DB>) -> DrawResult {
        let z = &self.inputs.values;
        let (z0, z1) = range(z.iter().copied());
        let grid: Vec<f64> = (0..=300).map(|k| z0 + (z1 - z0) * k as f64 / 300.0).collect();
        let n = self.weights.len();
        let fit: Vec<f64> = grid.iter().map(|z| network_output(self.positions, self.weights, &[*z])).collect();
        let initial: Vec<f64> =
            grid.iter().map(|z| network_output(self.positions, &vec![1.0 / n as f64; n], &[*z])).collect();
        let target: Vec<f64> = if self.bumps { grid.iter().map(|z| bumps_function(*z)).collect() } else { vec![] };
        let (y0, y1) = range(self.targets.iter().chain(&fit).chain(&initial).chain(&target).copied());
        // Room at the top for the legend.
        let p = Panel::new((70, 50, 500, 400), (z0, z1), (y0 - 0.06 * (y1 - y0), y1 + 0.4 * (y1 - y0)));
        let time = self.trace.last().map_or(0.0, |r| r.time);
        p.axes(c, &Axes::linear(&p, &format!("Fit at t = {}", short(time)), "z", "f(z)"))?;
        for (zk, yk) in z.iter().zip(self.targets) {
            c.circle(p.px(*zk), p.py(*yk), 2, GREY)?;
        }
        c.line(p.curve(&grid, &initial), LIGHT_BLUE, 2)?;
        if self.bumps {
            c.line(p.curve(&grid, &target), TRUTH_BLACK, 2)?;
        }
        c.line(p.curve(&grid, &fit), FIT_RED, 3)?;
        let mut legend = vec![(Mark::Dot, GREY, "data"), (Mark::Line, LIGHT_BLUE, "fit at t = 0")];
        if self.bumps {
            legend.push((Mark::Line, TRUTH_BLACK, "target"));
        }
        legend.push((Mark::Line, FIT_RED, "fit f_m(z)"));
        p.legend(c, &legend, &[])?;
        loss_panel(c, self.trace, (680, 50, 480, 400), "Loss F", "F(m₀)/10")
    }
}

/// A panel of F against time on a log scale (decades labelled), with a dotted line at F(0)/10.
fn loss_panel<DB: DrawingBackend>(
    c: &Canvas<'_, DB>,
    trace: &[TraceRow],
    rect: (i32, i32, i32, i32),
    title: &str,
    tenth_label: &str,
) -> DrawResult {
    let rows: Vec<&TraceRow> = trace.iter().filter(|r| r.f_energy > 0.0 && r.f_energy.is_finite()).collect();
    if rows.is_empty() {
        return Ok(());
    }
    let times: Vec<f64> = rows.iter().map(|r| r.time).collect();
    let logs: Vec<f64> = rows.iter().map(|r| r.f_energy.log10()).collect();
    let tenth = logs[0] - 1.0;
    let (l0, l1) = range(logs.iter().copied().chain([tenth]));
    let (t0, t1) = range(times.iter().copied());
    let p = Panel::new(rect, (t0, t1), (l0.floor(), l1.ceil()));
    let (first, last) = (rows[0].f_energy, rows[rows.len() - 1].f_energy);
    let title = format!("{title}: {} to {}", short(first), short(last));
    let x_ticks = Axes::linear(&p, "", "", "").x_ticks;
    let y_ticks = log_ticks(p.y.0, p.y.1);
    p.axes(c, &Axes { title: &title, x_label: "time t", y_label: "", x_ticks, y_ticks, grid: true })?;
    let flat = [times[0], times[times.len() - 1]];
    c.dotted(p.curve(&flat, &[tenth, tenth]), GREY)?;
    c.line(p.curve(&times, &logs), FIT_RED, 3)?;
    p.legend(c, &[(Mark::Line, FIT_RED, "F(m_t)"), (Mark::Dots, GREY, tenth_label)], &[])
}

/// The NPMLE's mixing measure and the observations' density.
struct NpmleFigure<'a> {
    observations: &'a [f64],
    noise: f64,
    positions: &'a [f64],
    weights: &'a [f64],
    truth: Option<&'a [Atom]>,
}

impl Figure for NpmleFigure<'_> {
    fn size(&self) -> (u32, u32) {
        (1000, 1140)
    }

    fn draw<DB: DrawingBackend>(&self, c: &Canvas<'_, DB>) -> DrawResult {
        let truth = self.truth.unwrap_or_default();
        let (x0, x1) = range(self.positions.iter().chain(self.observations).copied());
        let mass: f64 = self.weights.iter().sum();
        let atoms: Vec<&Atom> = truth.iter().filter(|a| a.std == 0.0).collect();
        // Top: the fitted weights as stems, the true atoms' locations as red lines.
        let wmax = self.weights.iter().map(|w| w / mass).fold(0.0, f64::max);
        let top = Panel::new((80, 50, 880, 250), (x0, x1), (0.0, 1.15 * wmax.max(1e-12)));
        top.axes(c, &Axes::linear(&top, "Fitted mixing measure: weight w_i at each particle x_i", "x", ""))?;
        for a in &atoms {
            let x = top.px(a.location);
            c.line(vec![(x, top.py(0.0)), (x, top.top)], FIT_RED.mix(0.6), 2)?;
        }
        for (x, w) in self.positions.iter().zip(self.weights) {
            let (px, h) = (top.px(*x), top.py(w / mass));
            if h < top.py(0.0) {
                c.line(vec![(px, top.py(0.0)), (px, h)], BLUE, 2)?;
            }
        }
        let mut legend = vec![(Mark::Line, BLUE, "fitted w_i")];
        if !atoms.is_empty() {
            legend.push((Mark::Line, FIT_RED, "true atoms"));
        }
        top.legend(c, &legend, &[])?;
        // Middle: the two mixing distributions' CDFs.
        let mid = Panel::new((80, 390, 880, 250), (x0, x1), (0.0, 1.05));
        mid.axes(c, &Axes::linear(&mid, "Mixing distribution: CDF, fitted vs true", "x", ""))?;
        let mut order: Vec<usize> = (0..self.positions.len()).collect();
        order.sort_by(|a, b| self.positions[*a].total_cmp(&self.positions[*b]));
        let fitted_steps: Vec<(f64, f64)> =
            order.iter().map(|&i| (self.positions[i], self.weights[i] / mass)).collect();
        if !truth.is_empty() {
            let mut true_steps: Vec<(f64, f64)> = atoms.iter().map(|a| (a.location, a.weight)).collect();
            true_steps.sort_by(|a, b| a.0.total_cmp(&b.0));
            c.line(steps(&mid, &true_steps), TRUTH_BLACK, 2)?;
        }
        c.line(steps(&mid, &fitted_steps), BLUE, 3)?;
        let mut legend = vec![(Mark::Line, BLUE, "fitted")];
        if !atoms.is_empty() {
            legend.push((Mark::Line, TRUTH_BLACK, "true"));
        }
        mid.legend(c, &legend, &[])?;
        // Bottom: histogram and densities.
        let bins = 90;
        let mut hist = vec![0.0; bins];
        for z in self.observations {
            let b = ((z - x0) / (x1 - x0) * bins as f64) as usize;
            hist[b.min(bins - 1)] += 1.0;
        }
        let scale = bins as f64 / ((x1 - x0) * self.observations.len() as f64);
        let hist: Vec<f64> = hist.iter().map(|h| h * scale).collect();
        let grid: Vec<f64> = (0..=400).map(|k| x0 + (x1 - x0) * k as f64 / 400.0).collect();
        let fitted_atoms: Vec<Atom> = self
            .positions
            .iter()
            .zip(self.weights)
            .map(|(x, w)| Atom { location: *x, weight: w / mass, std: 0.0 })
            .collect();
        let fitted: Vec<f64> = grid.iter().map(|z| mixture_density(&fitted_atoms, self.noise, *z)).collect();
        let true_density: Vec<f64> = grid.iter().map(|z| mixture_density(truth, self.noise, *z)).collect();
        let ymax = hist.iter().chain(&fitted).chain(&true_density).copied().fold(0.0, f64::max);
        let bottom = Panel::new((80, 730, 880, 330), (x0, x1), (0.0, 1.1 * ymax.max(1e-12)));
        bottom.axes(c, &Axes::linear(&bottom, "Observations: histogram and densities", "z", ""))?;
        for (b, h) in hist.iter().enumerate() {
            let (a, e) = (x0 + (x1 - x0) * b as f64 / bins as f64, x0 + (x1 - x0) * (b + 1) as f64 / bins as f64);
            c.rect((bottom.px(a), bottom.py(*h)), (bottom.px(e), bottom.py(0.0)), LIGHT_GREY)?;
        }
        let mut legend = vec![(Mark::Box, LIGHT_GREY, "observations")];
        if !truth.is_empty() {
            c.line(bottom.curve(&grid, &true_density), TRUTH_BLACK, 2)?;
            legend.push((Mark::Line, TRUTH_BLACK, "true density"));
        }
        c.line(bottom.curve(&grid, &fitted), FIT_RED, 3)?;
        legend.push((Mark::Line, FIT_RED, "fitted p_m"));
        bottom.legend(c, &legend, &[])
    }
}

/// The MMD flow's weighted particles over the target sample, and ½ MMD² against time.
struct MmdFigure<'a> {
    sample: &'a Points,
    positions: &'a [f64],
    weights: &'a [f64],
    trace: &'a [TraceRow],
}

impl Figure for MmdFigure<'_> {
    fn size(&self) -> (u32, u32) {
        (1480, 560)
    }

    fn draw<DB: DrawingBackend>(&self, c: &Canvas<'_, DB>) -> DrawResult {
        let all = || self.positions.chunks_exact(2).chain(self.sample.values.chunks_exact(2));
        let (xa, xb) = range(all().map(|p| p[0]));
        let (ya, yb) = range(all().map(|p| p[1]));
        // Square windows with equal scales.
        let half = 0.5 * (xb - xa).max(yb - ya) * 1.04;
        let (cx, cy) = (0.5 * (xa + xb), 0.5 * (ya + yb));
        let window = |left| Panel::new((left, 50, 440, 440), (cx - half, cx + half), (cy - half, cy + half));
        // Left: the target sample.
        let p = window(70);
        p.axes(c, &Axes::linear(&p, &format!("Target sample (M = {})", self.sample.len()), "x₁", "x₂"))?;
        for y in self.sample.values.chunks_exact(2) {
            c.circle(p.px(y[0]), p.py(y[1]), 2, FIT_RED.mix(0.8))?;
        }
        // Middle: every particle as a grey dot, the weighted ones as discs of area ∝ N w_i.
        let p = window(570);
        p.axes(c, &Axes::linear(&p, "Particles: disc area ∝ N w_i", "x₁", "x₂"))?;
        for x in self.positions.chunks_exact(2) {
            let (px, py) = (p.px(x[0]), p.py(x[1]));
            c.rect((px, py), (px + 2, py + 2), LIGHT_GREY)?;
        }
        let n = self.weights.len() as f64;
        let mass: f64 = self.weights.iter().sum();
        let wmax = self.weights.iter().copied().fold(0.0, f64::max).max(1e-300);
        let mut order: Vec<usize> = (0..self.weights.len()).collect();
        order.sort_by(|a, b| self.weights[*a].total_cmp(&self.weights[*b]));
        for i in order {
            let w = self.weights[i];
            let r = 1.4 * (n * w / mass).sqrt();
            if r >= 1.0 {
                let x = &self.positions[2 * i..2 * i + 2];
                c.circle(p.px(x[0]), p.py(x[1]), r.min(12.0) as i32, ramp(w / wmax).mix(0.75))?;
            }
        }
        loss_panel(c, self.trace, (1100, 50, 350, 440), "1/2 MMD²", "start/10")
    }
}

/// The smallest and largest finite value (a unit interval around a single value).
fn range(v: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) =
        v.filter(|x| x.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
    if lo >= hi {
        let m = if lo.is_finite() { lo } else { 0.0 };
        return (m - 0.5, m + 0.5);
    }
    (lo, hi)
}

/// The staircase of a CDF with jumps `(location, mass)` (sorted by location), from the panel's
/// left edge to its right edge.
fn steps(p: &Panel, jumps: &[(f64, f64)]) -> Vec<(i32, i32)> {
    let mut pts = vec![(p.px(p.x.0), p.py(0.0))];
    let mut cdf = 0.0;
    for (x, m) in jumps {
        pts.push((p.px(*x), p.py(cdf)));
        cdf += m;
        pts.push((p.px(*x), p.py(cdf)));
    }
    pts.push((p.px(p.x.1), p.py(cdf)));
    pts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasserstein_of_shifted_atoms_is_the_shift() {
        let a = [(0.0, 1.0), (2.0, 3.0)];
        let b = [(0.5, 2.0), (2.5, 6.0)];
        assert!((wasserstein1_1d(&a, &b) - 0.5).abs() < 1e-12);
        assert!(wasserstein1_1d(&a, &a).abs() < 1e-12);
        // Half the mass moves from 0 to 1: W1 = 0.5.
        assert!((wasserstein1_1d(&[(0.0, 1.0)], &[(0.0, 0.5), (1.0, 0.5)]) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn network_output_sums_weighted_neurons() {
        let pos = [1.0, 0.0, 2.0, -1.0, 0.5, 1.0];
        let z = 0.3f64;
        let want = 0.25 * 2.0 * z.tanh() + 0.75 * (0.5 - z).tanh();
        assert!((network_output(&pos, &[0.25, 0.75], &[z]) - want).abs() < 1e-15);
    }
}
