//! Entropic OT by log-domain Sinkhorn with ε-scaling, and the debiased Sinkhorn divergence.
//!
//! For weights a, b and cost C, OT_ε(α, β) = min_π ⟨C, π⟩ + ε KL(π | α ⊗ β) over couplings π.
//! Its dual potentials (f, g) solve f_i = −ε log Σ_j b_j exp((g_j − C_ij)/ε) and the same with
//! the roles swapped; the plan is π_ij = a_i b_j exp((f_i + g_j − C_ij)/ε). Every update is one
//! N × M log-sum-exp pass behind the [`LogSum`] trait: [`sinkhorn_log_sum`] on the CPU in f64,
//! or its GPU twin [`crate::engine::gpu::SinkhornLogSum`] in f32.
//!
//! **Cutoff.** Each pass is a sum of the Gibbs kernel e^{−c/ε}, a Gaussian of width √(ε/2), with
//! log-coefficients log b_j + g_j/ε, so the cell sums of [`crate::engine::cells`] apply: with
//! [`SinkhornOptions::cutoff`] the passes at every ε where a grid saves work visit only the 3^d
//! cells around each target ([`sinkhorn_log_sum_cells`]), and each reports its largest relative
//! truncation bound, whose "mass" includes e^{g_j/ε}. The grids over the two clouds share one
//! geometry ([`CellGrid::shared`]), so both half-steps keep the same pairs and the solver solves
//! exactly the entropic problem of the truncated cost c̃ (c on kept pairs, +∞ on dropped ones).
//! Then OT_ε(c) ≤ OT_ε(c̃), and weak duality at the returned potentials gives
//! OT_ε(c) ≥ value − ε·Σ_i ρ_i t_i, with ρ_i the plan's row sums and t_i the relative part of
//! row i's all-pairs sum that the cells dropped: with B ≥ Σ_i ρ_i t_i
//! ([`EntropicOt::truncation_bound`]) the value is within ε·B of the all-pairs one (up to both
//! solvers' convergence), and S_ε within [`Divergence::truncation_error`].
//!
//! B comes from the cells' bounds (the largest × (1 + marginal error)). That bound charges all
//! far mass at the cutoff radius; its mass carries e^{g_j/ε}, which grows across the domain by
//! e^{2|v|·L/ε} wherever the plan moves mass by |v| over a domain of size L, so it exceeds
//! `max_error` in most transport problems at small ε although the dropped terms are tiny (they
//! decay like e^{−(r − |v|)²/ε}). There the solver measures the t_i instead, by one all-pairs pass
//! at the returned potentials (the cost of one iteration), and B is that measured sum
//! ([`EntropicOt::truncation_measured`]).
//!
//! Where B exceeds `max_error` even so, or a pass leaves a target with no mass in its
//! neighbourhood (the solve is then given up at once), `Cutoff::Auto` solves that problem again
//! with all pairs and says so in [`EntropicOt::fell_back`]; an explicit `Cutoff::Tolerance` returns
//! an error naming `cutoff`, B and ε.

use super::{Cost, check_points, normalised_weights};
use crate::engine::cells::{self, CellGrid, Cutoff};
use crate::engine::pairwise_sum;
use crate::error::{Error, Result};
use crate::model::Gaussian;
use rayon::prelude::*;

/// The default regularisation, as a fraction of the mean cost
/// ⟨C, α ⊗ β⟩ = Σ_ij a_i b_j |x_i − y_j|²: ε = 3e-4 · mean cost.
///
/// Why this value: for discrete measures S_ε approaches W₂² from below with a bias of order ε
/// (as ε → 0 it is ≈ ε (½H(a) + ½H(b) − H(π₀)), H the entropy and π₀ the optimal plan, which
/// vanishes only for equal uniform weights). For two clouds of 500 points in the unit square,
/// measured against [`super::exact_ot`]: ratio 1e-3 gives S_ε/W₂² − 1 ≈ −1.2e-3 (uniform
/// weights) to −1.7e-3 (random weights against uniform); 3e-4 gives −3e-4 to −6e-4, in ~1000
/// iterations; 1e-4 gives −0.5e-4 to −2e-4 but needs several thousand. `tests/transport.rs`
/// holds the default to 1e-3 relative at N = 500, d = 2.
pub const DEFAULT_EPSILON_RATIO: f64 = 3e-4;

/// A stopping tolerance for Sinkhorn with GPU passes, above the floor that f32 passes put under
/// the measured marginal error.
///
/// The passes' rounding makes the row-marginal error noisy at about 1e-5 (measured on lavapipe:
/// 1e-5 is reached only after ~4× the iterations, and the error rebuilt in f64 is then 2e-5);
/// at 1e-4 the GPU stops within 15% of the CPU's iteration count and S_ε agrees with the f64
/// solver's to ~1e-7 relative (tests/gpu_transport.rs).
pub const GPU_TOLERANCE: f64 = 1e-4;

/// Above this many pairs n·m, `Cutoff::Auto` sums the CPU's Sinkhorn passes on cells (where a
/// grid saves work): N = M = 16384, where the CPU engine's own `auto` turns to cells.
pub const CPU_AUTO_CELLS_ABOVE: usize = 1 << 28;

