//! The non-interacting reference system of SPEC §4, run alongside an interacting one.
//!
//! The reference system keeps the interacting system's positions X_i and gives them the weights
//! w̄_i(t) ∝ exp(−∫₀ᵗ a_ε(μ_s, X_i) ds) of the mean-field flow μ_s itself. Three ways to get them:
//!
//! - **closed form** (exact in time): T2 ([`GaussianCase`], a Gaussian flow) via
//!   [`GaussianFlow::reference_log_weights`], or T1 (the unkernelized `exact` variant with a
//!   linear F) via [`tempering_log_weights_for`];
//! - **stepped** (T2 only): the closed-form rates a_ε(μ_{t_k}, X_i) of the Gaussian μ_t, applied with
//!   the interacting system's own stepper and step sizes, so that the time-stepping error of the
//!   two systems is (to leading order) the same and drops out of their difference;
//! - **simulated**: a much larger, independent interacting system (N_ref particles, its own seed)
//!   run on the same time grid; each step w̄ is updated with that system's
//!   [`Engine::rates_at`] the X_i, by the same scheme (Euler w̄(1 − h a) or exponential).

use crate::config::Problem;
use crate::engine::{Diagnostics, Engine};
use crate::error::{Error, Result};
use crate::flow::{Coupled, Observer, RunOptions, Summary};
use crate::model::{Divergence, Domain, Energy, Potential, Reference, Variant};
use crate::oracle::{GaussianFlow, tempering_log_weights_for};
use crate::particles::{Initial, Particles, State};
use crate::stepper::{Stepper, normalise};
use serde::{Deserialize, Serialize};

/// The T2 structure of a problem (SPEC §7): Gaussian π = N(c, τ² I), F a sum of quadratic
/// potentials, Gaussian μ₀, KL, on R^d, with every mean and centre the same in all coordinates.
/// The flow is then Gaussian in closed form (per coordinate, after shifting by c).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GaussianCase {
    /// The flow in coordinates shifted by π's mean (so that π has mean 0, as [`GaussianFlow`] wants).
    pub flow: GaussianFlow,
    /// π's mean c, subtracted from every coordinate.
    pub shift: f64,
    /// The dimension d.
    pub dim: usize,
}

/// The value shared by every entry of `v`, if they are all equal.
fn common(v: &[f64]) -> Option<f64> {
    let first = *v.first()?;
    v.iter().all(|x| *x == first).then_some(first)
}

/// log N(x; m, v) in one dimension.
fn log_normal(x: f64, m: f64, v: f64) -> f64 {
    -0.5 * (x - m).powi(2) / v - 0.5 * (std::f64::consts::TAU * v).ln()
}

/// E log N(X; m′, v′) for X ~ N(m, v).
fn expected_log_normal(m: f64, v: f64, m2: f64, v2: f64) -> f64 {
    -0.5 * (std::f64::consts::TAU * v2).ln() - (v + (m - m2).powi(2)) / (2.0 * v2)
}

impl GaussianCase {
    /// The T2 structure of `problem` (its model and μ₀), or `None` when the problem is not of
    /// that form (or the variant is C, whose flow is not Gaussian in closed form).
    pub fn detect(problem: &Problem) -> Option<GaussianCase> {
        let model = &problem.model;
        let dim = model.space.dim;
        if model.space.domain != Domain::Euclidean || model.divergence != Divergence::Kl || model.sigma <= 0.0 {
            return None;
        }
        let (shift, tau) = match &model.reference {
            Reference::Gaussian { mean, std } => (common(mean)?, *std),
            _ => return None,
        };
        let (m0, s0) = match &problem.init {
            Initial::Gaussian { mean, std } => (common(mean)?, *std),
            _ => return None,
        };
        // Σ_k λ_k/2 |x − b_k|² = Λ/2 |x − B|² + const with Λ = Σ λ_k, B = Σ λ_k b_k / Λ.
        let (mut lambda, mut lb) = (0.0, 0.0);
        for e in &model.energy {
            match e {
                Energy::Potential(Potential::Quadratic { strength, center }) => {
                    lambda += strength;
                    lb += strength * common(center)?;
                }
                _ => return None,
            }
        }
        let b = if lambda > 0.0 { lb / lambda } else { 0.0 };
        let eps = model.kernel.width;
        let (eps2, smoothed_target) = match model.variant {
            Variant::Measure | Variant::Smoothed => (eps * eps, false),
            Variant::MeasureTarget | Variant::SmoothedTarget => (eps * eps, true),
            Variant::Exact => (0.0, false),
            Variant::Blob => return None,
        };
        let flow = GaussianFlow {
            lambda,
            b: b - shift,
            tau2: tau * tau,
            eps2,
            sigma: model.sigma,
            m0: m0 - shift,
            s0_2: s0 * s0,
            smoothed_target,
        };
        Some(GaussianCase { flow, shift, dim })
    }

