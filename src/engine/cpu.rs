//! The f64 CPU reference engine, parallel over particles with rayon.
//!
//! Each stage is a function named after the GPU shader that does the same work (`log_kernel_sum`,
//! `rates`, `euler_update`, …), written to be read side by side with it. Sums over particles use
//! [`pairwise_sum`], so results do not depend on the thread count.

use super::cells::{CellGrid, Cutoff, log_kernel_sum_cells};
use super::{Diagnostics, Engine, pairwise_sum, reached};
use crate::energy::{CpuEval, CpuTerm};
use crate::error::{Error, Result};
use crate::model::{AtPoints, Divergence, Gaussian, Model, Space};
use crate::particles::{Particles, State};
use crate::stepper::Stepper;
use crate::variant::CpuDiv;
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
    /// Per energy term, its own (see [`CpuTerm::fixed_at`]).
    terms: Vec<Option<Vec<f64>>>,
}

impl PointData {
    fn new(m: &Model, terms: &[Box<dyn CpuTerm>], points: Vec<f64>) -> Result<Self> {
        let terms = terms.iter().map(|t| t.fixed_at(&m.space, &points)).collect();
        Ok(PointData { model: m.at_points(&points)?, points, terms })
    }
}

/// Quantities of the model at the fixed positions, computed once.
struct Fixed {
    /// The energy terms' CPU parts (position-only terms are in `at_particles.model`).
    terms: Vec<Box<dyn CpuTerm>>,
    /// Everything that depends only on the particles' positions.
    at_particles: PointData,
    /// Particle–particle kernel matrices, when N² is small enough to keep them.
    pairs: Vec<PairMatrix>,
    /// Cutoff sums per kernel (the ε-kernel's, the energies'), where the model's cutoff uses
    /// cells.
    cells: Vec<KernelCells>,
}

/// Cell grids for one kernel's sums (see [`super::cells`]): over the particles, and over a second
/// set of sources: for the ε-kernel of D and D′ the particles' quadrature nodes (the sources of
/// their second pass), for an NPMLE term its observations.
pub(crate) struct KernelCells {
    kernel: Gaussian,
    tolerance: f64,
    max_error: f64,
    /// `Cutoff::Auto`: targets whose bound exceeds `max_error` are summed over all sources.
    auto: bool,
    particles: CellGrid,
    nodes: Option<CellGrid>,
    /// The largest relative truncation bound since the last reset, and its target.
    worst: Mutex<(f64, usize)>,
}

impl Fixed {
    fn new(m: &Model, p: &Particles) -> Result<Self> {
        let space = &m.space;
        let mut terms = Vec::new();
        for e in &m.energy {
            terms.extend(e.term().cpu(m, &p.positions)?);
        }
        let mut kernels: Vec<Gaussian> = terms.iter().filter_map(|t| t.kernel()).collect();
        let at_particles = PointData::new(m, &terms, p.positions.clone())?;
        let mut cells: Vec<KernelCells> =
            kernels.iter().filter_map(|k| KernelCells::new(m, *k, &p.positions, &[])).collect();
        let variant = m.variant.kernelization();
        if m.has_divergence() && variant.kernel_sums() > 0 {
            cells.extend(KernelCells::new(m, m.kernel, &p.positions, &at_particles.model.nodes));
            if variant.particle_sums_only() {
                kernels.push(m.kernel);
            }
        }
        // A kept matrix only for the kernels summed over all pairs.
        kernels.retain(|k| !cells.iter().any(|c| c.kernel == *k));
        let pairs = kernels.iter().filter_map(|k| PairMatrix::new(space, k, &p.positions)).collect();
        Ok(Fixed { terms, at_particles, pairs, cells })
    }

