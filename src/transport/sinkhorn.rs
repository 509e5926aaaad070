//! Entropic OT by log-domain Sinkhorn with ε-scaling, and the debiased Sinkhorn divergence.
//!
//! For weights a, b and cost C, OT_ε(α, β) = min_π ⟨C, π⟩ + ε KL(π | α ⊗ β) over couplings π.
//! Its dual potentials (f, g) solve f_i = −ε log Σ_j b_j exp((g_j − C_ij)/ε) and the same with
//! the roles swapped; the plan is π_ij = a_i b_j exp((f_i + g_j − C_ij)/ε). Every update is one
//! N × M log-sum-exp pass behind the [`LogSum`] trait: [`sinkhorn_log_sum`] on the CPU in f64,
//! or its GPU twin [`crate::engine::gpu::SinkhornLogSum`] in f32.

use super::{Cost, check_points, normalised_weights};
use crate::engine::pairwise_sum;
use crate::error::{Error, Result};
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

/// How [`sinkhorn`] and [`sinkhorn_divergence`] iterate.
///
/// **Schedule (ε-scaling).** Starting from ε₀ = the squared diameter of the two clouds' bounding
/// box (a bound on every cost, where one iteration nearly converges), ε is multiplied by
/// `scaling` after each iteration until it reaches the target ε; the potentials are carried from
/// one ε to the next. That takes ⌈log(ε₀/ε)/log(1/scaling)⌉ annealing iterations.
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
}

impl Default for SinkhornOptions {
    fn default() -> Self {
        SinkhornOptions { epsilon: None, scaling: 0.5, tolerance: 1e-6, max_iterations: 10_000 }
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
        Ok(())
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
}

/// The f64 CPU pass, [`sinkhorn_log_sum`].
struct CpuLogSum(Cost);

impl LogSum for CpuLogSum {
    fn cost(&self) -> &Cost {
        &self.0
    }

    fn log_sum(&mut self, targets: &[f64], sources: &[f64], log_coeffs: &[f64], inv_eps: f64) -> Result<Vec<f64>> {
        Ok(sinkhorn_log_sum(&self.0, targets, sources, log_coeffs, inv_eps))
    }
}

/// Terms of a log-sum-exp more than this below its largest term are skipped: e^−50 ≈ 2e-22,
/// so even a million of them change the sum by less than 1e-15 relative.
const LSE_CUTOFF: f64 = 50.0;

/// The Sinkhorn update (a soft c-transform): h_i = −ε log Σ_j w_j exp((p_j − C_ij)/ε) for each
/// target i.
fn update(
    sum: &mut dyn LogSum,
    targets: &[f64],
    sources: &[f64],
    log_w: &[f64],
    p: &[f64],
    eps: f64,
) -> Result<Vec<f64>> {
    let coeffs: Vec<f64> = log_w.iter().zip(p).map(|(lw, p)| lw + p / eps).collect();
    Ok(sum.log_sum(targets, sources, &coeffs, 1.0 / eps)?.into_iter().map(|l| -eps * l).collect())
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

    /// Alternating Sinkhorn between α (x, a) and β (y, b), over-relaxed at the target ε.
    fn solve(&self, sum: &mut dyn LogSum, eps: f64, start: f64, options: &SinkhornOptions) -> Result<EntropicOt> {
        let Problem { x, y, a, b, log_a, log_b, .. } = self;
        let mut f = vec![0.0; a.len()];
        let levels = schedule(start, eps, options.scaling);
        let mut iterations = 0;
        for &e in &levels[..levels.len() - 1] {
            let g = update(sum, y, x, log_a, &f, e)?;
            f = update(sum, x, y, log_b, &g, e)?;
            iterations += 1;
            if iterations >= options.max_iterations {
                break;
            }
        }
        let mut relax = Relaxation::new();
        let mut g = update(sum, y, x, log_a, &f, eps)?;
        loop {
            let f_next = update(sum, x, y, log_b, &g, eps)?;
            iterations += 1;
            let omega = relax.omega;
            f.iter_mut().zip(&f_next).for_each(|(f, t)| *f += omega * (t - *f));
            let g_next = update(sum, y, x, log_a, &f, eps)?;
            let out_of_budget = iterations >= options.max_iterations;
            if iterations % Relaxation::CHECK_EVERY == 0 || out_of_budget {
                // The plan (f, g_next) has exact column sums; one more pass gives its row sums.
                let probe = update(sum, x, y, log_b, &g_next, eps)?;
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
                    });
                }
                relax.observe(err);
            }
            g.iter_mut().zip(&g_next).for_each(|(g, t)| *g += omega * (t - *g));
        }
    }

    /// Symmetric Sinkhorn for OT_ε(α, α) with the averaged update p ← ½(p + T(p)).
    fn solve_symmetric(
        &self,
        sum: &mut dyn LogSum,
        eps: f64,
        start: f64,
        options: &SinkhornOptions,
    ) -> Result<EntropicOt> {
        let Problem { x, a, log_a, .. } = self;
        let mut p = vec![0.0; a.len()];
        let levels = schedule(start, eps, options.scaling);
        let mut iterations = 0;
        for &e in &levels[..levels.len() - 1] {
            let t = update(sum, x, x, log_a, &p, e)?;
            p.iter_mut().zip(&t).for_each(|(p, t)| *p = 0.5 * (*p + t));
            iterations += 1;
            if iterations >= options.max_iterations {
                break;
            }
        }
        loop {
            let t = update(sum, x, x, log_a, &p, eps)?;
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
/// Each iteration costs two n × m passes of [`sinkhorn_log_sum`], parallel over rows.
pub fn sinkhorn(
    cost: &Cost,
    x: &[f64],
    wx: &[f64],
    y: &[f64],
    wy: &[f64],
    options: &SinkhornOptions,
) -> Result<EntropicOt> {
    sinkhorn_with(&mut CpuLogSum(*cost), x, wx, y, wy, options)
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
    problem.solve(pass, eps, problem.start_epsilon(eps), options)
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
    sinkhorn_divergence_with(&mut CpuLogSum(*cost), x, wx, y, wy, options)
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
    let xy = problem.solve(pass, eps, start, options)?;
    let xx = problem.solve_symmetric(pass, eps, start, options)?;
    let yy = problem.swapped().solve_symmetric(pass, eps, start, options)?;
    let value = xy.value - 0.5 * (xx.value + yy.value);
    Ok(Divergence { value, epsilon: eps, xy, xx, yy })
}