/// How [`sinkhorn`] and [`sinkhorn_divergence`] iterate.
///
/// **Schedule (ε-scaling).** Starting from ε₀ = the squared diameter of the two clouds' bounding
/// box (a bound on every cost, where one iteration nearly converges), ε is multiplied by
/// `scaling` after each iteration until it reaches the target ε; the potentials are carried from
/// one ε to the next. That takes ⌈log(ε₀/ε)/log(1/scaling)⌉ annealing iterations. With cell
/// passes (`cutoff`), the annealing starts at the largest ε of that schedule where a grid saves
/// work, since each level above it would cost two all-pairs passes.
///
/// **Iteration at the target ε.** [`sinkhorn`] alternates the f and g updates over-relaxed,
/// f ← f + ω(T f − f), with ω adapted from the observed convergence rate (starting at 1; see
/// `Relaxation` in the source): at small ε this cuts the iteration count by an order of magnitude.
/// The symmetric problems of [`sinkhorn_divergence`] use the averaged update p ← ½(p + T p).
///
/// **Stopping.** Every 10 iterations (every iteration for the symmetric problems), the plan
/// (f, g) with g just updated exactly (so its column sums are exact) is measured: the L1 error of
/// its row sums, ‖π 1 − a‖₁ = Σ_i a_i |exp((f_i − f̃_i)/ε) − 1| where f̃ is the next plain f. The
/// solver stops as soon as that error is below `tolerance`, returning the plan it measured, or
/// after `max_iterations` iterations in all (annealing included), reporting `converged: false`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SinkhornOptions {
    /// Target regularisation ε in cost units; `None` means [`DEFAULT_EPSILON_RATIO`] × the mean
    /// cost ⟨C, α ⊗ β⟩.
    pub epsilon: Option<f64>,
    /// Factor in (0, 1) between successive ε of the annealing schedule (default 0.5).
    pub scaling: f64,
    /// Stop when the row marginal's L1 error is below this (default 1e-6).
    pub tolerance: f64,
    /// The most Sinkhorn iterations, annealing included (default 10 000).
    pub max_iterations: usize,
    /// Cell sums for the passes (see the module's documentation; default `Auto`: cells above
    /// [`LogSum::auto_cells_above`] pairs, falling back to all pairs where the bound exceeds
    /// `max_error`; a `Tolerance` uses cells at any size and errors there instead).
    pub cutoff: Cutoff,
}

impl Default for SinkhornOptions {
    fn default() -> Self {
        SinkhornOptions { epsilon: None, scaling: 0.5, tolerance: 1e-6, max_iterations: 10_000, cutoff: Cutoff::Auto }
    }
}

impl SinkhornOptions {
    fn check(&self) -> Result<()> {
        if let Some(eps) = self.epsilon
            && !(eps.is_finite() && eps > 0.0)
        {
            return Err(Error::invalid("epsilon", eps, "a finite ε > 0, or None for the default"));
        }
        if !(self.scaling > 0.0 && self.scaling < 1.0) {
            return Err(Error::invalid("scaling", self.scaling, "a factor strictly between 0 and 1"));
        }
        crate::error::check_positive("tolerance", self.tolerance)?;
        if self.max_iterations == 0 {
            return Err(Error::invalid("max_iterations", 0, "at least 1"));
        }
        self.cutoff.validate("cutoff")
    }
}

/// The result of one entropic OT problem.
#[derive(Clone, Debug)]
pub struct EntropicOt {
    /// OT_ε, evaluated as the dual objective ⟨a, f⟩ + ⟨b, g⟩ − ε(⟨π, 1⟩ − 1) of the returned
    /// potentials.
    pub value: f64,
    /// Potential f on the first cloud (one per point, also for zero-weight points).
    pub f: Vec<f64>,
    /// Potential g on the second cloud.
    pub g: Vec<f64>,
    /// The regularisation ε used.
    pub epsilon: f64,
    /// Sinkhorn iterations taken, annealing included.
    pub iterations: usize,
    /// L1 error of the plan's row marginal, ‖π 1 − a‖₁ (the column marginal is exact, up to
    /// rounding, for [`sinkhorn`]; for the symmetric problems both are this error).
    pub marginal_error: f64,
    /// Whether `marginal_error` fell below the tolerance.
    pub converged: bool,
    /// B, bounding Σ_i ρ_i t_i for the returned plan's row sums ρ_i and the relative part t_i of
    /// each row's all-pairs sum that the cells dropped (0 where the passes summed all pairs):
    /// the all-pairs problem's OT_ε lies in [value − ε·B, value] up to convergence (see the
    /// module's documentation). From the cells: their largest bound × (1 + `marginal_error`);
    /// where that exceeds `max_error`, measured (see `truncation_measured`).
    pub truncation_bound: f64,
    /// Whether `truncation_bound` was measured rather than bounded: the cells' bound exceeded
    /// `max_error` (it charges all far mass, weighted by e^{g_j/ε}, at the cutoff radius, which
    /// the potentials' growth across the domain swamps wherever the plan moves mass), so one
    /// all-pairs pass at the returned potentials measured the t_i instead.
    pub truncation_measured: bool,
    /// `Some(bound)` where `Cutoff::Auto`'s cell solve ended with a bound above `max_error` (∞:
    /// a target's neighbourhood held no mass) and the problem was solved again with all pairs.
    pub fell_back: Option<f64>,
}

