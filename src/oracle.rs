//! Closed-form solutions of SPEC §7, used as test oracles and as the exact reference system of
//! SPEC §4 where μ_t is known.
//!
//! - T1 ([`tempering_log_weights`], [`tempering_log_weights_for`]): linear F, KL, no kernel — the
//!   weights are a tempering of μ*/μ₀ with exponent 1 − e^{−σt}.
//! - T2 ([`GaussianFlow`]): Gaussian π, quadratic U and Gaussian μ₀ under the kernelized variants
//!   A/D and B/D′ — the flow stays Gaussian and its precision and mean solve a 2-dimensional ODE,
//!   integrated here with fine fixed-step RK4.
//! - T3 ([`GibbsTempering`]): the unkernelized Gaussian case in closed form (the ε → 0 limit of T2).

use crate::error::{Error, Result};
use crate::model::{Energy, Model};
use crate::particles::Particles;
use crate::stepper::normalise;

/// The tempering exponent 1 − e^{−σt} of SPEC §7 T1 (computed without cancellation for small σt).
pub fn tempering_exponent(sigma: f64, t: f64) -> f64 {
    -(-sigma * t).exp_m1()
}

/// SPEC §7 T1: the normalised log-weights log w_i(t) of the unkernelized flow with linear F = ∫U dm
/// and KL, for particles drawn from μ₀ with uniform initial weights.
///
/// `log_ratio[i]` is log μ*(X_i) − log μ₀(X_i) up to a common constant, with μ* ∝ π e^{−U/σ}
/// (see [`tempering_log_ratio`]). Returns log w_i(t) = (1 − e^{−σt}) · log_ratio\[i\] − log Z(t),
/// with Z(t) making Σ_i w_i(t) = 1.
pub fn tempering_log_weights(log_ratio: &[f64], sigma: f64, t: f64) -> Vec<f64> {
    let beta = tempering_exponent(sigma, t);
    let mut lw: Vec<f64> = log_ratio.iter().map(|r| beta * r).collect();
    normalise(&mut lw);
    lw
}

/// log μ*(X_i) − log μ₀(X_i) up to a constant, from the model's pieces at the particles:
/// log π(X_i) − U(X_i)/σ − log μ₀(X_i) (SPEC §7 T1, μ* ∝ π e^{−U/σ}).
///
/// All three slices have one entry per particle; σ must be > 0.
pub fn tempering_log_ratio(potential: &[f64], log_reference: &[f64], log_initial: &[f64], sigma: f64) -> Vec<f64> {
    potential.iter().zip(log_reference).zip(log_initial).map(|((u, lp), l0)| lp - u / sigma - l0).collect()
}

/// SPEC §7 T1 for a model and its particles: [`tempering_log_weights`] with U the sum of the
/// model's potential terms, log π its reference and log μ₀ the particles' initial density.
///
/// Fails when F is not linear (an energy term other than [`Energy::Potential`]), when σ = 0, or when
/// the particles have no known initial density.
pub fn tempering_log_weights_for(model: &Model, particles: &Particles, t: f64) -> Result<Vec<f64>> {
    if model.energy.iter().any(|e| !matches!(e, Energy::Potential(_))) {
        return Err(Error::invalid("energy", "a non-linear term", "potential terms only (T1 needs a linear F)"));
    }
    if !(model.sigma.is_finite() && model.sigma > 0.0) {
        return Err(Error::invalid("sigma", model.sigma, "a finite number > 0 (T1 tempers towards π e^{−U/σ})"));
    }
    let log_initial = particles.log_initial_density.as_deref().ok_or_else(|| {
        Error::invalid("particles", "given positions", "particles drawn from μ₀ (T1 needs log μ₀(X_i))")
    })?;
    let space = &model.space;
    let n = particles.len();
    let mut potential = vec![0.0; n];
    let mut log_reference = vec![0.0; n];
    for i in 0..n {
        let x = particles.position(i);
        log_reference[i] = model.reference.log_density(space, x);
        potential[i] = model
            .energy
            .iter()
            .map(|e| match e {
                Energy::Potential(u) => u.value(space, x),
                _ => 0.0,
            })
            .sum();
    }
    let ratio = tempering_log_ratio(&potential, &log_reference, log_initial, model.sigma);
    Ok(tempering_log_weights(&ratio, model.sigma, t))
}

/// log N(x; mean, var) in one dimension.
fn log_normal_1d(x: f64, mean: f64, var: f64) -> f64 {
    -0.5 * (x - mean).powi(2) / var - 0.5 * (std::f64::consts::TAU * var).ln()
}

