//! The run loop: drives an engine's steps, calls observers at their cadence, and ends with a
//! stated [`Termination`] (the argmin pattern: the step is the engine's, the loop is here).

use crate::engine::{Diagnostics, Engine, reached, remaining_time};
use crate::error::{Error, Result};
use crate::stepper::{Scheme, StepSize, Stepper};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// When a run stops. At least one of `max_steps`, `final_time` and `tolerance` must be set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunOptions {
    /// The time stepper.
    pub stepper: Stepper,
    /// Stop after this many steps (counted from t = 0, also after a resume).
    pub max_steps: Option<u64>,
    /// Stop when the flow time reaches T (the last step is shortened to land on T).
    pub final_time: Option<f64>,
    /// Stop once max_i |a_i| < tolerance (checked every `every` steps).
    pub tolerance: Option<f64>,
    /// Diagnostics (and the stationarity check) every this many steps.
    pub every: u64,
}

impl RunOptions {
    /// A run to flow time `final_time` by explicit Euler with the automatic step size and
    /// diagnostics every 10 steps (the config's defaults); adjust with the methods below.
    ///
    /// ```
    /// use frflow::flow::RunOptions;
    /// use frflow::stepper::{Scheme, StepSize, Stepper};
    /// let options = RunOptions::until(2.0)
    ///     .with_stepper(Stepper::new(Scheme::Exponential, StepSize::Fixed(0.01))?)
    ///     .with_tolerance(1e-6)
    ///     .with_every(50);
    /// options.validate()?;
    /// # Ok::<(), frflow::Error>(())
    /// ```
    pub fn until(final_time: f64) -> Self {
        RunOptions { final_time: Some(final_time), ..Self::base() }
    }

    /// A run of `steps` steps, otherwise as [`RunOptions::until`].
    pub fn steps(steps: u64) -> Self {
        RunOptions { max_steps: Some(steps), ..Self::base() }
    }

    fn base() -> Self {
        RunOptions {
            stepper: Stepper { scheme: Scheme::Euler, step_size: StepSize::AUTO },
            max_steps: None,
            final_time: None,
            tolerance: None,
            every: 10,
        }
    }

    /// The same with `stepper`.
    pub fn with_stepper(self, stepper: Stepper) -> Self {
        RunOptions { stepper, ..self }
    }

    /// The same, also stopping once max_i |a_i| < `tolerance`.
    pub fn with_tolerance(self, tolerance: f64) -> Self {
        RunOptions { tolerance: Some(tolerance), ..self }
    }

    /// The same, also stopping after `steps` steps.
    pub fn with_max_steps(self, steps: u64) -> Self {
        RunOptions { max_steps: Some(steps), ..self }
    }

    /// The same with diagnostics every `every` steps.
    pub fn with_every(self, every: u64) -> Self {
        RunOptions { every, ..self }
    }

    /// Checks that the run ends and that every value is in range.
    pub fn validate(&self) -> Result<()> {
        if self.max_steps.is_none() && self.final_time.is_none() && self.tolerance.is_none() {
            return Err(Error::invalid(
                "time",
                "no steps, final_time or tolerance",
                "at least one of time.steps, time.final_time, time.tolerance (otherwise the run never ends)",
            ));
        }
        if let Some(t) = self.final_time
            && !(t.is_finite() && t >= MIN_FINAL_TIME)
        {
            // Below this, `reached` holds at t = 0 and the run would take no step at all.
            return Err(Error::invalid("time.final_time", t, format!("a finite number ≥ {MIN_FINAL_TIME:e}")));
        }
        if let Some(t) = self.tolerance {
            crate::error::check_positive("time.tolerance", t)?;
        }
        if self.every == 0 {
            return Err(Error::invalid("output.every", 0, "an integer ≥ 1"));
        }
        Ok(())
    }
}

/// The smallest `final_time` accepted: a run to an earlier time would end before its first step.
pub const MIN_FINAL_TIME: f64 = 1e-9;