impl EntropicOt {
    /// The plan's entry π_ij = a_i b_j exp((f_i + g_j − C_ij)/ε), given the normalised weights
    /// a_i, b_j and the cost C_ij.
    pub fn plan_entry(&self, i: usize, j: usize, a_i: f64, b_j: f64, c_ij: f64) -> f64 {
        a_i * b_j * ((self.f[i] + self.g[j] - c_ij) / self.epsilon).exp()
    }
}

/// The debiased Sinkhorn divergence and its three parts.
#[derive(Clone, Debug)]
pub struct Divergence {
    /// S_ε(α, β) = OT_ε(α, β) − ½ OT_ε(α, α) − ½ OT_ε(β, β), an estimate of W₂².
    pub value: f64,
    /// The regularisation ε used by all three problems.
    pub epsilon: f64,
    /// OT_ε(α, β).
    pub xy: EntropicOt,
    /// OT_ε(α, α) (f = g).
    pub xx: EntropicOt,
    /// OT_ε(β, β) (f = g).
    pub yy: EntropicOt,
}

impl Divergence {
    /// A bound on |S_ε − S_ε with all pairs| from the cutoff (0 with all pairs), at convergence:
    /// ε·(B_xy + ½B_xx + ½B_yy) with the problems' [`EntropicOt::truncation_bound`]s.
    pub fn truncation_error(&self) -> f64 {
        self.epsilon * (self.xy.truncation_bound + 0.5 * (self.xx.truncation_bound + self.yy.truncation_bound))
    }
}

/// For every target t: log Σ_s exp(ℓ_s − c(t, y_s)/ε), with ℓ = `log_coeffs` and `inv_eps` = 1/ε.
///
/// The inner loop of log-domain Sinkhorn: with log_coeffs_j = log b_j + g_j/ε the update is
/// f_i = −ε · result_i. Parallel over targets; each target computes its exponents with their
/// maximum subtracted before exponentiating (like [`crate::engine::cpu::log_kernel_sum`]), so
/// nothing underflows however small ε is, and the result does not depend on the thread count.
/// Sources with log_coeffs = −∞ (zero weight) contribute nothing.
pub fn sinkhorn_log_sum(cost: &Cost, targets: &[f64], sources: &[f64], log_coeffs: &[f64], inv_eps: f64) -> Vec<f64> {
    let d = cost.dim();
    targets
        .par_chunks_exact(d)
        .map_init(Vec::new, |exponents, t| {
            // Two passes over a row buffer: the exponents and their maximum, then the sum of
            // exp(e − max) over the terms that can matter (e − max ≥ −LSE_CUTOFF).
            exponents.clear();
            let mut max = f64::NEG_INFINITY;
            for (y, lc) in sources.chunks_exact(d).zip(log_coeffs) {
                let e = lc - cost.eval(t, y) * inv_eps;
                max = max.max(e);
                exponents.push(e);
            }
            if max == f64::NEG_INFINITY {
                return max;
            }
            let floor = max - LSE_CUTOFF;
            let acc: f64 = exponents.iter().filter(|&&e| e >= floor).map(|e| (e - max).exp()).sum();
            max + acc.ln()
        })
        .collect()
}

/// Who computes Sinkhorn's passes: for every target t, log Σ_s exp(ℓ_s − c(t, y_s)/ε) with
/// ℓ = `log_coeffs` and `inv_eps` = 1/ε (see [`sinkhorn_log_sum`]). [`sinkhorn`] and
/// [`sinkhorn_divergence`] use the f64 CPU pass; [`sinkhorn_with`] and
/// [`sinkhorn_divergence_with`] take any, such as the GPU's
/// [`crate::engine::gpu::SinkhornLogSum`].
pub trait LogSum {
    /// The cost the passes use.
    fn cost(&self) -> &Cost;
    /// One pass; targets and sources are flat rows of the cost's dimension.
    fn log_sum(&mut self, targets: &[f64], sources: &[f64], log_coeffs: &[f64], inv_eps: f64) -> Result<Vec<f64>>;
    /// One cutoff pass over the sources in the 3^d cells of `grid` (over `sources`, for the
    /// radius of [`gibbs_kernel`] at `tolerance`) around each target, and the largest relative
    /// truncation bound over the targets (see [`sinkhorn_log_sum_cells`]).
    #[allow(clippy::too_many_arguments)]
    fn log_sum_cells(
        &mut self,
        grid: &CellGrid,
        tolerance: f64,
        targets: &[f64],
        sources: &[f64],
        log_coeffs: &[f64],
        inv_eps: f64,
    ) -> Result<(Vec<f64>, f64)>;
    /// Above how many pairs n·m `Cutoff::Auto` uses cells (the engine's own rule).
    fn auto_cells_above(&self) -> usize {
        CPU_AUTO_CELLS_ABOVE
    }
}

