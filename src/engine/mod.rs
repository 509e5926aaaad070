//! Engines compute, for a model and its particles, the rates a_i and the diagnostics, and
//! advance the weights. [`cpu::CpuEngine`] is the f64 reference every other engine is checked
//! against.

pub mod cells;
pub mod cpu;
pub mod gpu;

use crate::error::Result;
use crate::particles::State;
use crate::stepper::Stepper;

/// What a run records about the current state (SPEC §6 "Monitor").
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Diagnostics {
    /// Steps taken.
    pub step: u64,
    /// Flow time.
    pub time: f64,
    /// V_ε(μᴺ) = F + σ D_ε, for the variants that are gradient flows; `None` for A and B.
    pub energy: Option<f64>,
    /// F(μᴺ) alone (the loss for a network, the negative log-likelihood for the NPMLE).
    pub f_energy: f64,
    /// Σ w_i (1 in exact arithmetic).
    pub mass: f64,
    /// Effective sample size (Σ w_i)² / Σ w_i², between 1 and N.
    pub ess: f64,
    /// max_i |a_i|: zero at a stationary point.
    pub max_abs_rate: f64,
    /// max_i a_i: Euler is stable for h < 1 / max_i a_i.
    pub max_rate: f64,
    /// Weighted mean of each coordinate (raw coordinates, also on the torus).
    pub mean: Vec<f64>,
    /// Weighted variance of each coordinate.
    pub variance: Vec<f64>,
    /// The largest relative truncation bound of the cutoff kernel sums behind these numbers (0
    /// when every pair was summed; see [`cells`]).
    #[serde(default)]
    pub truncation_bound: f64,
}

/// Who computes: the f64 CPU reference or the GPU.
pub trait Engine {
    /// A short description, e.g. `cpu-f64 (2 threads)`.
    fn name(&self) -> String;

    /// The kernel-sum path of the ε-kernel's passes: `f64` on the CPU, the shader's
    /// specialisation on the GPU (`torus-images`, `euclidean-f32`, …; see `frflow bench`).
    fn kernel_path(&self) -> String {
        "f64".into()
    }

    /// The share of the N × N particle pairs the ε-kernel's sums evaluate: below 1 when a cutoff
    /// drops far pairs (see [`cells`]), `None` when every pair is summed.
    fn cutoff_fraction(&self) -> Option<f64> {
        None
    }

    /// Device dispatches one step with `scheme` records (GPU engines; `None` on the CPU): each is
    /// a dependent launch, which sets the floor of a step's time at small N.
    fn dispatches_per_step(&self, scheme: crate::stepper::Scheme) -> Option<usize> {
        let _ = scheme;
        None
    }

    /// Number of particles N.
    fn len(&self) -> usize;

    /// Whether N = 0 (never, for a constructed engine).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Evaluates the rates of the current state and returns its diagnostics. The evaluation is
    /// kept, so the next step does not repeat it.
    fn evaluate(&mut self) -> Result<Diagnostics>;

    /// The rates a_i of the current state.
    fn rates(&mut self) -> Result<Vec<f64>>;

    /// The rates a_ε(μᴺ, x) of the current state at other points x (row-major, d columns):
    /// δF/δm + σ h_ε at x minus its mean under μᴺ. This drives a non-interacting reference
    /// system (SPEC §4) with a larger interacting one.
    fn rates_at(&mut self, points: &[f64]) -> Result<Vec<f64>> {
        let _ = points;
        Err(crate::Error::invalid("engine", self.name(), "an engine that evaluates rates at other points (cpu)"))
    }

    /// Takes up to `steps` steps, stopping early once the flow time reaches `until`; returns the
    /// number of steps taken.
    fn advance(&mut self, steps: u64, stepper: &Stepper, until: Option<f64>) -> Result<u64>;

    /// The current state (log-weights, step, time).
    fn state(&mut self) -> Result<State>;

    /// Replaces the state, e.g. when resuming from a checkpoint.
    fn set_state(&mut self, state: State) -> Result<()>;
}

/// Checks that particles and model belong together, naming the field (both engines call it).
pub fn check_problem(model: &crate::model::Model, particles: &crate::particles::Particles) -> Result<()> {
    if particles.space != model.space {
        return Err(crate::Error::invalid(
            "particles",
            format!("{:?}", particles.space),
            format!("the model's space {:?}", model.space),
        ));
    }
    if model.variant == crate::model::Variant::Exact
        && model.has_divergence()
        && particles.log_initial_density.is_none()
    {
        return Err(crate::Error::invalid(
            "kernel.variant",
            "exact",
            "a kernelized variant (A, B, C, D, D'): the exact oracle needs μ₀'s density, which given positions lack",
        ));
    }
    Ok(())
}

/// The checks of [`Engine::rates_at`]'s `points` (row-major, d per point) on both engines.
pub(crate) fn check_points(model: &crate::model::Model, points: &[f64]) -> Result<()> {
    let d = model.space.dim;
    if points.len() % d != 0 {
        return Err(crate::Error::invalid(
            "points",
            format!("{} values", points.len()),
            format!("a multiple of d = {d}"),
        ));
    }
    crate::error::check_all_finite("points", points)?;
    if !model.variant.uses_kernel() && model.has_divergence() {
        return Err(crate::Error::invalid(
            "kernel.variant",
            "exact",
            "a kernelized variant: the exact oracle knows μᴺ's density only at its own particles",
        ));
    }
    Ok(())
}

/// Remaining time before `until`, or `None` when the run has no final time. Steps stop once this
/// is below a relative 1e-12, so that accumulated rounding in t never adds a sliver of a step.
pub fn remaining_time(time: f64, until: Option<f64>) -> Option<f64> {
    until.map(|t_end| t_end - time)
}

/// Whether `until` has been reached.
pub fn reached(time: f64, until: Option<f64>) -> bool {
    until.is_some_and(|t_end| t_end - time <= 1e-12 * t_end.abs().max(1.0))
}

/// Deterministic pairwise summation (the CPU twin of the shaders' tree reductions).
pub fn pairwise_sum(v: &[f64]) -> f64 {
    if v.len() <= 32 {
        v.iter().sum()
    } else {
        let (a, b) = v.split_at(v.len() / 2);
        pairwise_sum(a) + pairwise_sum(b)
    }
}