    /// (mean, variance) of every coordinate of μ_t, in the problem's coordinates.
    pub fn at(&self, t: f64) -> (f64, f64) {
        let (m, v) = self.flow.at(t);
        (m + self.shift, v)
    }

    /// Normalised log w̄_i(t) ∝ log μ_t(X_i) − log μ₀(X_i) for N × d positions.
    pub fn reference_log_weights(&self, t: f64, positions: &[f64]) -> Vec<f64> {
        let shifted: Vec<f64> = positions.iter().map(|x| x - self.shift).collect();
        self.flow.reference_log_weights(t, &shifted, self.dim)
    }

    /// The mean-field rates a_ε(μ_t, x) at N × d points, in closed form.
    ///
    /// With μ_t = N(m, v) per coordinate, K_ε μ_t = N(m, v + ε²); so g = U + σ h is quadratic in
    /// x and its mean under μ_t is explicit. For D and D′ the smoothing of log(K_ε μ/π) by K_ε
    /// adds a constant to a quadratic, so their rates are those of A and B (as their T2 ODEs are).
    pub fn rates_at(&self, t: f64, points: &[f64]) -> Vec<f64> {
        let f = &self.flow;
        let (m, v) = f.at(t);
        let vk = v + f.eps2;
        let tau_e2 = if f.smoothed_target { f.tau2 + f.eps2 } else { f.tau2 };
        let g1 =
            |y: f64| 0.5 * f.lambda * (y - f.b).powi(2) + f.sigma * (log_normal(y, m, vk) - log_normal(y, 0.0, tau_e2));
        let mean_g1 = 0.5 * f.lambda * (v + (m - f.b).powi(2))
            + f.sigma * (expected_log_normal(m, v, m, vk) - expected_log_normal(m, v, 0.0, tau_e2));
        points.chunks_exact(self.dim).map(|x| x.iter().map(|xk| g1(xk - self.shift) - mean_g1).sum()).collect()
    }

    /// The stationary (mean, variance) per coordinate of the kernelized flow, if there is one.
    pub fn stationary(&self) -> Option<(f64, f64)> {
        self.flow.stationary().map(|(m, v)| (m + self.shift, v))
    }
}

/// How to obtain the reference system.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReferenceMode {
    /// `closed-form` for T1 and T2, `simulated` otherwise.
    #[default]
    Auto,
    /// Exact in time (T1 or T2 only).
    ClosedForm,
    /// Closed-form rates on the interacting system's time grid (T2 only).
    Stepped,
    /// Driven by a large independent interacting system.
    Simulated,
}

impl ReferenceMode {
    /// The name used in configs and results.
    pub fn name(self) -> &'static str {
        match self {
            ReferenceMode::Auto => "auto",
            ReferenceMode::ClosedForm => "closed-form",
            ReferenceMode::Stepped => "stepped",
            ReferenceMode::Simulated => "simulated",
        }
    }
}

/// A resolved reference system for one problem.
#[derive(Clone, Debug)]
pub enum ReferenceSystem {
    /// T2, exact in time.
    Gaussian(GaussianCase),
    /// T1 (the `exact` variant with a linear F), exact in time.
    Tempering,
    /// T2 rates on the interacting system's time grid.
    Stepped(GaussianCase),
    /// A large independent interacting system with these particles.
    Simulated(Particles),
}