/// The Gibbs kernel e^{−c/ε} as the cell sums' Gaussian, for `inv_eps` = 1/ε: width √(ε/2),
/// unnormalised, the minimum image only (the torus cost is the squared minimum-image distance).
pub fn gibbs_kernel(inv_eps: f64) -> Gaussian {
    Gaussian { width: (0.5 / inv_eps).sqrt(), log_norm: 0.0, images: 0 }
}

/// The cutoff twin of [`sinkhorn_log_sum`]: for every target t, log Σ_{s near t} exp(ℓ_s −
/// c(t, y_s)/ε) over the sources within the 3^d cells of `grid` around t (a grid over `sources`
/// for the radius `Cutoff::radius(&gibbs_kernel(inv_eps), tolerance)`), and each target's
/// relative truncation bound: [`crate::engine::cells::log_kernel_sum_cells`] with the Gibbs kernel.
pub fn sinkhorn_log_sum_cells(
    cost: &Cost,
    grid: &CellGrid,
    tolerance: f64,
    targets: &[f64],
    sources: &[f64],
    log_coeffs: &[f64],
    inv_eps: f64,
) -> (Vec<f64>, Vec<f64>) {
    cells::log_kernel_sum_cells(&cost.space(), &gibbs_kernel(inv_eps), grid, tolerance, targets, sources, log_coeffs)
}

/// The f64 CPU pass: [`sinkhorn_log_sum`], and [`sinkhorn_log_sum_cells`] for a cutoff (what
/// [`sinkhorn`] and [`sinkhorn_divergence`] use).
#[derive(Clone, Copy, Debug)]
pub struct CpuLogSum {
    cost: Cost,
    auto_cells_above: usize,
}

impl CpuLogSum {
    /// The pass for `cost`; `Cutoff::Auto` uses cells above [`CPU_AUTO_CELLS_ABOVE`] pairs.
    pub fn new(cost: &Cost) -> Self {
        CpuLogSum { cost: *cost, auto_cells_above: CPU_AUTO_CELLS_ABOVE }
    }

    /// The same pass with `Cutoff::Auto` using cells above `pairs` pairs (0: at any size).
    pub fn with_auto_cells_above(self, pairs: usize) -> Self {
        CpuLogSum { auto_cells_above: pairs, ..self }
    }
}

impl LogSum for CpuLogSum {
    fn cost(&self) -> &Cost {
        &self.cost
    }

    fn log_sum(&mut self, targets: &[f64], sources: &[f64], log_coeffs: &[f64], inv_eps: f64) -> Result<Vec<f64>> {
        Ok(sinkhorn_log_sum(&self.cost, targets, sources, log_coeffs, inv_eps))
    }

    fn log_sum_cells(
        &mut self,
        grid: &CellGrid,
        tolerance: f64,
        targets: &[f64],
        sources: &[f64],
        log_coeffs: &[f64],
        inv_eps: f64,
    ) -> Result<(Vec<f64>, f64)> {
        let (values, bounds) =
            sinkhorn_log_sum_cells(&self.cost, grid, tolerance, targets, sources, log_coeffs, inv_eps);
        // A NaN bound (none is expected) counts as unbounded.
        let largest = bounds.iter().fold(0.0f64, |m, b| if b.is_nan() { f64::INFINITY } else { m.max(*b) });
        Ok((values, largest))
    }

    fn auto_cells_above(&self) -> usize {
        self.auto_cells_above
    }
}

/// Terms of a log-sum-exp more than this below its largest term are skipped: e^−50 ≈ 2e-22,
/// so even a million of them change the sum by less than 1e-15 relative.
const LSE_CUTOFF: f64 = 50.0;

/// One of a problem's two clouds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cloud {
    X,
    Y,
}

/// The passes of one solve: all pairs, or cell sums with their bound tracked.
struct Passes<'s> {
    sum: &'s mut dyn LogSum,
    /// (δ, max_error) where the solve uses cells.
    cells: Option<(f64, f64)>,
    /// The ε the grids were built for, and the grids over x and y (one geometry), `None` where
    /// cells would not save work at that ε.
    grids: Option<(f64, Option<Vec<CellGrid>>)>,
    /// The largest bound of the cell passes since the last [`Passes::reset`].
    bound: f64,
    /// Whether the last pass used cells.
    on_cells: bool,
    /// Set (to ∞) when a cell pass left a target without mass: the pass then returns an error
    /// and the solve is given up.
    abandoned: Option<f64>,
}

impl<'s> Passes<'s> {
    fn new(sum: &'s mut dyn LogSum, cells: Option<(f64, f64)>) -> Self {
        Passes { sum, cells, grids: None, bound: 0.0, on_cells: false, abandoned: None }
    }

    fn reset(&mut self) {
        self.bound = 0.0;
    }

    /// The bound of the passes since the last reset, 0 if they summed all pairs.
    fn bound(&self) -> f64 {
        if self.on_cells { self.bound } else { 0.0 }
    }

