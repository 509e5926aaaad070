//! The run loop: drives an engine's steps, calls observers at their cadence, and ends with a
//! stated [`Termination`] (the argmin pattern: the step is the engine's, the loop is here).

use crate::engine::{Diagnostics, Engine, reached};
use crate::error::{Error, Result};
use crate::stepper::Stepper;
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
            && !(t.is_finite() && t > 0.0)
        {
            return Err(Error::invalid("time.final_time", t, "a finite number > 0"));
        }
        if let Some(t) = self.tolerance
            && !(t.is_finite() && t > 0.0)
        {
            return Err(Error::invalid("time.tolerance", t, "a finite number > 0"));
        }
        if self.every == 0 {
            return Err(Error::invalid("output.every", 0, "an integer ≥ 1"));
        }
        Ok(())
    }
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
}

/// Something that watches a run: a progress bar, a trace writer, a checkpoint writer.
pub trait Observer {
    /// Called at step 0 and then every `every()` steps; 0 means only at the end.
    fn every(&self) -> u64;

    /// Records the state after `diagnostics.step` steps.
    fn observe(&mut self, diagnostics: &Diagnostics, engine: &mut dyn Engine) -> Result<()>;

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
}

/// Runs `engine` from its current state until a termination condition holds.
///
/// Observers see every state whose step is a multiple of their cadence. The loop never changes
/// the numbers: observing only reads, so a run split at any step and resumed gives the same
/// weights bit for bit.
pub fn run(
    engine: &mut dyn Engine,
    options: &RunOptions,
    observers: &mut [Box<dyn Observer>],
    interrupt: Option<Arc<AtomicBool>>,
) -> Result<Summary> {
    options.validate()?;
    let start = Instant::now();
    let first_step = engine.state()?.step;
    let mut diag = engine.evaluate()?;
    for o in observers.iter_mut() {
        if due(o.every(), diag.step) {
            o.observe(&diag, engine)?;
        }
    }
    let termination = loop {
        if let Some(reason) = stop_reason(&diag, options, interrupt.as_deref()) {
            break reason;
        }
        // Advance to the next step that someone wants to see.
        let cadences = std::iter::once(options.every).chain(observers.iter().map(|o| o.every()).filter(|k| *k > 0));
        let next = cadences.map(|k| (diag.step / k + 1) * k).min().expect("non-empty");
        let next = options.max_steps.map_or(next, |m| next.min(m));
        let taken = engine.advance(next - diag.step, &options.stepper, options.final_time)?;
        diag = engine.evaluate()?;
        // An engine that takes no step before the final time would make this loop spin forever.
        if taken == 0 && !reached(diag.time, options.final_time) {
            return Err(Error::invalid("engine", engine.name(), "an engine that takes the steps it is asked for"));
        }
        for o in observers.iter_mut() {
            if due(o.every(), diag.step) && stop_reason(&diag, options, interrupt.as_deref()).is_none() {
                o.observe(&diag, engine)?;
            }
        }
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
    })
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
