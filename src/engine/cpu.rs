//! The f64 CPU reference engine, parallel over particles with rayon.
//!
//! Each stage is a function named after the GPU shader that does the same work (`log_kernel_sum`,
//! `rates`, `euler_update`, …), written to be read side by side with it. Sums over particles use
//! [`pairwise_sum`], so results do not depend on the thread count.

use super::cells::{CellGrid, Cutoff, log_kernel_sum_cells};
use super::{Diagnostics, Engine, pairwise_sum, reached};
use crate::error::{Error, Result};
use crate::model::{AtPoints, Divergence, Energy, Gaussian, Model, PairKernel, Points, Space, Variant};
use crate::particles::{Particles, State};
use crate::stepper::Stepper;
use rayon::prelude::*;
use std::sync::Mutex;

/// log Σ_s exp(log_coeffs\[s\]) · K(t, y_s) for every target t: the N×N pass behind every variant.
///
/// Sources are taken in blocks: the block's exponents are computed first, then summed after a
/// shift by the block's maximum and merged by [`log_sum_merge`], so neither tiny weights nor a bandwidth far below the particle
/// spacing can underflow to log 0, and the exponent loop stays free of branches.
pub fn log_kernel_sum(
    space: &Space,
    kernel: &Gaussian,
    targets: &[f64],
    sources: &[f64],
    log_coeffs: &[f64],
) -> Vec<f64> {
    let exponent = KernelExponent::new(space, kernel);
    targets.par_chunks_exact(space.dim).map(|t| log_sum_row(&exponent, t, sources, log_coeffs)).collect()
}

/// Σ_s w_s 2^(−|x_t − x_s|²) for every point t of `points` (rows of `dim`, pre-scaled): the twin
/// of `minimal_kernel_sum.wgsl`, the yardstick `frflow bench` times beside the real kernel sums.
pub fn minimal_kernel_sum(points: &[f64], weights: &[f64], dim: usize) -> Vec<f64> {
    points
        .par_chunks_exact(dim)
        .map(|t| {
            points
                .chunks_exact(dim)
                .zip(weights)
                .map(|(y, w)| w * (-t.iter().zip(y).map(|(a, b)| (a - b) * (a - b)).sum::<f64>()).exp2())
                .sum()
        })
        .collect()
}

/// One target's streamed log-sum-exp (see [`log_kernel_sum`]): blocks of sources each give a
/// partial (shift, Σ exp(e − shift)), merged in order by [`log_sum_merge`].
fn log_sum_row(exponent: &KernelExponent, t: &[f64], sources: &[f64], log_coeffs: &[f64]) -> f64 {
    const BLOCK: usize = 256;
    let d = t.len();
    let mut e = [0.0f64; BLOCK];
    let blocks = sources.chunks(BLOCK * d).zip(log_coeffs.chunks(BLOCK)).map(|(ys, lcs)| {
        let e = &mut e[..lcs.len()];
        for ((ek, y), lc) in e.iter_mut().zip(ys.chunks_exact(d)).zip(lcs) {
            *ek = lc + exponent.log_k(t, y);
        }
        let shift = e.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if shift == f64::NEG_INFINITY {
            return (shift, 0.0);
        }
        (shift, e.iter().map(|x| (x - shift).exp()).sum::<f64>())
    });
    log_sum_merge(blocks) + exponent.log_norm
}

/// log Σ_c s_c e^{m_c} from partials (m_c, s_c) = (a shift, Σ exp(e − shift)) over chunks of
/// sources, merged in chunk order so the result does not depend on scheduling: the twin of
/// `log_sum_merge.wgsl` (which merges the GPU's split-source chunks), and how the CPU's own
/// streamed sum combines its blocks of sources. Partials with m = −∞ (no source with a weight)
/// contribute nothing.
pub fn log_sum_merge(partials: impl IntoIterator<Item = (f64, f64)>) -> f64 {
    let (m, s) = partials.into_iter().fold((f64::NEG_INFINITY, 0.0), |(ma, sa), (mb, sb)| {
        if mb == f64::NEG_INFINITY {
            return (ma, sa);
        }
        let m = ma.max(mb);
        (m, sa * (ma - m).exp() + sb * (mb - m).exp())
    });
    m + s.ln()
}

/// log K(x, y) without the normalising constant: −|x − y|²/(2ε²) with the minimum image, or the
/// log of the periodic image sum when the kernel needs images.
pub(crate) struct KernelExponent {
    space: Space,
    c: f64,
    side: f64,
    inv_side: f64,
    pub(crate) log_norm: f64,
    images: Option<ImageSum>,
}

impl KernelExponent {
    pub(crate) fn new(space: &Space, kernel: &Gaussian) -> Self {
        let side = space.side().unwrap_or(0.0);
        KernelExponent {
            space: *space,
            c: 0.5 / (kernel.width * kernel.width),
            side,
            inv_side: if side > 0.0 { 1.0 / side } else { 0.0 },
            log_norm: kernel.log_norm,
            images: (kernel.images > 0).then(|| ImageSum::new(kernel, side)),
        }
    }

    #[inline]
    pub(crate) fn log_k(&self, t: &[f64], y: &[f64]) -> f64 {
        match &self.images {
            Some(images) => t.iter().zip(y).map(|(a, b)| images.factor(self.space.delta(*a, *b))).product::<f64>().ln(),
            None => {
                let mut r2 = 0.0;
                for (a, b) in t.iter().zip(y) {
                    let mut delta = a - b;
                    delta -= self.side * (delta * self.inv_side).round();
                    r2 += delta * delta;
                }
                -self.c * r2
            }
        }
    }
}

/// Particle–particle kernel sums with the matrix K_ij / K(0) kept in memory: positions never
/// move, so each step's N×N pass becomes a matrix–vector product instead of N² exponentials.
/// Rows whose sum would underflow (weights spanning more than ~1e300) fall back to the
/// streamed [`log_kernel_sum`], so the result is as robust as the streamed one.
struct PairMatrix {
    width: f64,
    exponent: KernelExponent,
    values: Vec<f64>,
}