    /// The Sinkhorn update (a soft c-transform) of the potential `p` on cloud `from` (weights
    /// `log_w`): h_i = −ε log Σ_j w_j exp((p_j − C_ij)/ε) for each point i of cloud `to`.
    fn update(
        &mut self,
        problem: &Problem,
        to: Cloud,
        from: Cloud,
        log_w: &[f64],
        p: &[f64],
        eps: f64,
    ) -> Result<Vec<f64>> {
        let coeffs: Vec<f64> = log_w.iter().zip(p).map(|(lw, p)| lw + p / eps).collect();
        let (targets, sources) = (problem.points(to), problem.points(from));
        let inv_eps = 1.0 / eps;
        let logs = match self.cells {
            None => self.sum.log_sum(targets, sources, &coeffs, inv_eps)?,
            Some((tolerance, _)) => {
                if self.grids.as_ref().is_none_or(|(e, _)| *e != eps) {
                    let radius = Cutoff::radius(&gibbs_kernel(inv_eps), tolerance);
                    self.grids = Some((eps, CellGrid::shared(&problem.cost.space(), &[problem.x, problem.y], radius)));
                }
                match self.grids.as_ref().and_then(|(_, g)| g.as_ref()) {
                    None => {
                        self.on_cells = false;
                        self.sum.log_sum(targets, sources, &coeffs, inv_eps)?
                    }
                    Some(grids) => {
                        let grid = &grids[if from == Cloud::X { 0 } else { 1 }];
                        let (logs, bound) =
                            self.sum.log_sum_cells(grid, tolerance, targets, sources, &coeffs, inv_eps)?;
                        if logs.iter().any(|l| !l.is_finite()) {
                            self.abandoned = Some(f64::INFINITY);
                            return Err(Error::invalid("cutoff", "an empty cell sum", "mass near every target"));
                        }
                        self.on_cells = true;
                        // A bound that overflows (or a NaN one) is only large.
                        self.bound = if bound.is_nan() { f64::INFINITY } else { self.bound.max(bound) };
                        logs
                    }
                }
            }
        };
        Ok(logs.into_iter().map(|l| -eps * l).collect())
    }
}

/// (⟨π, 1⟩ − 1, ‖π 1 − a‖₁) for the plan of (f, g), given f̃ = the update of f from g: the plan's
/// row sums are a_i exp((f_i − f̃_i)/ε).
fn row_error(a: &[f64], f: &[f64], f_next: &[f64], eps: f64) -> (f64, f64) {
    let rows: Vec<f64> = a
        .iter()
        .zip(f)
        .zip(f_next)
        .map(|((a, f), fn_)| if *a > 0.0 { a * ((f - fn_) / eps).exp() } else { 0.0 })
        .collect();
    let errs: Vec<f64> = rows.iter().zip(a).map(|(r, a)| (r - a).abs()).collect();
    (pairwise_sum(&rows) - 1.0, pairwise_sum(&errs))
}

fn dot(a: &[f64], f: &[f64]) -> f64 {
    let t: Vec<f64> = a.iter().zip(f).map(|(a, f)| if *a > 0.0 { a * f } else { 0.0 }).collect();
    pairwise_sum(&t)
}

/// The over-relaxation factor ω of f ← f + ω(T f − f), adapted from the observed convergence.
///
/// Alternating Sinkhorn is block Gauss–Seidel on a 2-cyclic (bipartite) system, so Young's SOR
/// theory applies to its linearisation (Lehmann et al., "A note on overrelaxation in the
/// Sinkhorn algorithm", 2022): if plain Sinkhorn contracts by θ = μ² per iteration, the optimal
/// ω* = 2/(1 + √(1 − μ²)) contracts by ω* − 1 ≈ 1 − 2√(1 − θ), turning ~1/(1 − θ) iterations into
/// ~1/√(1 − θ). μ is estimated from the error's decay r over a window at the current ω, via
/// √r = (ωμ + √(ω²μ² − 4(ω − 1)))/2, i.e. μ = (r + ω − 1)/(ω √r) (which returns ω itself once
/// ω ≥ ω*). The error is measured every [`Relaxation::CHECK_EVERY`] iterations on a plan whose
/// g was updated plainly, so measurements at different ω compare; the first one after a change
/// of ω is not used. If the error does not fall over a window, ω backs off halfway to 1 and
/// never exceeds that again.
struct Relaxation {
    omega: f64,
    ceiling: f64,
    last_err: f64,
    /// Whether the last check came right after a change of ω (and so is not compared).
    fresh: bool,
}

impl Relaxation {
    /// Iterations between measurements of the marginal error (each costs one extra pass).
    const CHECK_EVERY: usize = 10;
    /// The largest ω used (ω → 2 is the stability limit).
    const MAX_OMEGA: f64 = 1.95;

    fn new() -> Self {
        Relaxation { omega: 1.0, ceiling: Self::MAX_OMEGA, last_err: f64::NAN, fresh: true }
    }

    /// Takes the marginal error measured now and adapts ω for the next iterations.
    fn observe(&mut self, err: f64) {
        if self.fresh {
            self.fresh = false;
            self.last_err = err;
            return;
        }
        let r = (err / self.last_err).powf(1.0 / Self::CHECK_EVERY as f64);
        self.last_err = err;
        let omega = if r.is_finite() && r < 1.0 {
            let mu = ((r + self.omega - 1.0) / (self.omega * r.sqrt())).min(1.0);
            (2.0 / (1.0 + (1.0 - mu * mu).sqrt())).min(self.ceiling)
        } else {
            // No progress: back off, and never go as high again.
            self.ceiling = 1.0 + 0.5 * (self.omega - 1.0);
            self.ceiling
        };
        if (omega - self.omega).abs() > 0.01 {
            self.omega = omega;
            self.fresh = true;
        }
    }
}