/// How far the total weight may drift from 1 before the run stops with an error: 1e-6 on the
/// f64 CPU engine (whose Euler steps keep it to ~1e-12), 1e-3 on f32 engines (whose Euler steps
/// do not renormalise, so f32 rounding of the mean rate accumulates over long runs).
pub fn mass_tolerance(engine_name: &str) -> f64 {
    if engine_name.starts_with("cpu") { 1e-6 } else { 1e-3 }
}

/// Checks a state's diagnostics: every value finite and the total weight within
/// `mass_tolerance` of 1. The error names the quantity, the step and the likely cause.
pub fn check_diagnostics(d: &Diagnostics, mass_tolerance: f64) -> Result<()> {
    let rates = "the rates a_i: an extreme kernel.epsilon or sigma, an initial std or reference mean far from \
                 the domain's scale, or chi2 with a far reference";
    let energy = "the energy terms ([[energy]]): data or parameters whose magnitude overflows (e.g. sample \
                  values near ±1e308)";
    let moments = "the positions' moments: a domain.side or initial distribution of extreme magnitude";
    let mut values: Vec<(String, f64, &str)> = vec![
        ("f_energy (F)".into(), d.f_energy, energy),
        ("mass".into(), d.mass, rates),
        ("ess".into(), d.ess, rates),
        ("max_abs_rate".into(), d.max_abs_rate, rates),
        ("max_rate".into(), d.max_rate, rates),
    ];
    if let Some(e) = d.energy {
        values.push(("energy (V = F + σ D)".into(), e, energy));
    }
    values.extend(d.mean.iter().enumerate().map(|(k, v)| (format!("mean_{k}"), *v, moments)));
    values.extend(d.variance.iter().enumerate().map(|(k, v)| (format!("variance_{k}"), *v, moments)));
    if let Some((quantity, value, cause)) = values.into_iter().find(|(_, v, _)| !v.is_finite()) {
        return Err(Error::NonFiniteResult {
            step: d.step,
            quantity,
            value,
            cause: format!("is not finite; it comes from {cause}"),
        });
    }
    if (d.mass - 1.0).abs() > mass_tolerance {
        return Err(Error::NonFiniteResult {
            step: d.step,
            quantity: "mass".into(),
            value: d.mass,
            cause: format!(
                "drifted from 1 by {:.1e}, beyond {mass_tolerance:.0e}: the rates do not average to zero under the \
                 weights (cancellation in g, e.g. from an extreme kernel.epsilon or sigma); use a smaller h or the \
                 exponential stepper",
                d.mass - 1.0
            ),
        });
    }
    Ok(())
}

/// Why a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Termination {
    /// `max_steps` steps were taken.
    MaxSteps,
    /// The flow time reached `final_time`.
    FinalTime,
    /// max_i |a_i| fell below the tolerance.
    Stationary,
    /// The interrupt flag was raised (Ctrl-C).
    Interrupted,
    /// An observer asked the run to stop ([`Observer::stop`]; `Summary::stop_reason` says why),
    /// e.g. a [`StopWhen`] predicate on the diagnostics.
    Stopped,
}

/// Something that watches a run: a progress bar, a trace writer, a checkpoint writer.
pub trait Observer {
    /// Called at step 0 and then every `every()` steps; 0 means only at the end.
    fn every(&self) -> u64;

    /// Records the state after `diagnostics.step` steps.
    fn observe(&mut self, diagnostics: &Diagnostics, engine: &mut dyn Engine) -> Result<()>;

    /// After each `observe`: `Some(reason)` ends the run there with [`Termination::Stopped`]
    /// (a convergence test of the user's, a coupled system that has what it needs, …).
    fn stop(&self) -> Option<String> {
        None
    }