impl ReferenceSystem {
    /// The mode this system implements (never `auto`).
    pub fn mode(&self) -> ReferenceMode {
        match self {
            ReferenceSystem::Gaussian(_) | ReferenceSystem::Tempering => ReferenceMode::ClosedForm,
            ReferenceSystem::Stepped(_) => ReferenceMode::Stepped,
            ReferenceSystem::Simulated(_) => ReferenceMode::Simulated,
        }
    }

    /// Chooses the reference system of `problem` for `mode`. `big` builds the large system's
    /// particles; it is called only for the simulated mode.
    pub fn choose(
        mode: ReferenceMode,
        problem: &Problem,
        big: impl FnOnce() -> Result<Particles>,
    ) -> Result<ReferenceSystem> {
        let model = &problem.model;
        let gaussian = GaussianCase::detect(problem);
        let tempering = model.variant == Variant::Exact
            && model.divergence == Divergence::Kl
            && model.sigma > 0.0
            && model.energy.iter().all(|e| matches!(e, Energy::Potential(_)));
        let variant = model.variant.name();
        match mode {
            ReferenceMode::Auto => Ok(match (gaussian, tempering) {
                (Some(g), _) => ReferenceSystem::Gaussian(g),
                (None, true) => ReferenceSystem::Tempering,
                (None, false) if model.variant != Variant::Exact => ReferenceSystem::Simulated(big()?),
                (None, false) => {
                    return Err(Error::invalid(
                        "sweep.reference",
                        "auto (variant exact, non-linear F)",
                        "a problem with a reference system: the exact oracle has a closed form only for a linear F \
                     (T1) and no rates away from its particles to simulate one",
                    ));
                }
            }),
            ReferenceMode::ClosedForm => match (gaussian, tempering) {
                (Some(g), _) => Ok(ReferenceSystem::Gaussian(g)),
                (None, true) => Ok(ReferenceSystem::Tempering),
                (None, false) => Err(Error::invalid(
                    "sweep.reference",
                    format!("closed-form (variant {variant})"),
                    "a problem with μ_t in closed form: T2 (Gaussian π, μ₀, quadratic U on R^d, variant A, B, D, D' \
                     or exact) or T1 (variant exact with potentials only); otherwise simulated",
                )),
            },
            ReferenceMode::Stepped => gaussian.map(ReferenceSystem::Stepped).ok_or_else(|| {
                Error::invalid(
                    "sweep.reference",
                    format!("stepped (variant {variant})"),
                    "a T2 problem (Gaussian π, μ₀, quadratic U on R^d; variant A, B, D, D' or exact)",
                )
            }),
            ReferenceMode::Simulated => {
                if model.variant == Variant::Exact {
                    return Err(Error::invalid(
                        "sweep.reference",
                        "simulated (variant exact)",
                        "a kernelized variant: the exact oracle has no rates away from its own particles",
                    ));
                }
                Ok(ReferenceSystem::Simulated(big()?))
            }
        }
    }
}

/// What a coupled run of the interacting and the reference system produced.
#[derive(Clone, Debug)]
pub struct CoupledOutcome {
    /// The interacting system's final state.
    pub state: State,
    /// Its final diagnostics.
    pub diagnostics: Diagnostics,
    /// Normalised log w̄_i of the reference system at the final time.
    pub reference_log_weights: Vec<f64>,
    /// The large system's final cloud (positions, normalised weights), for the simulated mode.
    pub big: Option<(Vec<f64>, Vec<f64>)>,
    /// Steps taken.
    pub steps: u64,
}

/// Where a stepped or simulated reference system gets its rates at the X_i.
enum Rates<'a> {
    /// The closed-form T2 rates of μ_t.
    Gaussian(&'a GaussianCase),
    /// The rates of a large interacting system, which takes the same steps.
    Big(Box<dyn Engine>),
}

/// The weights w̄_i of a stepped or simulated reference system at the interacting system's
/// positions, with the rates of the step about to be taken.
struct Weights<'a> {
    source: Rates<'a>,
    positions: &'a [f64],
    rates: Vec<f64>,
    log_weights: Vec<f64>,
}