/// The ε-scaling schedule: ε₀, ε₀·q, ε₀·q², … while above the target, then the target.
fn schedule(start: f64, target: f64, scaling: f64) -> Vec<f64> {
    let mut eps = vec![];
    let mut e = start;
    while e > target {
        eps.push(e);
        e *= scaling;
    }
    eps.push(target);
    eps
}

/// A validated problem: weights normalised, logs taken, ε and the annealing start fixed.
struct Problem<'a> {
    cost: Cost,
    x: &'a [f64],
    y: &'a [f64],
    a: Vec<f64>,
    b: Vec<f64>,
    log_a: Vec<f64>,
    log_b: Vec<f64>,
}

impl<'a> Problem<'a> {
    fn new(cost: &Cost, x: &'a [f64], wx: &[f64], y: &'a [f64], wy: &[f64]) -> Result<Self> {
        let d = cost.dim();
        let n = check_points("x", x, d)?;
        let m = check_points("y", y, d)?;
        let a = normalised_weights("wx", wx, n)?;
        let b = normalised_weights("wy", wy, m)?;
        let log_a = a.iter().map(|w| w.ln()).collect();
        let log_b = b.iter().map(|w| w.ln()).collect();
        Ok(Problem { cost: *cost, x, y, a, b, log_a, log_b })
    }

    /// ⟨C, α ⊗ β⟩.
    fn mean_cost(&self) -> f64 {
        let d = self.cost.dim();
        let rows: Vec<f64> = self
            .x
            .par_chunks_exact(d)
            .zip(&self.a)
            .map(|(xi, ai)| {
                let t: Vec<f64> =
                    self.y.chunks_exact(d).zip(&self.b).map(|(yj, bj)| bj * self.cost.eval(xi, yj)).collect();
                ai * pairwise_sum(&t)
            })
            .collect();
        pairwise_sum(&rows)
    }

    fn target_epsilon(&self, options: &SinkhornOptions) -> f64 {
        options.epsilon.unwrap_or_else(|| {
            let mean = self.mean_cost();
            // Identical one-point clouds have mean cost 0: any ε gives OT_ε = 0 there.
            if mean > 0.0 { DEFAULT_EPSILON_RATIO * mean } else { 1.0 }
        })
    }

    fn start_epsilon(&self, target: f64) -> f64 {
        self.cost.diameter_squared(self.x, self.y).max(target)
    }