/// SPEC §7 T2: the kernelized flow of a Gaussian problem, per coordinate (isotropic in d).
///
/// π = N(0, τ²), U(x) = λ|x − b|²/2, μ₀ = N(m₀, s₀²), kernel variance ε². The flow stays Gaussian,
/// μ_t = N(m_t, 1/P_t) per coordinate, and with c = P/(1 + ε²P), Q = P m:
///
/// - variants A and D (`smoothed_target = false`): dP/dt = λ + σ (1/τ² − c), dQ/dt = λ b − σ c m;
/// - variants B and D′ (`smoothed_target = true`): dP/dt = λ + σ (1/(τ² + ε²) − c), same dQ/dt.
///
/// The ODE is integrated by fixed-step RK4 from 0 to t with a step h ≤ 10⁻³ and σh ≤ 10⁻³. The
/// right-hand side's Lipschitz constant in (P, Q) is at most σ, so the global error is
/// O((σh)⁴ σt) ≈ 10⁻¹² σt: far below the 10⁻¹⁰ the tests need. The cost is O(max(1, σ) t / 10⁻³).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GaussianFlow {
    /// λ ≥ 0, the strength of the quadratic potential (0: F = 0).
    pub lambda: f64,
    /// b, the centre of the potential (the same in every coordinate).
    pub b: f64,
    /// τ², the variance of π = N(0, τ²).
    pub tau2: f64,
    /// ε², the kernel's variance.
    pub eps2: f64,
    /// σ > 0.
    pub sigma: f64,
    /// m₀, the mean of μ₀ in every coordinate.
    pub m0: f64,
    /// s₀², the variance of μ₀.
    pub s0_2: f64,
    /// `true` for variants B and D′ (compared against K_ε π), `false` for A and D.
    pub smoothed_target: bool,
}

impl GaussianFlow {
    /// The largest RK4 step, and the largest σ·h.
    const MAX_STEP: f64 = 1e-3;

    /// 1/τ² for A and D, 1/(τ² + ε²) for B and D′: the precision that the flow compares c against.
    fn target_precision(&self) -> f64 {
        if self.smoothed_target { 1.0 / (self.tau2 + self.eps2) } else { 1.0 / self.tau2 }
    }

    /// The right-hand side (dP/dt, dQ/dt) at (P, Q).
    fn rhs(&self, p: f64, q: f64) -> (f64, f64) {
        let c = p / (1.0 + self.eps2 * p);
        let m = q / p;
        (self.lambda + self.sigma * (self.target_precision() - c), self.lambda * self.b - self.sigma * c * m)
    }

    /// (P_t, Q_t): the precision and the precision times the mean at time t ≥ 0.
    pub fn precision_and_shift(&self, t: f64) -> (f64, f64) {
        let steps = (t * self.sigma.abs().max(1.0) / Self::MAX_STEP).ceil().max(1.0) as u64;
        self.rk4(t, steps)
    }

    /// RK4 from (1/s₀², m₀/s₀²) over [0, t] in `steps` equal steps.
    fn rk4(&self, t: f64, steps: u64) -> (f64, f64) {
        let p0 = 1.0 / self.s0_2;
        let (mut p, mut q) = (p0, p0 * self.m0);
        if t <= 0.0 {
            return (p, q);
        }
        let h = t / steps as f64;
        for _ in 0..steps {
            let k1 = self.rhs(p, q);
            let k2 = self.rhs(p + 0.5 * h * k1.0, q + 0.5 * h * k1.1);
            let k3 = self.rhs(p + 0.5 * h * k2.0, q + 0.5 * h * k2.1);
            let k4 = self.rhs(p + h * k3.0, q + h * k3.1);
            p += h / 6.0 * (k1.0 + 2.0 * k2.0 + 2.0 * k3.0 + k4.0);
            q += h / 6.0 * (k1.1 + 2.0 * k2.1 + 2.0 * k3.1 + k4.1);
        }
        (p, q)
    }

    /// (m_t, 1/P_t): the mean and the variance of every coordinate of μ_t.
    pub fn at(&self, t: f64) -> (f64, f64) {
        let (p, q) = self.precision_and_shift(t);
        (q / p, 1.0 / p)
    }

    /// log μ_t(x) = Σ_k log N(x_k; m_t, 1/P_t), for a point x of any dimension.
    pub fn log_density(&self, t: f64, x: &[f64]) -> f64 {
        let (m, v) = self.at(t);
        x.iter().map(|xk| log_normal_1d(*xk, m, v)).sum()
    }

    /// log μ₀(x) = Σ_k log N(x_k; m₀, s₀²).
    pub fn log_initial_density(&self, x: &[f64]) -> f64 {
        x.iter().map(|xk| log_normal_1d(*xk, self.m0, self.s0_2)).sum()
    }