/// The largest N² kept in memory per cached kernel: 2^28 f64 (2 GiB, N up to 16 384). Above it a
/// step streams N² exponentials instead, about ten times slower; the budget lets chaos sweeps
/// reach N = 2^14 on a CPU in minutes rather than hours.
const PAIR_CACHE_ENTRIES: usize = 1 << 28;

impl PairMatrix {
    fn new(space: &Space, kernel: &Gaussian, pos: &[f64]) -> Option<Self> {
        let n = pos.len() / space.dim;
        if n * n > PAIR_CACHE_ENTRIES {
            return None;
        }
        let exponent = KernelExponent::new(space, kernel);
        // Filled row by row in place: collecting a flattened iterator would hold the matrix twice.
        let mut values = vec![0.0; n * n];
        values.par_chunks_exact_mut(n).zip(pos.par_chunks_exact(space.dim)).for_each(|(row, t)| {
            for (v, y) in row.iter_mut().zip(pos.chunks_exact(space.dim)) {
                *v = exponent.log_k(t, y).exp();
            }
        });
        Some(PairMatrix { width: kernel.width, exponent, values })
    }

    /// log Σ_j exp(log_coeffs[j]) K(X_i, X_j) for every particle i.
    fn log_sum(&self, pos: &[f64], log_coeffs: &[f64]) -> Vec<f64> {
        let n = log_coeffs.len();
        let shift = log_coeffs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let v: Vec<f64> = log_coeffs.iter().map(|c| (c - shift).exp()).collect();
        let d = pos.len() / n;
        self.values
            .par_chunks_exact(n)
            .zip(pos.par_chunks_exact(d))
            .map(|(row, t)| {
                let s: f64 = row.iter().zip(&v).map(|(k, v)| k * v).sum();
                if s > 1e-280 {
                    shift + s.ln() + self.exponent.log_norm
                } else {
                    log_sum_row(&self.exponent, t, pos, log_coeffs)
                }
            })
            .collect()
    }
}

/// The periodised one-coordinate factor Σ_{|n| ≤ M} exp(−(δ + nL)² c) of the torus kernel,
/// evaluated with two exponentials: exp(−(δ + nL)² c) = exp(−δ² c) · q^n · A_n with
/// q = exp(−2δLc) and A_n = exp(−n²L²c) precomputed.
struct ImageSum {
    c: f64,
    two_lc: f64,
    a: Vec<f64>,
}

impl ImageSum {
    fn new(kernel: &Gaussian, side: f64) -> Self {
        let c = 0.5 / (kernel.width * kernel.width);
        let a = (1..=kernel.images).map(|n| (-(f64::from(n) * side).powi(2) * c).exp()).collect();
        ImageSum { c, two_lc: 2.0 * side * c, a }
    }

    /// The factor for a minimum-image displacement δ ∈ [−L/2, L/2].
    #[inline]
    fn factor(&self, delta: f64) -> f64 {
        let q = (-self.two_lc * delta).exp();
        let (mut qp, mut qm, mut s) = (1.0, 1.0, 1.0);
        for a in &self.a {
            qp *= q;
            qm /= q;
            s += a * (qp + qm);
        }
        (-delta * delta * self.c).exp() * s
    }
}

/// Σ_j w_j g_j / Σ_j w_j: the mean of g under the normalised μᴺ.
pub fn weighted_mean(weights: &[f64], g: &[f64]) -> f64 {
    let wg: Vec<f64> = weights.iter().zip(g).map(|(w, g)| w * g).collect();
    pairwise_sum(&wg) / pairwise_sum(weights)
}

/// g_i = δF_i + σ h_i and a_i = g_i − Σ_j w_j g_j / Σ_j w_j (the CPU twin of the `rates` shader).
pub fn rates(weights: &[f64], dfdm: &[f64], h: &[f64], sigma: f64) -> Vec<f64> {
    let g: Vec<f64> = dfdm.iter().zip(h).map(|(f, hh)| f + sigma * hh).collect();
    let mean = weighted_mean(weights, &g);
    g.iter().map(|g| g - mean).collect()
}

/// What one evaluation of the current weights produced.
#[derive(Clone, Debug)]
struct Evaluation {
    rates: Vec<f64>,
    /// Σ w g / Σ w, which [`Engine::rates_at`] subtracts at other points.
    mean_g: f64,
    diagnostics: Diagnostics,
}

/// Quantities of the model at a set of points that depend only on where the points are.
struct PointData {
    /// The points, T × d.
    points: Vec<f64>,
    /// The model's position-only quantities: log π (or log K_ε π), U, the quadrature nodes.
    model: AtPoints,
    /// Per MMD term: (1/M) Σ_k k(x_t, Y_k).
    mmd_nu: Vec<Vec<f64>>,
}

impl PointData {
    fn new(m: &Model, points: Vec<f64>) -> Result<Self> {
        let space = &m.space;
        let mmd_nu = m
            .energy
            .iter()
            .filter_map(|e| match e {
                Energy::Mmd { width, sample } => {
                    let k = Gaussian::new(space, *width, false, "mmd.width").expect("validated");
                    let coeffs = vec![-(sample.len() as f64).ln(); sample.len()];
                    Some(
                        log_kernel_sum(space, &k, &points, &sample.values, &coeffs).into_iter().map(f64::exp).collect(),
                    )
                }
                _ => None,
            })
            .collect();
        Ok(PointData { model: m.at_points(&points)?, points, mmd_nu })
    }
}

/// Quantities of the model at the fixed positions, computed once.
struct Fixed {
    /// Everything that depends only on the particles' positions.
    at_particles: PointData,
    /// Per MMD term: (1/M²) Σ_kl k(Y_k, Y_l).
    mmd_cnn: Vec<f64>,
    /// Particle–particle kernel matrices, when N² is small enough to keep them.
    pairs: Vec<PairMatrix>,
    /// Cutoff sums per kernel (the ε-kernel's, the energies'), where the model's cutoff uses
    /// cells.
    cells: Vec<KernelCells>,
    /// Per NPMLE term, its cutoff sums between the particles and its observations, where the
    /// cutoff uses cells.
    npmle_cells: Vec<Option<KernelCells>>,
}