    fn points(&self, cloud: Cloud) -> &'a [f64] {
        match cloud {
            Cloud::X => self.x,
            Cloud::Y => self.y,
        }
    }

    /// Σ_i ρ_i t_i for the returned plan of a cell solve: t_i = S_i/S̃_i − 1 the relative part of
    /// row i's sum S_i = Σ_j b_j e^{(g_j − C_ij)/ε} that the cells dropped, measured by one all-pairs
    /// pass, and ρ_i = a_i e^{f_i/ε} S̃_i the plan's row sums. The all-pairs dual objective at the
    /// returned potentials is the value − ε·Σ_i ρ_i t_i, a lower bound on OT_ε.
    fn measured_truncation(&self, passes: &mut Passes, symmetric: bool, ot: &EntropicOt) -> Result<f64> {
        let (from, log_w) = if symmetric { (Cloud::X, &self.log_a) } else { (Cloud::Y, &self.log_b) };
        let eps = ot.epsilon;
        let cut = passes.update(self, Cloud::X, from, log_w, &ot.g, eps)?;
        let all = Passes::new(&mut *passes.sum, None).update(self, Cloud::X, from, log_w, &ot.g, eps)?;
        let terms: Vec<f64> = self
            .a
            .iter()
            .zip(&ot.f)
            .zip(cut.iter().zip(&all))
            .map(
                |((a, f), (c, h))| {
                    if *a > 0.0 { a * ((f - c) / eps).exp() * ((c - h) / eps).exp_m1().max(0.0) } else { 0.0 }
                },
            )
            .collect();
        Ok(pairwise_sum(&terms))
    }

    /// [`Problem::solve`] (or, `symmetric`, [`Problem::solve_symmetric`]) with the cutoff of
    /// `options`: on cells where it asks for them, falling back to all pairs (`Auto`) or failing
    /// (`Tolerance`) where the returned plan's bound exceeds max_error or a pass is given up.
    fn solve_cut(
        &self,
        sum: &mut dyn LogSum,
        symmetric: bool,
        eps: f64,
        start: f64,
        options: &SinkhornOptions,
    ) -> Result<EntropicOt> {
        let pairs = self.a.len() * if symmetric { self.a.len() } else { self.b.len() };
        let cells = match options.cutoff {
            Cutoff::Auto if pairs <= sum.auto_cells_above() => None,
            cutoff => cutoff.parameters(),
        };
        let run = |passes: &mut Passes, start: f64| {
            if symmetric {
                self.solve_symmetric(passes, eps, start, options)
            } else {
                self.solve(passes, eps, start, options)
            }
        };
        // With cells, the annealing starts at the largest ε of its schedule where a grid saves
        // work: the levels above it would each cost two all-pairs passes (at N = 16384, more
        // than all the cell passes of the solve) and only warm-start the next level.
        let cell_start = cells.map_or(start, |(tolerance, _)| {
            let space = self.cost.space();
            let radius_at = |e: f64| Cutoff::radius(&gibbs_kernel(1.0 / e), tolerance);
            schedule(start, eps, options.scaling)
                .into_iter()
                .find(|e| CellGrid::shared(&space, &[self.x, self.y], radius_at(*e)).is_some())
                .unwrap_or(start)
        });
        let mut passes = Passes::new(sum, cells);
        let result = run(&mut passes, cell_start);
        let Some((_, max_error)) = cells else { return result };
        let bound = match (result, passes.abandoned) {
            (Ok(mut ot), _) => {
                // Σ_i ρ_i·bound_i ≤ the largest bound × Σ_i ρ_i, and Σ_i ρ_i ≤ 1 + the marginal error.
                ot.truncation_bound *= 1.0 + ot.marginal_error;
                if ot.truncation_bound <= max_error {
                    return Ok(ot);
                }
                // The cells' bound charges all far mass at the cutoff radius, which the potentials'
                // growth e^{g/ε} across the domain can swamp: measure what was dropped instead.
                ot.truncation_bound = self.measured_truncation(&mut passes, symmetric, &ot)?;
                ot.truncation_measured = true;
                if ot.truncation_bound <= max_error {
                    return Ok(ot);
                }
                ot.truncation_bound
            }
            (Err(_), Some(bound)) => bound,
            (Err(e), None) => return Err(e),
        };
        if options.cutoff != Cutoff::Auto {
            let why = if bound.is_finite() { "" } else { " (a point whose neighbourhood holds no mass)" };
            let place = format!("Sinkhorn's plan at ε = {eps:.3e}{why}");
            return Err(cells::cutoff_error("cutoff", bound, &place, max_error, "Cutoff::None"));
        }
        let mut ot = run(&mut Passes::new(passes.sum, None), start)?;
        ot.fell_back = Some(bound);
        Ok(ot)
    }

    /// Alternating Sinkhorn between α (x, a) and β (y, b), over-relaxed at the target ε.
    fn solve(&self, sum: &mut Passes, eps: f64, start: f64, options: &SinkhornOptions) -> Result<EntropicOt> {
        let Problem { a, b, log_a, log_b, .. } = self;
        let (x, y) = (Cloud::X, Cloud::Y);
        let mut f = vec![0.0; a.len()];
        let levels = schedule(start, eps, options.scaling);
        let mut iterations = 0;
        for &e in &levels[..levels.len() - 1] {
            let g = sum.update(self, y, x, log_a, &f, e)?;
            f = sum.update(self, x, y, log_b, &g, e)?;
            iterations += 1;
            if iterations >= options.max_iterations {
                break;
            }
        }
        let mut relax = Relaxation::new();
        let mut g = sum.update(self, y, x, log_a, &f, eps)?;
        loop {
            let f_next = sum.update(self, x, y, log_b, &g, eps)?;
            iterations += 1;
            let omega = relax.omega;
            f.iter_mut().zip(&f_next).for_each(|(f, t)| *f += omega * (t - *f));
            sum.reset();
            let g_next = sum.update(self, y, x, log_a, &f, eps)?;
            let out_of_budget = iterations >= options.max_iterations;
            if iterations % Relaxation::CHECK_EVERY == 0 || out_of_budget {
                // The plan (f, g_next) has exact column sums; one more pass gives its row sums.
                let probe = sum.update(self, x, y, log_b, &g_next, eps)?;
                let (mass_err, err) = row_error(a, &f, &probe, eps);
                let converged = err < options.tolerance;
                if converged || out_of_budget {
                    let value = dot(a, &f) + dot(b, &g_next) - eps * mass_err;
                    return Ok(EntropicOt {
                        value,
                        f,
                        g: g_next,
                        epsilon: eps,
                        iterations,
                        marginal_error: err,
                        converged,
                        truncation_bound: sum.bound(),
                        truncation_measured: false,
                        fell_back: None,
                    });
                }
                relax.observe(err);
            }
            g.iter_mut().zip(&g_next).for_each(|(g, t)| *g += omega * (t - *g));
        }
    }

    /// Symmetric Sinkhorn for OT_ε(α, α) with the averaged update p ← ½(p + T(p)).
    fn solve_symmetric(&self, sum: &mut Passes, eps: f64, start: f64, options: &SinkhornOptions) -> Result<EntropicOt> {
        let Problem { a, log_a, .. } = self;
        let x = Cloud::X;
        let mut p = vec![0.0; a.len()];
        let levels = schedule(start, eps, options.scaling);
        let mut iterations = 0;
        for &e in &levels[..levels.len() - 1] {
            let t = sum.update(self, x, x, log_a, &p, e)?;
            p.iter_mut().zip(&t).for_each(|(p, t)| *p = 0.5 * (*p + t));
            iterations += 1;
            if iterations >= options.max_iterations {
                break;
            }
        }
        loop {
            sum.reset();
            let t = sum.update(self, x, x, log_a, &p, eps)?;
            iterations += 1;
            let (mass_err, err) = row_error(a, &p, &t, eps);
            let converged = err < options.tolerance;
            if converged || iterations >= options.max_iterations {
                let value = 2.0 * dot(a, &p) - eps * mass_err;
                return Ok(EntropicOt {
                    value,
                    g: p.clone(),
                    f: p,
                    epsilon: eps,
                    iterations,
                    marginal_error: err,
                    converged,
                    truncation_bound: sum.bound(),
                    truncation_measured: false,
                    fell_back: None,
                });
            }
            p.iter_mut().zip(&t).for_each(|(p, t)| *p = 0.5 * (*p + t));
        }
    }

    fn swapped(&self) -> Problem<'a> {
        Problem {
            cost: self.cost,
            x: self.y,
            y: self.x,
            a: self.b.clone(),
            b: self.a.clone(),
            log_a: self.log_b.clone(),
            log_b: self.log_a.clone(),
        }
    }
}