    /// The non-interacting reference system of SPEC §4 in closed form: the normalised log-weights
    /// log w̄_i(t), w̄_i(t) ∝ N(X_i; m_t, 1/P_t) / N(X_i; m₀, s₀²), for N × d row-major positions.
    pub fn reference_log_weights(&self, t: f64, positions: &[f64], d: usize) -> Vec<f64> {
        let (m, v) = self.at(t);
        let mut lw: Vec<f64> = positions
            .chunks_exact(d)
            .map(|x| x.iter().map(|xk| log_normal_1d(*xk, m, v) - log_normal_1d(*xk, self.m0, self.s0_2)).sum())
            .collect();
        normalise(&mut lw);
        lw
    }

    /// The fixed point (m*, variance*) per coordinate, or `None` when there is no stationary Gaussian.
    ///
    /// With C = target precision + λ/σ (target precision 1/τ² for A/D, 1/(τ² + ε²) for B/D′), the
    /// stationary c is C, so P* = C/(1 − ε²C), variance 1/C − ε² and mean λb/(σC). With λ = 0 this
    /// is variance τ² − ε² for A and D (none if ε ≥ τ) and exactly τ² for B and D′, mean 0.
    pub fn stationary(&self) -> Option<(f64, f64)> {
        let c = self.target_precision() + self.lambda / self.sigma;
        let variance = 1.0 / c - self.eps2;
        (variance > 0.0).then(|| (self.lambda * self.b / (self.sigma * c), variance))
    }

    /// The stationary variance for λ = 0 (SPEC §7 T2): τ² − ε² for A and D (`None` if ε ≥ τ),
    /// τ² for B and D′. Independent of the `lambda` field.
    pub fn stationary_variance_without_potential(&self) -> Option<f64> {
        if self.smoothed_target {
            Some(self.tau2)
        } else {
            let v = self.tau2 - self.eps2;
            (v > 0.0).then_some(v)
        }
    }
}

/// SPEC §7 T3: the unkernelized Gaussian flow (T1 with Gaussian data) in closed form, per
/// coordinate: π = N(0, τ²), U(x) = λ|x − b|²/2, μ₀ = N(m₀, s₀²), KL.
///
/// P* = 1/τ² + λ/σ, m* = (λb/σ)/P*, P_t = e^{−σt}/s₀² + (1 − e^{−σt}) P*,
/// m_t = [e^{−σt} m₀/s₀² + (1 − e^{−σt}) P* m*] / P_t.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GibbsTempering {
    /// σ > 0.
    pub sigma: f64,
    /// λ ≥ 0.
    pub lambda: f64,
    /// b, the centre of the potential.
    pub b: f64,
    /// τ², the variance of π.
    pub tau2: f64,
    /// m₀, the mean of μ₀.
    pub m0: f64,
    /// s₀², the variance of μ₀.
    pub s0_2: f64,
}

impl GibbsTempering {
    /// (m*, 1/P*): the Gibbs measure μ* ∝ π e^{−U/σ} that the flow converges to.
    pub fn stationary(&self) -> (f64, f64) {
        let p = 1.0 / self.tau2 + self.lambda / self.sigma;
        (self.lambda * self.b / self.sigma / p, 1.0 / p)
    }