impl Coupled for Weights<'_> {
    /// The rates at the X_i, before the step (explicit schemes use the left end). They bound the
    /// step so that w̄ stays positive too, and so do the large system's own rates.
    fn prepare(&mut self, time: f64) -> Result<(f64, f64)> {
        let (max_rate, max_abs) = match &mut self.source {
            Rates::Gaussian(g) => {
                self.rates = g.rates_at(time, self.positions);
                (f64::NEG_INFINITY, 0.0)
            }
            Rates::Big(b) => {
                let d = b.evaluate()?;
                self.rates = b.rates_at(self.positions)?;
                (d.max_rate, d.max_abs_rate)
            }
        };
        let r = &self.rates;
        Ok((r.iter().copied().fold(max_rate, f64::max), r.iter().fold(max_abs, |m, a| m.max(a.abs()))))
    }

    fn engine(&mut self) -> Option<&mut dyn Engine> {
        match &mut self.source {
            Rates::Gaussian(_) => None,
            Rates::Big(b) => Some(&mut **b),
        }
    }

    fn step(&mut self, stepper: &Stepper, h: f64, step: u64) -> Result<()> {
        stepper.apply(&mut self.log_weights, &self.rates, h, step)?;
        // Euler conserves Σ w̄ only when the rates are centred under w̄; they are centred under μ_t.
        normalise(&mut self.log_weights);
        Ok(())
    }
}

/// Runs `engine` with the reference weights from `source` alongside, from uniform weights;
/// returns the run's summary, the normalised log w̄ and, for a large system, its normalised
/// weights.
fn run_weights(
    engine: &mut dyn Engine,
    source: Rates,
    positions: &[f64],
    options: &RunOptions,
    observers: &mut [Box<dyn Observer + '_>],
) -> Result<(Summary, Vec<f64>, Option<Vec<f64>>)> {
    let log_weights = State::uniform(engine.len()).log_weights;
    let mut w = Weights { source, positions, rates: Vec::new(), log_weights };
    let summary = crate::flow::run_coupled(engine, &mut w, options, observers, None)?;
    let big = match &mut w.source {
        Rates::Gaussian(_) => None,
        Rates::Big(b) => {
            let mut lw = b.state()?.log_weights;
            normalise(&mut lw);
            Some(lw.iter().map(|l| l.exp()).collect())
        }
    };
    Ok((summary, w.log_weights, big))
}

/// Steps between progress reports (and, with a closed-form reference, per engine call: one
/// readback per 16 steps on a GPU).
const REPORT_EVERY: u64 = 16;

/// Reports the flow time to a progress callback.
struct Progress<'f>(&'f mut dyn FnMut(f64));

impl Observer for Progress<'_> {
    fn every(&self) -> u64 {
        REPORT_EVERY
    }

    fn observe(&mut self, diagnostics: &Diagnostics, _: &mut dyn Engine) -> Result<()> {
        (self.0)(diagnostics.time);
        Ok(())
    }
}