    /// Called once when the run ends for `reason`, with the final state.
    fn finish(&mut self, diagnostics: &Diagnostics, reason: Termination, engine: &mut dyn Engine) -> Result<()> {
        let _ = reason;
        self.observe(diagnostics, engine)
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// Why it stopped.
    pub termination: Termination,
    /// The final state's diagnostics.
    pub diagnostics: Diagnostics,
    /// Steps taken in this call (less than `diagnostics.step` after a resume).
    pub steps_this_run: u64,
    /// Wall-clock seconds of this call.
    pub wall_seconds: f64,
    /// The engine's name.
    pub engine: String,
    /// With [`Termination::Stopped`]: the observer's reason.
    #[serde(default)]
    pub stop_reason: Option<String>,
}

/// An observer that ends the run once `predicate` holds for the diagnostics it sees (every
/// `every` steps), with `reason` as the summary's stop reason. The predicate may also read the
/// engine (its state, its rates): `StopWhen::new(10, "stationary", |d, _| Ok(d.max_abs_rate < 1e-6))`.
pub struct StopWhen<F: FnMut(&Diagnostics, &mut dyn Engine) -> Result<bool>> {
    every: u64,
    reason: String,
    predicate: F,
    hit: bool,
}

impl<F: FnMut(&Diagnostics, &mut dyn Engine) -> Result<bool>> StopWhen<F> {
    /// Checks `predicate` every `every` steps (at least 1).
    pub fn new(every: u64, reason: impl Into<String>, predicate: F) -> Self {
        StopWhen { every: every.max(1), reason: reason.into(), predicate, hit: false }
    }
}

impl<F: FnMut(&Diagnostics, &mut dyn Engine) -> Result<bool>> Observer for StopWhen<F> {
    fn every(&self) -> u64 {
        self.every
    }

    fn observe(&mut self, diagnostics: &Diagnostics, engine: &mut dyn Engine) -> Result<()> {
        self.hit |= (self.predicate)(diagnostics, engine)?;
        Ok(())
    }

    fn stop(&self) -> Option<String> {
        self.hit.then(|| self.reason.clone())
    }

    fn finish(&mut self, _: &Diagnostics, _: Termination, _: &mut dyn Engine) -> Result<()> {
        Ok(())
    }
}

/// A system that steps alongside the engine with the engine's step sizes: the non-interacting
/// reference system of SPEC §4, whose weights evolve by rates of its own at the engine's
/// positions. Both must take the same steps so that their time-stepping errors cancel in their
/// difference; see [`run_coupled`].
pub trait Coupled {
    /// Called before each step, at flow time `time`: evaluates this system's rates and returns
    /// their (max a_i, max |a_i|), which bound the shared step size as the engine's own do.
    fn prepare(&mut self, time: f64) -> Result<(f64, f64)>;

    /// An engine of this system's own that takes every step too (a larger interacting system
    /// whose rates drive this one), or `None`.
    fn engine(&mut self) -> Option<&mut dyn Engine> {
        None
    }