    /// (m_t, 1/P_t): the mean and the variance of every coordinate of μ_t.
    pub fn at(&self, t: f64) -> (f64, f64) {
        let p_star = 1.0 / self.tau2 + self.lambda / self.sigma;
        let q_star = self.lambda * self.b / self.sigma;
        let decay = (-self.sigma * t).exp();
        let beta = tempering_exponent(self.sigma, t);
        let p = decay / self.s0_2 + beta * p_star;
        let q = decay * self.m0 / self.s0_2 + beta * q_star;
        (q / p, 1.0 / p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t2(smoothed_target: bool) -> GaussianFlow {
        GaussianFlow { lambda: 0.0, b: 0.0, tau2: 1.0, eps2: 0.25, sigma: 1.0, m0: 0.8, s0_2: 2.25, smoothed_target }
    }

    #[test]
    fn oracle_t2_rk4_is_converged() {
        // Against a direct integration with 8× smaller steps: RK4's error shrinks by 8⁴, so the
        // difference is the default step's own error, which must be far below 1e-10.
        for st in [false, true] {
            let f = GaussianFlow { lambda: 1.3, b: -0.4, ..t2(st) };
            let (p, q) = f.precision_and_shift(4.0);
            let (pp, qq) = f.rk4(4.0, 32_000);
            let (p_coarse, _) = f.rk4(4.0, 40);
            assert!((p - pp).abs() < 1e-11 && (q - qq).abs() < 1e-11, "{p} {pp} {q} {qq}");
            // The comparison can fail: a 100× coarser step is visibly off.
            assert!((p_coarse - pp).abs() > 1e-11, "{p_coarse} {pp}");
        }
    }

    #[test]
    fn oracle_t2_reaches_its_stationary_point() {
        for st in [false, true] {
            let f = t2(st);
            let (m, v) = f.at(60.0);
            let (ms, vs) = f.stationary().unwrap();
            assert!((m - ms).abs() < 1e-10 && (v - vs).abs() < 1e-10, "{m} {v} vs {ms} {vs}");
            assert!((vs - f.stationary_variance_without_potential().unwrap()).abs() < 1e-15);
            // With λ = 2 the linearised rate at P* is only σ/(1 + ε²P*)² = 1/16 for A: wait longer.
            let g = GaussianFlow { lambda: 2.0, b: 1.5, ..f };
            let (m, v) = g.at(600.0);
            let (ms, vs) = g.stationary().unwrap();
            assert!((m - ms).abs() < 1e-10 && (v - vs).abs() < 1e-10, "{m} {v} vs {ms} {vs}");
        }
        // A with ε ≥ τ has no stationary Gaussian.
        assert_eq!(GaussianFlow { eps2: 1.0, ..t2(false) }.stationary_variance_without_potential(), None);
        assert_eq!(GaussianFlow { eps2: 1.5, ..t2(false) }.stationary(), None);
    }

    #[test]
    fn oracle_t2_b_keeps_pi_stationary() {
        // B and D′ leave μ₀ = π in place exactly: c(1/τ²) = 1/(τ² + ε²).
        let f = GaussianFlow { m0: 0.0, s0_2: 1.0, ..t2(true) };
        let (m, v) = f.at(3.0);
        assert!(m.abs() < 1e-14 && (v - 1.0).abs() < 1e-13, "{m} {v}");
    }

    #[test]
    fn oracle_t2_reference_weights_are_normalised_density_ratios() {
        let f = t2(false);
        let pos = [0.1, -0.3, 1.2, 2.0, -1.0, 0.5];
        let lw = f.reference_log_weights(1.5, &pos, 2);
        assert_eq!(lw.len(), 3);
        assert!((lw.iter().map(|l| l.exp()).sum::<f64>() - 1.0).abs() < 1e-14);
        // Ratios between particles are the density ratios μ_t/μ₀.
        let r = |i: usize| f.log_density(1.5, &pos[2 * i..2 * i + 2]) - f.log_initial_density(&pos[2 * i..2 * i + 2]);
        assert!(((lw[0] - lw[2]) - (r(0) - r(2))).abs() < 1e-12);
        // At t = 0 the weights are uniform.
        let l0 = f.reference_log_weights(0.0, &pos, 2);
        assert!(l0.iter().all(|l| (l + 3f64.ln()).abs() < 1e-14));
    }

    #[test]
    fn oracle_t3_solves_its_ode() {
        // dP/dt = λ + σ(1/τ² − P) and dQ/dt = λb − σQ (T2 with ε = 0), checked by central differences.
        let g = GibbsTempering { sigma: 0.7, lambda: 2.0, b: 1.5, tau2: 1.0, m0: -1.0, s0_2: 1.69 };
        let pq = |t: f64| {
            let (m, v) = g.at(t);
            (1.0 / v, m / v)
        };
        for t in [0.1, 1.0, 3.0] {
            let dt = 1e-5;
            let ((p1, q1), (p, q), (p2, q2)) = (pq(t - dt), pq(t), pq(t + dt));
            let dp = (p2 - p1) / (2.0 * dt);
            let dq = (q2 - q1) / (2.0 * dt);
            assert!((dp - (g.lambda + g.sigma * (1.0 / g.tau2 - p))).abs() < 1e-8, "t={t}");
            assert!((dq - (g.lambda * g.b - g.sigma * q)).abs() < 1e-8, "t={t}");
        }
        let (m, v) = g.at(0.0);
        assert!((m + 1.0).abs() < 1e-15 && (v - 1.69).abs() < 1e-14);
        let (ms, vs) = g.stationary();
        let (m, v) = g.at(80.0);
        assert!((m - ms).abs() < 1e-12 && (v - vs).abs() < 1e-12);
    }

    #[test]
    fn oracle_t1_tempering_interpolates_uniform_and_target() {
        let ratio = [0.3, -1.0, 2.5, 0.0];
        let w0 = tempering_log_weights(&ratio, 0.7, 0.0);
        assert!(w0.iter().all(|l| (l + 4f64.ln()).abs() < 1e-14));
        let winf = tempering_log_weights(&ratio, 0.7, 1e3);
        let mut target = ratio.to_vec();
        normalise(&mut target);
        assert!(winf.iter().zip(&target).all(|(a, b)| (a - b).abs() < 1e-14));
        let mid = tempering_log_weights(&ratio, 0.7, 1.0);
        let beta = 1.0 - (-0.7f64).exp();
        assert!(((mid[2] - mid[1]) - beta * 3.5).abs() < 1e-14);
        assert!((tempering_exponent(2.0, 1e-20) - 2e-20).abs() < 1e-34);
    }
}