/// Cell grids for one kernel's sums (see [`super::cells`]): over the particles, and over a second
/// set of sources: for the ε-kernel of D and D′ the particles' quadrature nodes (the sources of
/// their second pass), for an NPMLE term its observations.
struct KernelCells {
    kernel: Gaussian,
    tolerance: f64,
    max_error: f64,
    particles: CellGrid,
    nodes: Option<CellGrid>,
    /// The largest relative truncation bound since the last reset, and its target.
    worst: Mutex<(f64, usize)>,
}

impl Fixed {
    fn new(m: &Model, p: &Particles) -> Result<Self> {
        let space = &m.space;
        let mmd_cnn = m
            .energy
            .iter()
            .filter_map(|e| match e {
                Energy::Mmd { width, sample } => {
                    let k = Gaussian::new(space, *width, false, "mmd.width").expect("validated");
                    let lm = -(sample.len() as f64).ln();
                    let nn = log_kernel_sum(space, &k, &sample.values, &sample.values, &vec![lm; sample.len()]);
                    Some(pairwise_sum(&nn.iter().map(|v| (v + lm).exp()).collect::<Vec<_>>()))
                }
                _ => None,
            })
            .collect();
        let mut kernels: Vec<Gaussian> = m
            .energy
            .iter()
            .filter_map(|e| match e {
                Energy::Interaction { width, .. } | Energy::Mmd { width, .. } => {
                    Some(Gaussian::new(space, *width, false, "width").expect("validated"))
                }
                _ => None,
            })
            .collect();
        let at_particles = PointData::new(m, p.positions.clone())?;
        let mut cells: Vec<KernelCells> =
            kernels.iter().filter_map(|k| KernelCells::new(m, *k, &p.positions, &[])).collect();
        if m.has_divergence() && m.variant != Variant::Exact {
            cells.extend(KernelCells::new(m, m.kernel, &p.positions, &at_particles.model.nodes));
            if matches!(m.variant, Variant::Measure | Variant::MeasureTarget | Variant::Blob) {
                kernels.push(m.kernel);
            }
        }
        // A kept matrix only for the kernels summed over all pairs.
        kernels.retain(|k| !cells.iter().any(|c| c.kernel == *k));
        let pairs = kernels.iter().filter_map(|k| PairMatrix::new(space, k, &p.positions)).collect();
        let npmle_cells = m
            .energy
            .iter()
            .filter_map(|e| match e {
                Energy::Npmle { observations, noise } => {
                    let k = Gaussian::new(space, *noise, true, "npmle.noise").expect("validated");
                    Some(KernelCells::new(m, k, &p.positions, &observations.values))
                }
                _ => None,
            })
            .collect();
        Ok(Fixed { at_particles, mmd_cnn, pairs, cells, npmle_cells })
    }

    /// Every cutoff sum's grids.
    fn all_cells(&self) -> impl Iterator<Item = &KernelCells> {
        self.cells.iter().chain(self.npmle_cells.iter().flatten())
    }

    /// The NPMLE term `index`'s log Σ_s exp(log_coeffs[s]) φ(t − y_s): from the particles to
    /// `targets` (the observations) or, with `observations`, from the observations to `targets`
    /// (the particles or other points); by cells where the cutoff uses them.
    #[allow(clippy::too_many_arguments)]
    fn npmle_sum(
        &self,
        space: &Space,
        index: usize,
        kernel: &Gaussian,
        targets: &[f64],
        sources: &[f64],
        observations: bool,
        log_coeffs: &[f64],
    ) -> Vec<f64> {
        match &self.npmle_cells[index] {
            Some(c) => c.sum(space, targets, sources, observations, log_coeffs),
            None => log_kernel_sum(space, kernel, targets, sources, log_coeffs),
        }
    }

    /// log Σ_j exp(log_coeffs[j]) K(X_i, X_j) for every particle: from a kept matrix when there
    /// is one for this kernel, else by [`Fixed::sum_from`] (cells or streamed).
    fn pair_log_sum(&self, space: &Space, kernel: &Gaussian, log_coeffs: &[f64]) -> Vec<f64> {
        let pos = &self.at_particles.points;
        // Kernels summed by cells have no kept matrix (see `Fixed::new`).
        match self.pairs.iter().find(|p| p.width == kernel.width && p.exponent.log_norm == kernel.log_norm) {
            Some(matrix) => matrix.log_sum(pos, log_coeffs),
            None => self.sum_from(space, kernel, pos, false, log_coeffs),
        }
    }

    /// log Σ_s exp(log_coeffs[s]) K(t, y_s) for `targets`, the sources being the particles or
    /// (`nodes`) the particles' quadrature nodes: by cells when the cutoff uses them for
    /// `kernel`, else streamed over all pairs.
    fn sum_from(&self, space: &Space, kernel: &Gaussian, targets: &[f64], nodes: bool, log_coeffs: &[f64]) -> Vec<f64> {
        let own = &self.at_particles;
        let sources = if nodes { &own.model.nodes } else { &own.points };
        match self.cells_of(kernel) {
            Some(c) => c.sum(space, targets, sources, nodes, log_coeffs),
            None => log_kernel_sum(space, kernel, targets, sources, log_coeffs),
        }
    }

    /// [`Fixed::sum_from`] for the model's ε-kernel.
    fn eps_sum(&self, m: &Model, targets: &[f64], nodes: bool, log_coeffs: &[f64]) -> Vec<f64> {
        self.sum_from(&m.space, &m.kernel, targets, nodes, log_coeffs)
    }

    /// The cell grids of `kernel`, if its sums use cells.
    fn cells_of(&self, kernel: &Gaussian) -> Option<&KernelCells> {
        self.cells.iter().find(|c| c.kernel == *kernel)
    }