/// Runs the interacting system of `problem` on `engine` and the `reference` system alongside it
/// to flow time `t_end`, from uniform weights, with [`crate::flow::run_coupled`] (or, for a
/// closed-form reference, which needs nothing between steps, [`crate::flow::run`]).
/// `big_engine` builds the large system's engine (simulated mode only). `on_step` sees the
/// flow time as it advances.
pub fn run_coupled(
    engine: &mut dyn Engine,
    reference: &ReferenceSystem,
    problem: &Problem,
    t_end: f64,
    big_engine: impl FnOnce(&Particles) -> Result<Box<dyn Engine>>,
    on_step: &mut dyn FnMut(f64),
) -> Result<CoupledOutcome> {
    let options = RunOptions {
        stepper: problem.run.stepper,
        max_steps: None,
        final_time: Some(t_end),
        tolerance: None,
        every: REPORT_EVERY,
    };
    let positions = &problem.particles.positions;
    let mut observers: Vec<Box<dyn Observer + '_>> = vec![Box::new(Progress(on_step))];
    let (summary, reference_log_weights, big) = match reference {
        ReferenceSystem::Gaussian(g) => {
            let summary = crate::flow::run(engine, &options, &mut observers, None)?;
            let lw = g.reference_log_weights(summary.diagnostics.time, positions);
            (summary, lw, None)
        }
        ReferenceSystem::Tempering => {
            let summary = crate::flow::run(engine, &options, &mut observers, None)?;
            let lw = tempering_log_weights_for(&problem.model, &problem.particles, summary.diagnostics.time)?;
            (summary, lw, None)
        }
        ReferenceSystem::Stepped(g) => {
            let (summary, lw, _) = run_weights(engine, Rates::Gaussian(g), positions, &options, &mut observers)?;
            (summary, lw, None)
        }
        ReferenceSystem::Simulated(p) => {
            let source = Rates::Big(big_engine(p)?);
            let (summary, lw, big) = run_weights(engine, source, positions, &options, &mut observers)?;
            (summary, lw, big.map(|w| (p.positions.clone(), w)))
        }
    };
    Ok(CoupledOutcome {
        state: engine.state()?,
        steps: summary.steps_this_run,
        diagnostics: summary.diagnostics,
        reference_log_weights,
        big,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, StepSizeConfig};
    use crate::stepper::Scheme;

    fn t2(variant: &str, lambda: f64) -> (Config, Problem) {
        let text = format!(
            r#"
            sigma = 1.0
            engine = "cpu"
            [domain]
            kind = "euclidean"
            dim = 2
            [reference]
            kind = "gaussian"
            mean = 0.3
            std = 1.0
            [kernel]
            epsilon = 0.5
            variant = "{variant}"
            [[energy]]
            kind = "potential"
            potential = "quadratic"
            strength = {lambda}
            center = 1.5
            [particles]
            n = 16
            init = {{ kind = "gaussian", mean = 0.8, std = 1.5 }}
            [time]
            h = 0.01
            final_time = 1.0
            "#
        );
        let c = Config::from_str(&text, "t2").unwrap();
        let p = c.build(std::path::Path::new(".")).unwrap();
        (c, p)
    }

    /// The closed-form rates are −d/dt log μ_t(x) (which is what makes μ_t the flow), checked by
    /// central differences of the T2 density; they are centred under μ_t by construction.
    #[test]
    fn gaussian_rates_are_the_time_derivative_of_the_log_density() {
        for v in ["A", "B", "D'", "exact"] {
            let (_, p) = t2(v, 0.7);
            let g = GaussianCase::detect(&p).expect("a T2 problem");
            let pts = [0.1, -0.4, 2.0, 1.1, -1.3, 0.0];
            let (t, dt) = (0.6, 1e-4);
            let log_mu = |t: f64, x: &[f64]| {
                let (m, var) = g.at(t);
                x.iter().map(|xk| log_normal(*xk, m, var)).sum::<f64>()
            };
            let a = g.rates_at(t, &pts);
            for (i, x) in pts.chunks_exact(2).enumerate() {
                let dlog = (log_mu(t + dt, x) - log_mu(t - dt, x)) / (2.0 * dt);
                assert!((a[i] + dlog).abs() < 1e-6, "{v}: {} vs {}", a[i], -dlog);
            }
        }
        // C has no closed form, and a non-Gaussian μ₀ none either.
        let (_, p) = t2("C", 0.7);
        assert!(GaussianCase::detect(&p).is_none());
    }

    /// A coupled run of 16 particles to t = 1 with the stepped and the simulated (64 particles)
    /// reference, each with the Euler and the exponential stepper, fixed and automatic h.
    fn coupled_runs() -> Vec<(String, CoupledOutcome)> {
        let mut out = Vec::new();
        for (scheme, h) in [(Scheme::Euler, StepSizeConfig::Fixed(0.05)), (Scheme::Exponential, StepSizeConfig::Auto)] {
            let (mut c, _) = t2("A", 0.7);
            (c.time.scheme, c.time.h, c.time.h_max) = (scheme, h, 0.2);
            let p = c.build(std::path::Path::new(".")).unwrap();
            let g = GaussianCase::detect(&p).unwrap();
            let mut big = c.clone();
            big.seed = 99;
            big.particles.n = 64;
            let big = big.build(std::path::Path::new(".")).unwrap().particles;
            for reference in [ReferenceSystem::Stepped(g), ReferenceSystem::Simulated(big)] {
                let mut engine = crate::engine::cpu::CpuEngine::new(p.model.clone(), p.particles.clone()).unwrap();
                let model = p.model.clone();
                let new = |q: &Particles| -> Result<Box<dyn Engine>> {
                    Ok(Box::new(crate::engine::cpu::CpuEngine::new(model.clone(), q.clone())?))
                };
                let o = run_coupled(&mut engine, &reference, &p, 1.0, new, &mut |_| {}).unwrap();
                out.push((format!("{scheme:?} {}", reference.mode().name()), o));
            }
        }
        out
    }

    /// (run, steps, Σ_i log w_i of the interacting system, log w̄) as the reference systems'
    /// own step loop gave them before `flow::run_coupled` took it over (commit 53b6865).
    const BEFORE: [(&str, u64, f64, &[f64]); 4] = [
        (
            "Euler stepped",
            20,
            -57.75729578850943,
            &[
                -5.4455271158163345,
                -2.9638800450490894,
                -2.019819034098256,
                -5.33831611213839,
                -2.174874821855739,
                -1.9919304401553233,
                -5.105384095202636,
                -6.306022391501148,
                -1.7776747961972983,
                -3.4276321941333805,
                -2.0445357737691583,
                -4.203663689905413,
                -4.56214495826153,
                -2.6794689169702695,
                -2.970954445626385,
                -2.62457886118832,
            ],
        ),
        (
            "Euler simulated",
            20,
            -57.75729578850943,
            &[
                -3.1220752751991183,
                -2.542911504936859,
                -2.1170945397538303,
                -4.955250551689229,
                -2.4343189980294726,
                -2.1854810781183738,
                -4.728882480371564,
                -2.870023633849114,
                -2.027976937988033,
                -4.095081934841957,
                -2.2340571404107057,
                -4.060409255279659,
                -5.106733630071167,
                -2.4176223683512608,
                -3.0020024433713806,
                -2.7062379236584406,
            ],
        ),
        (
            "Exponential stepped",
            7,
            -57.80455136713759,
            &[
                -5.400592613703857,
                -3.0043414435454676,
                -2.0092125273880486,
                -5.303231723216976,
                -2.175985706912446,
                -1.9790701249792064,
                -5.089979205539084,
                -6.162151969868535,
                -1.7460592693376027,
                -3.475657144254661,
                -2.0358231209328603,
                -4.239701988253406,
                -4.582492982882641,
                -2.7095864748319083,
                -3.0116227018758113,
                -2.6522370485290194,
            ],
        ),
        (
            "Exponential simulated",
            18,
            -57.26423896500094,
            &[
                -3.132970582237471,
                -2.551872374433489,
                -2.1134263753787335,
                -4.888015662490664,
                -2.4382089131356497,
                -2.1831916667925735,
                -4.677916023969736,
                -2.886980660516262,
                -2.020871689910202,
                -4.0718489004753895,
                -2.233397258315218,
                -4.051335062886627,
                -5.011034137674475,
                -2.4217549609701035,
                -3.010423804966444,
                -2.714674961105057,
            ],
        ),
    ];

    /// Moving the stepped and simulated reference systems into `flow::run_coupled` changed no
    /// number: the shared step sizes (the exponential runs take 7 and 18 automatic steps, bounded
    /// by the reference's rates) and both systems' weights are those of the old loop, bit for bit.
    #[test]
    fn coupled_runs_give_the_numbers_of_the_old_step_loop() {
        let runs = coupled_runs();
        assert_eq!(runs.len(), BEFORE.len());
        for ((name, o), (before, steps, sum_lw, lw_bar)) in runs.iter().zip(BEFORE) {
            assert_eq!(name, before);
            assert_eq!(o.steps, steps, "{name}");
            assert_eq!(o.state.time, 1.0, "{name}");
            assert_eq!(o.state.log_weights.iter().sum::<f64>(), sum_lw, "{name}");
            assert_eq!(o.reference_log_weights, lw_bar, "{name}");
        }
    }
}
