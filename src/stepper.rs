//! Time stepping of the log-weights (SPEC §6): explicit Euler (the paper's scheme) and the
//! exponential (mirror) step, with a fixed or an automatic step size.
//!
//! `euler_update` and `exponential_update` are the CPU twins of the shaders of the same name.

use crate::error::{Error, Result};

/// The update rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// w_i ← w_i (1 − h a_i); needs h · max a_i < 1.
    Euler,
    /// w_i ← w_i exp(−h a_i) / Z; always positive.
    #[serde(alias = "mirror")]
    Exponential,
}

/// How h is chosen each step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StepSize {
    /// The same h every step.
    Fixed(f64),
    /// h = min(h_max, safety / max_i a_i) for Euler (the largest stable step times the safety
    /// factor), h = min(h_max, safety / max_i |a_i|) for the exponential step.
    Auto {
        /// Fraction of the largest stable step, in (0, 1).
        safety: f64,
        /// Upper bound on h.
        h_max: f64,
    },
}

impl StepSize {
    /// The automatic rule with its defaults, as `h = "auto"` in a config.
    pub const AUTO: StepSize = StepSize::Auto { safety: DEFAULT_SAFETY, h_max: DEFAULT_H_MAX };
}

/// The default `safety` of the automatic step size.
pub const DEFAULT_SAFETY: f64 = 0.5;
/// The default `h_max` of the automatic step size.
pub const DEFAULT_H_MAX: f64 = 0.1;

/// A scheme with its step-size rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stepper {
    /// Euler or exponential.
    pub scheme: Scheme,
    /// Fixed or automatic h.
    pub step_size: StepSize,
}

/// The largest step size accepted. A first-order step this long is meaningless, and beyond it
/// h·a_i overflows f32 on the GPU while f64 on the CPU goes on: refusing it up front gives both
/// engines the same behaviour.
pub const MAX_STEP: f64 = 1e6;

impl Stepper {
    /// A checked stepper.
    pub fn new(scheme: Scheme, step_size: StepSize) -> Result<Self> {
        match step_size {
            StepSize::Fixed(h) if !(h.is_finite() && h > 0.0 && h <= MAX_STEP) => {
                return Err(Error::invalid("time.h", h, format!("a number > 0 and ≤ {MAX_STEP:e}, or \"auto\"")));
            }
            StepSize::Auto { safety, h_max } => {
                if !(safety > 0.0 && safety < 1.0) {
                    return Err(Error::invalid("time.safety", safety, "a number in (0, 1)"));
                }
                if !(h_max.is_finite() && h_max > 0.0 && h_max <= MAX_STEP) {
                    return Err(Error::invalid("time.h_max", h_max, format!("a number > 0 and ≤ {MAX_STEP:e}")));
                }
            }
            StepSize::Fixed(_) => {}
        }
        Ok(Stepper { scheme, step_size })
    }

    /// The step size for rates with largest value `max_rate` and largest modulus `max_abs_rate`,
    /// capped so that the step ends no later than `remaining` time units.
    pub fn step_size(&self, max_rate: f64, max_abs_rate: f64, remaining: Option<f64>) -> f64 {
        let h = match self.step_size {
            StepSize::Fixed(h) => h,
            StepSize::Auto { safety, h_max } => {
                let bound = match self.scheme {
                    Scheme::Euler => max_rate,
                    Scheme::Exponential => max_abs_rate,
                };
                if bound > 0.0 { h_max.min(safety / bound) } else { h_max }
            }
        };
        match remaining {
            Some(r) => h.min(r),
            None => h,
        }
    }

    /// Whether the next step is taken and with which h: `None` once `until` is reached, else the
    /// step size for rates with these maxima (see [`Stepper::step_size`]). The twin of
    /// `step_control.wgsl`, whose further checks (finite rates, then Euler positivity
    /// h · max_i a_i < 1) are on the CPU the updates' own, made in the same order before any
    /// weight changes.
    pub fn step_control(&self, max_rate: f64, max_abs_rate: f64, time: f64, until: Option<f64>) -> Option<f64> {
        if crate::engine::reached(time, until) {
            return None;
        }
        Some(self.step_size(max_rate, max_abs_rate, crate::engine::remaining_time(time, until)))
    }

    /// Applies one update to the log-weights in place.
    pub fn apply(&self, log_weights: &mut [f64], rates: &[f64], h: f64, step: u64) -> Result<()> {
        match self.scheme {
            Scheme::Euler => euler_update(log_weights, rates, h, step),
            Scheme::Exponential => exponential_update(log_weights, rates, h, step),
        }
    }
}

fn check_rates(rates: &[f64], step: u64) -> Result<()> {
    match rates.iter().position(|a| !a.is_finite()) {
        Some(i) => Err(Error::NonFinite { step, particle: i, quantity: "rate", value: rates[i] }),
        None => Ok(()),
    }
}

/// log w_i += log(1 − h a_i); an error (not a clamp) when some h a_i ≥ 1.
pub fn euler_update(log_weights: &mut [f64], rates: &[f64], h: f64, step: u64) -> Result<()> {
    check_rates(rates, step)?;
    // Report the worst offender, so the message tells how far h is from stable.
    let (worst, ha) = rates
        .iter()
        .map(|a| h * a)
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |acc, (i, x)| if x > acc.1 { (i, x) } else { acc });
    if ha >= 1.0 {
        return Err(Error::Positivity { step, particle: worst, h_times_rate: ha, h });
    }
    for (l, a) in log_weights.iter_mut().zip(rates) {
        *l += (-h * a).ln_1p();
    }
    Ok(())
}

/// log w_i −= h a_i, then [`normalise`] (on the GPU: `exponential_update.wgsl`, then
/// `normalise.wgsl`).
pub fn exponential_update(log_weights: &mut [f64], rates: &[f64], h: f64, step: u64) -> Result<()> {
    check_rates(rates, step)?;
    for (l, a) in log_weights.iter_mut().zip(rates) {
        *l -= h * a;
    }
    normalise(log_weights);
    Ok(())
}

/// log w_i −= log Σ_j w_j, so that Σ w_i = 1: the twin of `normalise.wgsl`. The exponential
/// update conserves mass only up to this renormalisation; Euler conserves it exactly.
pub fn normalise(log_weights: &mut [f64]) {
    let z = crate::model::log_sum_exp(log_weights);
    for l in log_weights.iter_mut() {
        *l -= z;
    }
}

/// The weights w_i = exp(log w_i − log Σ_j w_j) of log-weights that need not be normalised
/// (those [`normalise`] gives, exponentiated).
pub fn normalised_weights(log_weights: &[f64]) -> Vec<f64> {
    let mut lw = log_weights.to_vec();
    normalise(&mut lw);
    lw.into_iter().map(f64::exp).collect()
}