    /// log Σ_j exp(log_coeffs[j]) K(x_t, X_j) for every target: the particles' own kept
    /// matrix when the targets are the particles.
    fn log_sum_to(&self, space: &Space, kernel: &Gaussian, targets: &Targets, log_coeffs: &[f64]) -> Vec<f64> {
        match targets {
            Targets::Particles => self.pair_log_sum(space, kernel, log_coeffs),
            Targets::Points(t) => self.sum_from(space, kernel, &t.points, false, log_coeffs),
        }
    }
}

impl KernelCells {
    /// The grids for `kernel` (with `nodes` as a second set of sources, or none) when `m`'s
    /// cutoff asks for cells and they save work: `Auto` only where the N×N matrix is too large to
    /// keep (N > 16384), a tolerance wherever a grid helps.
    fn new(m: &Model, kernel: Gaussian, positions: &[f64], nodes: &[f64]) -> Option<Self> {
        let (tolerance, max_error) = m.cutoff.parameters()?;
        let n = positions.len() / m.space.dim;
        if m.cutoff == Cutoff::Auto && n * n <= PAIR_CACHE_ENTRIES {
            return None;
        }
        let radius = Cutoff::radius(&kernel, tolerance);
        let particles = CellGrid::new(&m.space, positions, radius)?;
        let nodes = if nodes.is_empty() { None } else { Some(CellGrid::new(&m.space, nodes, radius)?) };
        Some(KernelCells { kernel, tolerance, max_error, particles, nodes, worst: Mutex::new((0.0, 0)) })
    }

    /// A cutoff sum over `sources` (the particles, or with `nodes` their quadrature nodes),
    /// recording the largest truncation bound.
    fn sum(&self, space: &Space, targets: &[f64], sources: &[f64], nodes: bool, log_coeffs: &[f64]) -> Vec<f64> {
        let grid = if nodes { self.nodes.as_ref().expect("built with the nodes") } else { &self.particles };
        let (values, bounds) =
            log_kernel_sum_cells(space, &self.kernel, grid, self.tolerance, targets, sources, log_coeffs);
        let (i, b) = bounds.iter().enumerate().fold((0, 0.0f64), |acc, (i, b)| if *b > acc.1 { (i, *b) } else { acc });
        let mut worst = self.worst.lock().unwrap_or_else(|p| p.into_inner());
        if b > worst.0 {
            *worst = (b, i);
        }
        values
    }

    /// The largest bound since the last call, and its target; resets it.
    fn take_worst(&self) -> (f64, usize) {
        std::mem::take(&mut *self.worst.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Where the first variation is evaluated.
enum Targets<'a> {
    /// At the particles themselves (the flow's own rates; values of F and D come along).
    Particles,
    /// At other points (to drive a non-interacting reference system).
    Points(&'a PointData),
}

/// δF/δm and h_ε at the targets, and the values F(μᴺ) and D_ε(μᴺ) when the targets are the
/// particles (D_ε only where the variant is a gradient flow).
struct Variation {
    dfdm: Vec<f64>,
    h: Vec<f64>,
    f_value: f64,
    d_value: Option<f64>,
}

/// The f64 reference engine.
pub struct CpuEngine {
    model: Model,
    particles: Particles,
    fixed: Fixed,
    state: State,
    cache: Option<Evaluation>,
}

impl CpuEngine {
    /// An engine at uniform weights 1/N.
    pub fn new(model: Model, particles: Particles) -> Result<Self> {
        super::check_problem(&model, &particles)?;
        let fixed = Fixed::new(&model, &particles)?;
        let n = particles.len();
        Ok(CpuEngine { model, particles, fixed, state: State::uniform(n), cache: None })
    }

    /// The model being solved.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The particles' positions.
    pub fn particles(&self) -> &Particles {
        &self.particles
    }

    fn evaluation(&mut self) -> Result<&Evaluation> {
        if self.cache.is_none() {
            let e = self.evaluate_state()?;
            self.cache = Some(e);
        }
        Ok(self.cache.as_ref().expect("just filled"))
    }

    fn variation(&self, targets: &Targets, w: &[f64]) -> Result<Variation> {
        let m = &self.model;
        let lw = &self.state.log_weights;
        let (dfdm, f_value) = energy_derivative(m, &self.fixed, targets, lw, w)?;
        let (h, d_value) = if m.has_divergence() {
            let mu0 = self.particles.log_initial_density.as_deref();
            divergence_derivative(m, &self.fixed, targets, mu0, lw, w)
        } else {
            (vec![0.0; dfdm.len()], Some(0.0))
        };
        Ok(Variation { dfdm, h, f_value, d_value })
    }

    /// The largest relative truncation bound of the cutoff sums since the last check, or the
    /// named error when it exceeds the cutoff's `max_error`.
    fn check_truncation(&self) -> Result<f64> {
        let mut largest = 0.0f64;
        for cells in self.fixed.all_cells() {
            let (bound, target) = cells.take_worst();
            largest = largest.max(bound);
            if bound <= cells.max_error && !bound.is_nan() {
                continue;
            }
            return Err(super::cells::truncation_error(bound, target, self.state.step, cells.max_error));
        }
        Ok(largest)
    }

    fn evaluate_state(&self) -> Result<Evaluation> {
        let m = &self.model;
        let w: Vec<f64> = self.state.log_weights.iter().map(|l| l.exp()).collect();
        let v = self.variation(&Targets::Particles, &w)?;
        let truncation_bound = self.check_truncation()?;
        let g: Vec<f64> = v.dfdm.iter().zip(&v.h).map(|(f, h)| f + m.sigma * h).collect();
        let a = rates(&w, &v.dfdm, &v.h, m.sigma);
        if let Some(i) = a.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite { step: self.state.step, particle: i, quantity: "rate", value: a[i] });
        }
        let energy = v.d_value.map(|d| v.f_value + m.sigma * d);
        let pos = &self.particles.positions;
        let mut diagnostics = summarise(&m.space, pos, &w, &a, &self.state, v.f_value, energy);
        diagnostics.truncation_bound = truncation_bound;
        Ok(Evaluation { rates: a, mean_g: weighted_mean(&w, &g), diagnostics })
    }
}

/// f_m(z_k) = Σ_i w_i φ(X_i, z_k) for every input z_k (the CPU twin of `net_forward`).
pub fn net_forward(pos: &[f64], d: usize, w: &[f64], inputs: &Points) -> Vec<f64> {
    (0..inputs.len())
        .into_par_iter()
        .map(|k| {
            let z = inputs.row(k);
            pairwise_sum(&pos.chunks_exact(d).zip(w).map(|(x, wi)| wi * Energy::neuron(x, z)).collect::<Vec<_>>())
        })
        .collect()
}

/// r_k = y_k − f_m(z_k) and F's data part Σ_k r_k² / 2M (the CPU twin of `net_residuals`).
pub fn net_residuals(f: &[f64], y: &[f64]) -> (Vec<f64>, f64) {
    let r: Vec<f64> = y.iter().zip(f).map(|(y, f)| y - f).collect();
    let data = pairwise_sum(&r.iter().map(|r| r * r).collect::<Vec<_>>()) / (2.0 * y.len() as f64);
    (r, data)
}

/// Per target x: (−(1/M) Σ_k r_k φ(x, z_k) + λ/2 |x|², λ/2 |x|²) (the CPU twin of `net_backward`);
/// with no residuals only the penalty.
pub fn net_backward(targets: &[f64], d: usize, inputs: &Points, r: &[f64], penalty: f64) -> (Vec<f64>, Vec<f64>) {
    let m = inputs.len() as f64;
    targets
        .par_chunks_exact(d)
        .map(|x| {
            let pull = if r.is_empty() {
                0.0
            } else {
                pairwise_sum(&(0..inputs.len()).map(|k| r[k] * Energy::neuron(x, inputs.row(k))).collect::<Vec<_>>())
            };
            let pen = 0.5 * penalty * x.iter().map(|v| v * v).sum::<f64>();
            (-pull / m + pen, pen)
        })
        .unzip()
}

/// The NPMLE's second-pass coefficients log(1 / (M p_k)) and F's value −Σ_k log p_k / M (the CPU
/// twin of `npmle_coefficients`).
pub fn npmle_coefficients(log_p: &[f64]) -> (Vec<f64>, f64) {
    let m = log_p.len() as f64;
    (log_p.iter().map(|lp| -lp - m.ln()).collect(), -pairwise_sum(log_p) / m)
}

/// One term of F as [`energy_accumulate`] adds it, named after what its kernel sums l1, l2 hold.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Accumulate {
    /// l1 = log Σ_j w_j W(x, X_j): δF += strength e^l1, f += ½ strength e^l1.
    Interaction {
        /// The interaction's strength.
        strength: f64,
    },
    /// l1 = log k*μᴺ, l2 = log k*ν: δF += e^l1 − e^l2, f += ½ e^l1 − e^l2.
    Mmd,
    /// l1 = δF, l2 = f, added as they are: the network's (l1 its pull plus penalty, l2 the
    /// penalty λ/2 |x|²) and a user pair kernel's (l1 = Σ_j w_j W(x, X_j), l2 = ½ l1).
    Linear,
    /// l1 = log (1/M) Σ_k φ(z_k − x)/p(z_k): δF −= e^l1, f += 0.
    Npmle,
}