/// Entropic OT_ε between Σ_i wx_i δ_{x_i} and Σ_j wy_j δ_{y_j} by log-domain Sinkhorn with
/// ε-scaling (see [`SinkhornOptions`] for the regularisation, schedule and stopping rule).
///
/// Weights are normalised; errors ([`Error::Invalid`]) name `x`, `y`, `wx`, `wy` or the option.
/// Each iteration costs two n × m passes of [`sinkhorn_log_sum`], parallel over rows (or of
/// [`sinkhorn_log_sum_cells`] with a cutoff).
pub fn sinkhorn(
    cost: &Cost,
    x: &[f64],
    wx: &[f64],
    y: &[f64],
    wy: &[f64],
    options: &SinkhornOptions,
) -> Result<EntropicOt> {
    sinkhorn_with(&mut CpuLogSum::new(cost), x, wx, y, wy, options)
}

/// [`sinkhorn`] with its passes computed by `pass` (whose cost it uses): on the GPU with
/// [`crate::engine::gpu::SinkhornLogSum`]. The potentials and the iteration stay in f64.
///
/// On the GPU, f32 limits the plan's marginals, not the value: each log-sum carries an absolute
/// error of about 6e-8 × the exponents' magnitude (|g|/ε plus the costs over ε), so the
/// row-marginal error stalls near that level. Use a `tolerance` of at least [`GPU_TOLERANCE`]
/// (below it the solver may run to `max_iterations`); the value, a dual objective stationary at
/// the optimum, is then still accurate to second order.
pub fn sinkhorn_with(
    pass: &mut dyn LogSum,
    x: &[f64],
    wx: &[f64],
    y: &[f64],
    wy: &[f64],
    options: &SinkhornOptions,
) -> Result<EntropicOt> {
    options.check()?;
    let problem = Problem::new(pass.cost(), x, wx, y, wy)?;
    let eps = problem.target_epsilon(options);
    problem.solve_cut(pass, false, eps, problem.start_epsilon(eps), options)
}

/// The debiased Sinkhorn divergence S_ε(α, β) = OT_ε(α, β) − ½ OT_ε(α, α) − ½ OT_ε(β, β)
/// (Feydy et al. 2019), an estimate of W₂² without the entropic bias ε·KL: it is ≥ 0, zero for
/// α = β, and tends to W₂² as ε → 0.
///
/// All three problems use the same ε (by default [`DEFAULT_EPSILON_RATIO`] × the mean cost of
/// α ⊗ β) and the same annealing start (the squared diameter of both clouds together); the
/// symmetric ones use the averaged update p ← ½(p + T(p)), which converges in few iterations.
pub fn sinkhorn_divergence(
    cost: &Cost,
    x: &[f64],
    wx: &[f64],
    y: &[f64],
    wy: &[f64],
    options: &SinkhornOptions,
) -> Result<Divergence> {
    sinkhorn_divergence_with(&mut CpuLogSum::new(cost), x, wx, y, wy, options)
}

/// [`sinkhorn_divergence`] with its passes computed by `pass` (see [`sinkhorn_with`] for what the
/// GPU's f32 passes limit). The three problems share the pass (on the GPU: one pipeline).
pub fn sinkhorn_divergence_with(
    pass: &mut dyn LogSum,
    x: &[f64],
    wx: &[f64],
    y: &[f64],
    wy: &[f64],
    options: &SinkhornOptions,
) -> Result<Divergence> {
    options.check()?;
    let problem = Problem::new(pass.cost(), x, wx, y, wy)?;
    let eps = problem.target_epsilon(options);
    let start = problem.start_epsilon(eps);
    let xy = problem.solve_cut(pass, false, eps, start, options)?;
    let xx = problem.solve_cut(pass, true, eps, start, options)?;
    let yy = problem.swapped().solve_cut(pass, true, eps, start, options)?;
    let value = xy.value - 0.5 * (xx.value + yy.value);
    Ok(Divergence { value, epsilon: eps, xy, xx, yy })
}