    /// Applies the step of size `h` with `stepper` (its fixed-h form) that the engine has just
    /// taken as step number `step`, with the rates of the last [`Coupled::prepare`].
    fn step(&mut self, stepper: &Stepper, h: f64, step: u64) -> Result<()>;
}

/// Runs `engine` from its current state until a termination condition holds.
///
/// Observers see every state whose step is a multiple of their cadence. The loop never changes
/// the numbers: observing only reads, so a run split at any step and resumed gives the same
/// weights bit for bit.
pub fn run<'a>(
    engine: &mut dyn Engine,
    options: &RunOptions,
    observers: &mut [Box<dyn Observer + 'a>],
    interrupt: Option<Arc<AtomicBool>>,
) -> Result<Summary> {
    drive(engine, None, options, observers, interrupt)
}

/// [`run`] with a `coupled` system stepping alongside: one step at a time, each with the fixed
/// h that `options.stepper` chooses from the rates of both (so an automatic h keeps both
/// systems' weights positive), which the engine and then the coupled system take.
pub fn run_coupled<'a>(
    engine: &mut dyn Engine,
    coupled: &mut dyn Coupled,
    options: &RunOptions,
    observers: &mut [Box<dyn Observer + 'a>],
    interrupt: Option<Arc<AtomicBool>>,
) -> Result<Summary> {
    drive(engine, Some(coupled), options, observers, interrupt)
}

fn drive<'a>(
    engine: &mut dyn Engine,
    mut coupled: Option<&mut dyn Coupled>,
    options: &RunOptions,
    observers: &mut [Box<dyn Observer + 'a>],
    interrupt: Option<Arc<AtomicBool>>,
) -> Result<Summary> {
    options.validate()?;
    let start = Instant::now();
    let first_step = engine.state()?.step;
    let tolerance = mass_tolerance(&engine.name());
    let mut diag = engine.evaluate()?;
    check_diagnostics(&diag, tolerance)?;
    for o in observers.iter_mut() {
        if due(o.every(), diag.step) {
            o.observe(&diag, engine)?;
        }
    }
    let asked = |observers: &[Box<dyn Observer + 'a>]| observers.iter().find_map(|o| o.stop());
    let mut stopped = asked(observers);
    let termination = loop {
        if let Some(reason) = stop_reason(&diag, options, interrupt.as_deref()) {
            break reason;
        }
        if stopped.is_some() {
            break Termination::Stopped;
        }
        // Advance to the next step that someone wants to see.
        let cadences = std::iter::once(options.every).chain(observers.iter().map(|o| o.every()).filter(|k| *k > 0));
        let next = cadences.map(|k| (diag.step / k + 1) * k).min().expect("non-empty");
        let next = options.max_steps.map_or(next, |m| next.min(m));
        match coupled.as_deref_mut() {
            None => advance(engine, next - diag.step, &options.stepper, options.final_time)?,
            Some(c) => step_coupled(engine, c, &diag, options)?,
        }
        diag = engine.evaluate()?;
        check_diagnostics(&diag, tolerance)?;
        for o in observers.iter_mut() {
            if due(o.every(), diag.step) && stop_reason(&diag, options, interrupt.as_deref()).is_none() {
                o.observe(&diag, engine)?;
            }
        }
        stopped = asked(observers);
    };
    for o in observers.iter_mut() {
        o.finish(&diag, termination, engine)?;
    }
    Ok(Summary {
        termination,
        steps_this_run: diag.step - first_step,
        diagnostics: diag,
        wall_seconds: start.elapsed().as_secs_f64(),
        engine: engine.name(),
        stop_reason: stopped.filter(|_| termination == Termination::Stopped),
    })
}

/// Takes up to `steps` (≥ 1) steps before `until`, which is not yet reached. An engine that
/// takes none would make the run loop spin forever: that is an error, named after the engine.
fn advance(engine: &mut dyn Engine, steps: u64, stepper: &Stepper, until: Option<f64>) -> Result<()> {
    if engine.advance(steps, stepper, until)? == 0 {
        return Err(Error::invalid("engine", engine.name(), "an engine that takes the steps it is asked for"));
    }
    Ok(())
}

/// One step of the engine (whose state `diag` describes) and of `coupled`, with the h the
/// stepper chooses from both systems' rates, fixed for every engine involved.
fn step_coupled(
    engine: &mut dyn Engine,
    coupled: &mut dyn Coupled,
    diag: &Diagnostics,
    options: &RunOptions,
) -> Result<()> {
    let (max_rate, max_abs_rate) = coupled.prepare(diag.time)?;
    let h = options.stepper.step_size(
        diag.max_rate.max(max_rate),
        diag.max_abs_rate.max(max_abs_rate),
        remaining_time(diag.time, options.final_time),
    );
    let fixed = Stepper::new(options.stepper.scheme, StepSize::Fixed(h))?;
    advance(engine, 1, &fixed, options.final_time)?;
    if let Some(other) = coupled.engine() {
        advance(other, 1, &fixed, options.final_time)?;
    }
    coupled.step(&fixed, h, diag.step)
}

/// Whether an observer with cadence `every` (0: only at the end) wants to see `step`.
fn due(every: u64, step: u64) -> bool {
    every > 0 && step % every == 0
}

fn stop_reason(diag: &Diagnostics, options: &RunOptions, interrupt: Option<&AtomicBool>) -> Option<Termination> {
    if options.max_steps.is_some_and(|m| diag.step >= m) {
        Some(Termination::MaxSteps)
    } else if reached(diag.time, options.final_time) {
        Some(Termination::FinalTime)
    } else if options.tolerance.is_some_and(|tol| diag.max_abs_rate < tol) {
        Some(Termination::Stationary)
    } else if interrupt.is_some_and(|f| f.load(Ordering::SeqCst)) {
        Some(Termination::Interrupted)
    } else {
        None
    }
}