/// Adds one energy term's δF/δm and its per-target share f of F to `energy` = (δF, f) per
/// target: the twin of `energy_accumulate.wgsl`. F(μᴺ) = Σ_i w_i f_i plus the terms' data and
/// constant parts when the targets are the particles.
pub fn energy_accumulate(term: Accumulate, l1: &[f64], l2: &[f64], energy: &mut [(f64, f64)]) {
    for (i, e) in energy.iter_mut().enumerate() {
        match term {
            Accumulate::Interaction { strength } => {
                let s = strength * l1[i].exp();
                e.0 += s;
                e.1 += 0.5 * s;
            }
            Accumulate::Mmd => {
                let (s, nu) = (l1[i].exp(), l2[i].exp());
                e.0 += s - nu;
                e.1 += 0.5 * s - nu;
            }
            Accumulate::Linear => {
                e.0 += l1[i];
                e.1 += l2[i];
            }
            Accumulate::Npmle => e.0 -= l1[i].exp(),
        }
    }
}

/// δF/δm at the targets and, when the targets are the particles, F(μᴺ) (else NaN): the fixed
/// potential U, then each other term through [`energy_accumulate`], as the GPU composes its
/// passes (a user's whole term adds its own δF/δm and F).
fn energy_derivative(m: &Model, fixed: &Fixed, targets: &Targets, lw: &[f64], w: &[f64]) -> Result<(Vec<f64>, f64)> {
    let (space, d) = (&m.space, m.space.dim);
    let pos = &fixed.at_particles.points;
    let at = match targets {
        Targets::Particles => &fixed.at_particles,
        Targets::Points(t) => t,
    };
    let mut energy: Vec<(f64, f64)> = at.model.potential.iter().map(|u| (*u, *u)).collect();
    // F's parts that are not a weighted sum over the particles.
    let mut rest = 0.0;
    let (mut mmd, mut npmle) = (0, 0);
    for e in &m.energy {
        match e {
            Energy::Potential(_) => {}
            Energy::Interaction { strength, width } => {
                let k = Gaussian::new(space, *width, false, "interaction.width").expect("validated");
                let l1 = fixed.log_sum_to(space, &k, targets, lw);
                energy_accumulate(Accumulate::Interaction { strength: *strength }, &l1, &[], &mut energy);
            }
            Energy::Mmd { width, .. } => {
                let k = Gaussian::new(space, *width, false, "mmd.width").expect("validated");
                let l1 = fixed.log_sum_to(space, &k, targets, lw);
                let l2: Vec<f64> = at.mmd_nu[mmd].iter().map(|nu| nu.ln()).collect();
                energy_accumulate(Accumulate::Mmd, &l1, &l2, &mut energy);
                rest += 0.5 * fixed.mmd_cnn[mmd];
                mmd += 1;
            }
            Energy::TwoLayerNet { inputs, targets: y, penalty } => {
                let (r, data) = net_residuals(&net_forward(pos, d, w, inputs), y);
                rest += data;
                let (l1, l2) = net_backward(&at.points, d, inputs, &r, *penalty);
                energy_accumulate(Accumulate::Linear, &l1, &l2, &mut energy);
            }
            Energy::Npmle { observations, noise } => {
                let k = Gaussian::new(space, *noise, true, "npmle.noise").expect("validated");
                let z = &observations.values;
                let log_p = fixed.npmle_sum(space, npmle, &k, z, pos, false, lw);
                let (coeffs, data) = npmle_coefficients(&log_p);
                rest += data;
                let l1 = fixed.npmle_sum(space, npmle, &k, &at.points, z, true, &coeffs);
                energy_accumulate(Accumulate::Npmle, &l1, &[], &mut energy);
                npmle += 1;
            }
            Energy::Pair(kernel) => {
                let l1 = pair_sum(kernel, d, &at.points, pos, w);
                let l2: Vec<f64> = l1.iter().map(|v| 0.5 * v).collect();
                energy_accumulate(Accumulate::Linear, &l1, &l2, &mut energy);
            }
            Energy::Custom(term) => {
                let (f, dfdm) = term.evaluate(pos, w, &at.points, d)?;
                energy.iter_mut().zip(dfdm).for_each(|(e, v)| e.0 += v);
                rest += f;
            }
        }
    }
    let f = match targets {
        Targets::Particles => pairwise_sum(&w.iter().zip(&energy).map(|(w, e)| w * e.1).collect::<Vec<_>>()) + rest,
        Targets::Points(_) => f64::NAN,
    };
    Ok((energy.into_iter().map(|e| e.0).collect(), f))
}