    /// Every cutoff sum's grids: the kernels' and the terms' own.
    fn all_cells(&self) -> impl Iterator<Item = &KernelCells> {
        self.cells.iter().chain(self.terms.iter().filter_map(|t| t.cells()))
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
    pub(crate) fn new(m: &Model, kernel: Gaussian, positions: &[f64], nodes: &[f64]) -> Option<Self> {
        let (tolerance, max_error) = m.cutoff.parameters()?;
        let n = positions.len() / m.space.dim;
        if m.cutoff == Cutoff::Auto && n * n <= PAIR_CACHE_ENTRIES {
            return None;
        }
        let radius = Cutoff::radius(&kernel, tolerance);
        let particles = CellGrid::new(&m.space, positions, radius)?;
        let nodes = if nodes.is_empty() { None } else { Some(CellGrid::new(&m.space, nodes, radius)?) };
        let auto = m.cutoff == Cutoff::Auto;
        Some(KernelCells { kernel, tolerance, max_error, auto, particles, nodes, worst: Mutex::new((0.0, 0)) })
    }

    /// A cutoff sum over `sources` (the particles, or with `nodes` their quadrature nodes),
    /// recording the largest truncation bound.
    pub(crate) fn sum(
        &self,
        space: &Space,
        targets: &[f64],
        sources: &[f64],
        nodes: bool,
        log_coeffs: &[f64],
    ) -> Vec<f64> {
        let grid = if nodes { self.nodes.as_ref().expect("built with the nodes") } else { &self.particles };
        let (mut values, mut bounds) =
            log_kernel_sum_cells(space, &self.kernel, grid, self.tolerance, targets, sources, log_coeffs);
        if self.auto {
            // `auto` never stops a run: the few targets whose neighbourhood holds too little of
            // the mass (isolated tail particles) are summed over all sources instead.
            let d = space.dim;
            let far: Vec<usize> =
                (0..bounds.len()).filter(|&t| bounds[t] > self.max_error || bounds[t].is_nan()).collect();
            if !far.is_empty() {
                let subset: Vec<f64> = far.iter().flat_map(|&t| targets[t * d..(t + 1) * d].to_vec()).collect();
                let exact = log_kernel_sum(space, &self.kernel, &subset, sources, log_coeffs);
                for (&t, v) in far.iter().zip(exact) {
                    (values[t], bounds[t]) = (v, 0.0);
                }
            }
        }
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

/// δF/δm at the targets and, when the targets are the particles, F(μᴺ) (else NaN): the fixed
/// potential U, then each other term's CPU part (see [`crate::energy`]), as the GPU composes its
/// passes.
fn energy_derivative(m: &Model, fixed: &Fixed, targets: &Targets, lw: &[f64], w: &[f64]) -> Result<(Vec<f64>, f64)> {
    let space = &m.space;
    let at = match targets {
        Targets::Particles => &fixed.at_particles,
        Targets::Points(t) => t,
    };
    let particle_sum = |k: &Gaussian, coeffs: &[f64]| fixed.log_sum_to(space, k, targets, coeffs);
    let mut energy: Vec<(f64, f64)> = at.model.potential.iter().map(|u| (*u, *u)).collect();
    // F's parts that are not a weighted sum over the particles.
    let mut rest = 0.0;
    for (term, own) in fixed.terms.iter().zip(&at.terms) {
        let eval = CpuEval {
            space,
            positions: &fixed.at_particles.points,
            weights: w,
            log_weights: lw,
            targets: &at.points,
            fixed: own.as_deref(),
            particle_sum: &particle_sum,
        };
        rest += term.add(&eval, &mut energy)?;
    }
    let f = match targets {
        Targets::Particles => pairwise_sum(&w.iter().zip(&energy).map(|(w, e)| w * e.1).collect::<Vec<_>>()) + rest,
        Targets::Points(_) => f64::NAN,
    };
    Ok((energy.into_iter().map(|e| e.0).collect(), f))
}

/// h_ε(μᴺ, x) at the targets for the model's variant and divergence (SPEC §3; each variant's
/// `variant_h` in [`crate::variant`]), and the divergence's value where the variant is a gradient
/// flow and the targets are the particles. For C, D and D′, h is the exact gradient of the
/// discrete divergence with respect to w_i, so V_ε(μᴺ) cannot increase along the flow for small h.
fn divergence_derivative(
    m: &Model,
    fixed: &Fixed,
    targets: &Targets,
    log_mu0: Option<&[f64]>,
    lw: &[f64],
    w: &[f64],
) -> (Vec<f64>, Option<f64>) {
    let own = &fixed.at_particles;
    let at = match targets {
        Targets::Particles => own,
        Targets::Points(t) => t,
    };
    let sum_to_targets = |c: &[f64]| fixed.log_sum_to(&m.space, &m.kernel, targets, c);
    let sum_to_particles = |c: &[f64]| fixed.pair_log_sum(&m.space, &m.kernel, c);
    let sum_from = |points: &[f64], nodes: bool, c: &[f64]| fixed.eps_sum(m, points, nodes, c);
    m.variant.kernelization().variant_h(&CpuDiv {
        kl: m.divergence == Divergence::Kl,
        log_weights: lw,
        weights: w,
        quadrature: &m.quadrature,
        log_mu0,
        at_particles: matches!(targets, Targets::Particles),
        points: &at.points,
        at: &at.model,
        own: &own.model,
        sum_to_targets: &sum_to_targets,
        sum_to_particles: &sum_to_particles,
        sum_from: &sum_from,
    })
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
        super::check_points(&self.model, points)?;
        let mean_g = self.evaluation()?.mean_g;
        let mut points = points.to_vec();
        points.chunks_exact_mut(space.dim).for_each(|x| space.wrap(x));
        let targets = PointData::new(&self.model, &self.fixed.terms, points)?;
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
    use crate::model::{Domain, Variant};
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
        use crate::model::{Energy, Interaction, Mmd, ModelSpec, Npmle, Points, Potential, QuadratureSpec, Reference};
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
                        Energy::Interaction(Interaction { strength: 0.3, width: 0.2 }),
                        Energy::Mmd(Mmd { width: 0.15, sample: sample.clone() }),
                        Energy::Npmle(Npmle { observations: sample, noise: 0.1 }),
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