/// Σ_j w_j W(t, X_j) for every target t, in f64 by the kernel's Rust twin (the CPU twin of
/// `pair_sum.wgsl`).
pub fn pair_sum(kernel: &PairKernel, d: usize, targets: &[f64], sources: &[f64], w: &[f64]) -> Vec<f64> {
    targets
        .par_chunks_exact(d)
        .map(|t| {
            pairwise_sum(&sources.chunks_exact(d).zip(w).map(|(y, wj)| wj * kernel.value(t, y)).collect::<Vec<_>>())
        })
        .collect()
}

/// Variant C's second-pass coefficients log w_j − log d_j, with d_j = (K μᴺ)(X_j) (KL) or π(X_j)
/// (χ²), so that the next kernel sum gives Σ_j w_j K(X_j, x) / d_j (the CPU twin of
/// `blob_coefficients`).
pub fn blob_coefficients(log_weights: &[f64], log_denominators: &[f64]) -> Vec<f64> {
    log_weights.iter().zip(log_denominators).map(|(l, d)| l - d).collect()
}

/// Variants D and D′: second-pass coefficients at the quadrature nodes,
/// log w_j + log ω_q − log d_{jq} with d = (K μᴺ)(y_{jq}) (KL) or π(y_{jq}) (χ²), nodes ordered
/// particle-major (the CPU twin of `node_coefficients`).
pub fn node_coefficients(log_weights: &[f64], quadrature_weights: &[f64], log_denominators: &[f64]) -> Vec<f64> {
    let q = quadrature_weights.len();
    (0..log_denominators.len())
        .map(|jq| log_weights[jq / q] + quadrature_weights[jq % q].ln() - log_denominators[jq])
        .collect()
}

/// h_ε(μᴺ, x) at the targets for the model's variant and divergence (SPEC §3), and the
/// divergence's value where the variant is a gradient flow and the targets are the particles.
/// For C, D and D′, h is the exact gradient of the discrete divergence with respect to w_i, so
/// V_ε(μᴺ) cannot increase along the flow for small h.
fn divergence_derivative(
    m: &Model,
    fixed: &Fixed,
    targets: &Targets,
    log_mu0: Option<&[f64]>,
    lw: &[f64],
    w: &[f64],
) -> (Vec<f64>, Option<f64>) {
    let (space, k) = (&m.space, &m.kernel);
    let own = &fixed.at_particles;
    let (at, at_particles) = match targets {
        Targets::Particles => (own, true),
        Targets::Points(t) => (*t, false),
    };
    let kl = m.divergence == Divergence::Kl;
    let wsum = |v: &[f64]| pairwise_sum(&w.iter().zip(v).map(|(a, b)| a * b).collect::<Vec<_>>());
    // log of (density ratio): KL uses it as is, χ² as 2·exp(·).
    let finish = |log_ratio: Vec<f64>| -> Vec<f64> {
        if kl { log_ratio } else { log_ratio.into_iter().map(|r| 2.0 * r.exp()).collect() }
    };
    match m.variant {
        Variant::Measure | Variant::MeasureTarget => {
            let s = fixed.log_sum_to(space, k, targets, lw);
            (finish(s.iter().zip(&at.model.log_ref).map(|(s, r)| s - r).collect()), None)
        }
        Variant::Blob => {
            let s = fixed.log_sum_to(space, k, targets, lw);
            let ratio: Vec<f64> = s.iter().zip(&at.model.log_ref).map(|(s, r)| s - r).collect();
            // Second pass: Σ_j w_j K(x_j, x) / S_j (KL) or / π_j (χ²), with S_j = (K μᴺ)(X_j).
            let coeffs = if kl {
                let s_own = if at_particles { s.clone() } else { fixed.pair_log_sum(space, k, lw) };
                blob_coefficients(lw, &s_own)
            } else {
                blob_coefficients(lw, &own.model.log_ref)
            };
            let second = fixed.log_sum_to(space, k, targets, &coeffs);
            let first: Vec<f64> = if kl { ratio.clone() } else { ratio.iter().map(|r| r.exp()).collect() };
            let h = first.iter().zip(&second).map(|(f, s)| f + s.exp()).collect();
            let value = at_particles.then(|| if kl { wsum(&first) } else { wsum(&first) - 1.0 });
            (h, value)
        }
        Variant::Smoothed | Variant::SmoothedTarget => {
            let quad = &m.quadrature;
            let q = quad.len();
            // (K μᴺ) at the particles' nodes (the second pass's denominators) and at the targets' nodes.
            let s_own = fixed.eps_sum(m, &own.model.nodes, false, lw);
            let s_at = if at_particles { s_own.clone() } else { fixed.eps_sum(m, &at.model.nodes, false, lw) };
            // First term: Σ_q ω_q f(y_{t,q}) with f = log ratio (KL) or ratio (χ²).
            let first: Vec<f64> = s_at
                .iter()
                .zip(&at.model.log_ref_nodes)
                .map(|(s, r)| s - r)
                .collect::<Vec<_>>()
                .chunks_exact(q)
                .map(|r| r.iter().zip(&quad.weights).map(|(r, om)| om * if kl { *r } else { r.exp() }).sum())
                .collect();
            // Second term: Σ_{j,q} w_j ω_q K(y_{j,q}, x) / (K μᴺ)(y_{j,q}) (KL) or / π(y_{j,q}) (χ²).
            let coeffs = node_coefficients(lw, &quad.weights, if kl { &s_own } else { &own.model.log_ref_nodes });
            let second = fixed.eps_sum(m, &at.points, true, &coeffs);
            let h = first.iter().zip(&second).map(|(f, s)| f + s.exp()).collect();
            let value = at_particles.then(|| if kl { wsum(&first) } else { wsum(&first) - 1.0 });
            (h, value)
        }
        Variant::Exact => {
            // Only reachable at the particles: rates_at refuses the oracle, which knows no density elsewhere.
            let mu0 = log_mu0.expect("checked in CpuEngine::new");
            let ln_n = (w.len() as f64).ln();
            let log_ratio: Vec<f64> =
                lw.iter().zip(mu0).zip(&own.model.log_ref).map(|((l, m0), r)| ln_n + l + m0 - r).collect();
            let h = finish(log_ratio);
            let value = if kl { wsum(&h) } else { 0.5 * wsum(&h) - 1.0 };
            (h, Some(value))
        }
    }
}

/// The diagnostics of SPEC §6 from weights and rates (the CPU twin of the `reduce` shader).
fn summarise(
    space: &Space,
    pos: &[f64],
    w: &[f64],
    a: &[f64],
    state: &State,
    f_energy: f64,
    energy: Option<f64>,
) -> Diagnostics {
    let d = space.dim;
    let mass = pairwise_sum(w);
    let w2: Vec<f64> = w.iter().map(|v| v * v).collect();
    let ess = mass * mass / pairwise_sum(&w2);
    let max_abs_rate = a.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let max_rate = a.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut mean = vec![0.0; d];
    let mut variance = vec![0.0; d];
    for k in 0..d {
        let col: Vec<f64> = pos.chunks_exact(d).zip(w).map(|(x, wi)| wi * x[k]).collect();
        mean[k] = pairwise_sum(&col) / mass;
        let col2: Vec<f64> = pos.chunks_exact(d).zip(w).map(|(x, wi)| wi * (x[k] - mean[k]).powi(2)).collect();
        variance[k] = pairwise_sum(&col2) / mass;
    }
    Diagnostics {
        step: state.step,
        time: state.time,
        energy,
        f_energy,
        mass,
        ess,
        max_abs_rate,
        max_rate,
        mean,
        variance,
        truncation_bound: 0.0,
    }
}

impl Engine for CpuEngine {
    fn name(&self) -> String {
        format!("cpu-f64 ({} threads)", rayon::current_num_threads())
    }

    fn len(&self) -> usize {
        self.particles.len()
    }

    fn cutoff_fraction(&self) -> Option<f64> {
        let cells = self.fixed.cells_of(&self.model.kernel).or(self.fixed.cells.first())?;
        let pos = &self.particles.positions;
        let n = self.particles.len() as f64;
        Some(cells.particles.pairs(pos) as f64 / (n * n))
    }

    fn evaluate(&mut self) -> Result<Diagnostics> {
        Ok(self.evaluation()?.diagnostics.clone())
    }

    fn rates(&mut self) -> Result<Vec<f64>> {
        Ok(self.evaluation()?.rates.clone())
    }

    fn rates_at(&mut self, points: &[f64]) -> Result<Vec<f64>> {
        let space = self.model.space;
        if points.len() % space.dim != 0 {
            return Err(Error::invalid(
                "points",
                format!("{} values", points.len()),
                format!("a multiple of d = {}", space.dim),
            ));
        }
        if let Some(i) = points.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid(format!("points[{i}]"), points[i], "finite numbers only"));
        }
        if self.model.variant == Variant::Exact && self.model.has_divergence() {
            return Err(Error::invalid(
                "kernel.variant",
                "exact",
                "a kernelized variant: the exact oracle knows μᴺ's density only at its own particles",
            ));
        }
        let mean_g = self.evaluation()?.mean_g;
        let mut points = points.to_vec();
        points.chunks_exact_mut(space.dim).for_each(|x| space.wrap(x));
        let targets = PointData::new(&self.model, points)?;
        let w = self.state.weights();
        let v = self.variation(&Targets::Points(&targets), &w)?;
        self.check_truncation()?;
        Ok(v.dfdm.iter().zip(&v.h).map(|(f, h)| f + self.model.sigma * h - mean_g).collect())
    }

    fn advance(&mut self, steps: u64, stepper: &Stepper, until: Option<f64>) -> Result<u64> {
        let mut taken = 0;
        while taken < steps && !reached(self.state.time, until) {
            let eval = match self.cache.take() {
                Some(e) => e,
                None => self.evaluate_state()?,
            };
            let diag = &eval.diagnostics;
            let Some(h) = stepper.step_control(diag.max_rate, diag.max_abs_rate, self.state.time, until) else {
                self.cache = Some(eval);
                break;
            };
            stepper.apply(&mut self.state.log_weights, &eval.rates, h, self.state.step)?;
            if let Some(i) = self.state.log_weights.iter().position(|l| l.is_nan() || *l == f64::INFINITY) {
                let value = self.state.log_weights[i];
                return Err(Error::NonFinite { step: self.state.step, particle: i, quantity: "log-weight", value });
            }
            self.state.step += 1;
            self.state.time += h;
            taken += 1;
        }
        Ok(taken)
    }

    fn state(&mut self) -> Result<State> {
        Ok(self.state.clone())
    }

    fn set_state(&mut self, state: State) -> Result<()> {
        if state.log_weights.len() != self.len() {
            return Err(Error::invalid(
                "state.log_weights",
                format!("{} values", state.log_weights.len()),
                format!("one per particle ({})", self.len()),
            ));
        }
        if let Some(i) = state.log_weights.iter().position(|l| l.is_nan() || *l == f64::INFINITY) {
            return Err(Error::invalid(format!("state.log_weights[{i}]"), state.log_weights[i], "finite or -inf"));
        }
        self.state = state;
        self.cache = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Domain;
    use rand::{Rng, SeedableRng};

    /// The kept matrix and the streamed sum are two evaluations of the same f64 quantity: they
    /// agree to rounding (1e-12 relative on log S, whose terms are summed in different orders),
    /// also when weights span 1e-300..1 and the fallback path is taken.
    #[test]
    fn kept_pair_matrix_matches_streamed_kernel_sum() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for (domain, eps) in
            [(Domain::Euclidean, 0.3), (Domain::Torus { side: 1.0 }, 0.02), (Domain::Torus { side: 1.0 }, 0.4)]
        {
            for d in [1, 3] {
                let space = Space::new(d, domain).unwrap();
                let k = Gaussian::new(&space, eps, true, "eps").unwrap();
                let n = 301;
                let pos: Vec<f64> = (0..n * d).map(|_| rng.random::<f64>()).collect();
                for span in [1.0, 700.0] {
                    let lw: Vec<f64> = (0..n).map(|_| -span * rng.random::<f64>()).collect();
                    let kept = PairMatrix::new(&space, &k, &pos).unwrap().log_sum(&pos, &lw);
                    let streamed = log_kernel_sum(&space, &k, &pos, &pos, &lw);
                    for (a, b) in kept.iter().zip(&streamed) {
                        assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{domain:?} d={d} span={span}: {a} vs {b}");
                    }
                }
            }
        }
    }

    /// rates_at evaluates the same first variation at arbitrary points: at the particles' own
    /// positions it must reproduce the flow's rates (to rounding, 1e-10 of max |a|: the sums run
    /// through the streamed path instead of the kept matrices) for every kernelized variant,
    /// divergence and energy, and it must differ elsewhere.
    /// Merging chunk partials in any split equals one log-sum-exp over all terms (to 1e-13
    /// relative on values of order 1e3), ignores chunks without weight (m = −∞), and survives
    /// terms that would underflow or overflow exp() on their own.
    #[test]
    fn log_sum_merge_equals_one_log_sum_exp() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
        let e: Vec<f64> = (0..1000).map(|_| 1000.0 * rng.random::<f64>() - 500.0).collect();
        let want = crate::model::log_sum_exp(&e);
        for chunk in [1, 7, 256, 1000] {
            let partials = e.chunks(chunk).map(|c| {
                let m = c.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                (m, c.iter().map(|x| (x - m).exp()).sum::<f64>())
            });
            let empty = std::iter::once((f64::NEG_INFINITY, 0.0));
            let got = log_sum_merge(empty.clone().chain(partials).chain(empty));
            assert!((got - want).abs() <= 1e-13 * want.abs(), "chunk {chunk}: {got} vs {want}");
        }
        assert_eq!(log_sum_merge([(f64::NEG_INFINITY, 0.0)]), f64::NEG_INFINITY);
    }

    #[test]
    fn rates_at_the_particles_equal_the_flows_rates() {
        use crate::model::{Energy, ModelSpec, Points, Potential, QuadratureSpec, Reference};
        use crate::particles::Initial;
        use std::sync::Arc;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        for variant in
            [Variant::Measure, Variant::MeasureTarget, Variant::Blob, Variant::Smoothed, Variant::SmoothedTarget]
        {
            for divergence in [Divergence::Kl, Divergence::Chi2] {
                let space = Space::new(2, Domain::Torus { side: 1.0 }).unwrap();
                let sample = Arc::new(Points { dim: 2, values: (0..40).map(|_| rng.random::<f64>()).collect() });
                let model = ModelSpec {
                    space,
                    reference: Reference::Uniform,
                    divergence,
                    sigma: 0.7,
                    epsilon: 0.1,
                    variant,
                    energy: vec![
                        Energy::Potential(Potential::Cosine { amplitude: 1.0, frequency: 1 }),
                        Energy::Interaction { strength: 0.3, width: 0.2 },
                        Energy::Mmd { width: 0.15, sample: sample.clone() },
                        Energy::Npmle { observations: sample, noise: 0.1 },
                    ],
                    quadrature: QuadratureSpec { order: 3, ..Default::default() },
                }
                .build()
                .unwrap();
                let particles = Particles::sample(space, &Initial::Uniform { low: 0.0, high: 1.0 }, 57, 2).unwrap();
                let pos = particles.positions.clone();
                let mut engine = CpuEngine::new(model, particles).unwrap();
                let lw: Vec<f64> = (0..57).map(|_| -4.0 - 2.0 * rng.random::<f64>()).collect();
                engine.set_state(State { log_weights: lw, step: 0, time: 0.0 }).unwrap();
                let own = engine.rates().unwrap();
                let at = engine.rates_at(&pos).unwrap();
                let scale = own.iter().fold(0.0f64, |m, a| m.max(a.abs()));
                for (a, b) in own.iter().zip(&at) {
                    assert!((a - b).abs() <= 1e-10 * scale, "{variant:?} {divergence:?}: {a} vs {b}");
                }
                let shifted: Vec<f64> = pos.iter().map(|x| x + 0.013).collect();
                let moved = engine.rates_at(&shifted).unwrap();
                assert!(own.iter().zip(&moved).any(|(a, b)| (a - b).abs() > 1e-6 * scale), "{variant:?}");
            }
        }
    }
}
