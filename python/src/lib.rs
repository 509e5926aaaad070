//! `frflow._frflow`: the compiled core of the Python package `frflow` (python/frflow/__init__.py
//! holds the keyword API, the docstrings and the result types; this module does the work).
//!
//! - [`ProblemCore`]: a checked problem (model, fixed positions, default run options), built from
//!   TOML text or from the keyword constructor's JSON, with the user's Python potentials.
//! - [`run`]: one run on the CPU or GPU engine, without the GIL; the calling thread watches for
//!   signals (Ctrl-C) and raises the interrupt flag of `frflow::flow::run`.
//! - [`w2_squared`], [`chaos`], [`bandwidth`]: the transport distances and the experiments.
//!
//! Every `frflow::Error` becomes a Python exception (a `ValueError` subclass, see [`to_py`]).

use frflow::Error;
use frflow::config::{Config, EngineChoice, Problem};
use frflow::engine::{Diagnostics, Engine};
use frflow::flow::{Observer, RunOptions, Termination};
use frflow::model::{CustomPotential, Energy, Potential, Reference};
use frflow::particles::{Particles, State};
use frflow::stepper::{Scheme, StepSize, Stepper};
use numpy::{PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::{PyKeyboardInterrupt, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

create_exception!(frflow, FrflowError, PyValueError, "Base class of every error frflow raises (a ValueError).");
create_exception!(
    frflow,
    InvalidValueError,
    FrflowError,
    "A value outside what the method allows; `field`, `value` and `allowed` say which and what would do."
);
create_exception!(frflow, ConfigError, FrflowError, "TOML text that does not parse, or has unknown keys.");
create_exception!(frflow, DataError, FrflowError, "A data file that is missing, unreadable or of the wrong shape.");
create_exception!(
    frflow,
    NumericalError,
    FrflowError,
    "A step that would make a weight non-positive, or a rate, weight or diagnostic that is not finite."
);
create_exception!(
    frflow,
    GpuError,
    FrflowError,
    "No GPU adapter could be opened or used, or the problem does not fit."
);
create_exception!(frflow, FileError, FrflowError, "Reading or writing a file (or an output directory) failed.");

/// The Python exception of an frflow error: the same message, and the error's fields as attributes.
fn to_py(e: Error) -> PyErr {
    let message = e.to_string();
    Python::attach(|py| {
        let (class, attrs): (Bound<'_, pyo3::types::PyType>, Vec<(&str, Py<PyAny>)>) = match &e {
            Error::Invalid { field, value, allowed } => (
                py.get_type::<InvalidValueError>(),
                vec![
                    ("field", field.into_pyobject(py).unwrap().into_any().unbind()),
                    ("value", value.into_pyobject(py).unwrap().into_any().unbind()),
                    ("allowed", allowed.into_pyobject(py).unwrap().into_any().unbind()),
                ],
            ),
            Error::Config { path, .. } => {
                (py.get_type::<ConfigError>(), vec![("path", path.into_pyobject(py).unwrap().into_any().unbind())])
            }
            Error::Data { path, .. } => {
                (py.get_type::<DataError>(), vec![("path", path.into_pyobject(py).unwrap().into_any().unbind())])
            }
            Error::Positivity { step, particle, .. } | Error::NonFinite { step, particle, .. } => (
                py.get_type::<NumericalError>(),
                vec![
                    ("step", step.into_pyobject(py).unwrap().into_any().unbind()),
                    ("particle", particle.into_pyobject(py).unwrap().into_any().unbind()),
                ],
            ),
            Error::NonFiniteResult { step, .. } => {
                (py.get_type::<NumericalError>(), vec![("step", step.into_pyobject(py).unwrap().into_any().unbind())])
            }
            Error::Gpu { .. } | Error::TooLarge { .. } => (py.get_type::<GpuError>(), vec![]),
            Error::Io { .. } | Error::Checkpoint { .. } | Error::Output { .. } => (py.get_type::<FileError>(), vec![]),
            _ => (py.get_type::<FrflowError>(), vec![]),
        };
        match class.call1((message.clone(),)) {
            Ok(instance) => {
                for (name, value) in attrs {
                    let _ = instance.setattr(name, value);
                }
                PyErr::from_value(instance)
            }
            Err(err) => err,
        }
    })
}

fn invalid(field: &str, value: impl std::fmt::Display, allowed: &str) -> PyErr {
    to_py(Error::invalid(field, value, allowed))
}

/// The bit pattern of a position: the key of a Python potential's precomputed values.
fn key(x: &[f64]) -> Vec<u64> {
    x.iter().map(|v| v.to_bits()).collect()
}

/// `f(x)` for an (n, d) array `x`, checked to be n numbers (as float64).
fn call_potential(py: Python<'_>, f: &Py<PyAny>, x: &[f64], d: usize, field: &str) -> PyResult<Vec<f64>> {
    let n = x.len() / d;
    let array = PyArray1::from_slice(py, x).reshape([n, d])?;
    let out = f.call1(py, (array,))?;
    let np = py.import("numpy")?;
    let out = np.call_method1("asarray", (out, "float64"))?;
    let out = out.cast_into::<numpy::PyArrayDyn<f64>>().map_err(PyErr::from)?;
    if out.shape() != [n] {
        return Err(invalid(
            field,
            format!("a return value of shape {:?}", out.shape()),
            &format!("U(x) for x of shape ({n}, {d}) returns an array of shape ({n},)"),
        ));
    }
    Ok(out.to_vec()?)
}

/// A Python function U(x: (N, d)) -> (N,) as a [`CustomPotential`]: called once, vectorised, on
/// the particles (whose positions never move); at any other point (the quadrature nodes of a
/// smoothed Gibbs reference) it is called on that one point, taking the GIL.
fn python_potential(
    py: Python<'_>,
    f: Py<PyAny>,
    positions: &[f64],
    d: usize,
    field: &str,
) -> PyResult<CustomPotential> {
    let values = call_potential(py, &f, positions, d, field)?;
    let table: HashMap<Vec<u64>, f64> = positions.chunks_exact(d).map(key).zip(values).collect();
    let name = f
        .bind(py)
        .getattr("__qualname__")
        .and_then(|q| q.extract::<String>())
        .unwrap_or_else(|_| "<callable>".to_string());
    let name = format!("Python function `{name}` ({field})");
    let field = field.to_string();
    Ok(CustomPotential::new(name, move |x: &[f64]| {
        if let Some(v) = table.get(&key(x)) {
            return *v;
        }
        // A failing call shows as a non-finite value, which the model reports with the point.
        Python::attach(|py| call_potential(py, &f, x, x.len(), &field).map_or(f64::NAN, |v| v[0]))
    }))
}

/// A checked problem: the model (with any Python potentials), the fixed positions, the run options
/// of its config and which engine it asks for.
#[pyclass(module = "frflow._frflow", frozen)]
struct ProblemCore {
    problem: Problem,
    /// Whether the config said when to stop (the keyword constructor leaves that to `run`).
    has_time: bool,
}

#[pymethods]
impl ProblemCore {
    /// Builds from `text` (TOML when `toml`, else the keyword constructor's JSON), relative data
    /// paths in `base_dir`; `positions` (N × d) replace the sampled ones; `potentials` are
    /// (where, index, U) with where = "energy" or "reference", U replacing the placeholder there.
    #[new]
    #[pyo3(signature = (text, origin, base_dir, toml, positions=None, potentials=Vec::new()))]
    fn new(
        py: Python<'_>,
        text: &str,
        origin: &str,
        base_dir: &str,
        toml: bool,
        positions: Option<PyReadonlyArray2<'_, f64>>,
        potentials: Vec<(String, usize, Py<PyAny>)>,
    ) -> PyResult<Self> {
        let text = if toml {
            text.to_string()
        } else {
            let json: serde_json::Value =
                serde_json::from_str(text).map_err(|e| invalid("problem", e, "a JSON object of config keys"))?;
            let value = ::toml::Value::try_from(json)
                .map_err(|e| invalid("problem", e, "keywords with TOML values (no None)"))?;
            ::toml::to_string(&value).map_err(|e| invalid("problem", e, "keywords with TOML values"))?
        };
        let mut config = Config::from_str(&text, origin).map_err(to_py)?;
        let has_time =
            config.time.steps.is_some() || config.time.final_time.is_some() || config.time.tolerance.is_some();
        if !has_time {
            // `run` then needs steps, final_time or tolerance (see `run_options`).
            config.time.steps = Some(0);
        }
        let base = Path::new(base_dir).to_path_buf();
        let mut problem = py.detach(|| config.build(&base)).map_err(to_py)?;
        let d = problem.model.space.dim;
        if let Some(p) = positions {
            let shape = p.shape().to_vec();
            if shape.len() != 2 || shape[1] != d || shape[0] == 0 {
                return Err(invalid(
                    "positions",
                    format!("an array of shape {shape:?}"),
                    &format!("an array of shape (N, {d}) with N ≥ 1"),
                ));
            }
            let flat = p.as_array().iter().copied().collect();
            problem.particles = Particles::from_positions(problem.model.space, flat).map_err(to_py)?;
        }
        for (place, index, f) in potentials {
            let positions = &problem.particles.positions;
            match place.as_str() {
                "energy" => {
                    let field = format!("energy[{index}].potential");
                    let u = python_potential(py, f, positions, d, &field)?;
                    problem.model.energy[index] = Energy::Potential(Potential::Custom(u));
                }
                _ => {
                    let u = python_potential(py, f, positions, d, "reference.potential")?;
                    problem.model.reference = Reference::Gibbs(Potential::Custom(u));
                }
            }
        }
        Ok(ProblemCore { problem, has_time })
    }

    /// The fixed positions, N × d (inside the cell on a torus).
    #[getter]
    fn positions<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let p = &self.problem.particles;
        PyArray1::from_slice(py, &p.positions).reshape([p.len(), p.space.dim])
    }

    /// N.
    #[getter]
    fn n(&self) -> usize {
        self.problem.particles.len()
    }

    /// d.
    #[getter]
    fn dim(&self) -> usize {
        self.problem.model.space.dim
    }

    /// The model's main settings and the config's run options, as a dict.
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (p, m) = (&self.problem, &self.problem.model);
        let out = PyDict::new(py);
        out.set_item("variant", m.variant.name())?;
        out.set_item("sigma", m.sigma)?;
        out.set_item("epsilon", m.kernel.width)?;
        out.set_item("divergence", format!("{:?}", m.divergence).to_lowercase())?;
        out.set_item("domain", format!("{:?}", m.space.domain))?;
        out.set_item("energies", m.energy.iter().map(Energy::describe).collect::<Vec<_>>())?;
        out.set_item("engine", p.engine.name())?;
        out.set_item("device", p.device.clone())?;
        out.set_item("seed", p.seed)?;
        if self.has_time {
            out.set_item("steps", p.run.max_steps)?;
            out.set_item("final_time", p.run.final_time)?;
            out.set_item("tolerance", p.run.tolerance)?;
        }
        out.set_item("every", p.output.every)?;
        Ok(out)
    }
}

/// The run options: the keywords where given, else the config's.
#[allow(clippy::too_many_arguments)]
fn run_options(
    core: &ProblemCore,
    steps: Option<u64>,
    final_time: Option<f64>,
    tolerance: Option<f64>,
    h: Option<&Bound<'_, PyAny>>,
    scheme: Option<&str>,
    every: Option<u64>,
) -> PyResult<RunOptions> {
    let config = core.problem.run;
    let scheme = match scheme {
        None => config.stepper.scheme,
        Some("euler") => Scheme::Euler,
        Some("exponential" | "mirror") => Scheme::Exponential,
        Some(other) => return Err(invalid("scheme", other, "euler or exponential")),
    };
    let auto = StepSize::Auto { safety: 0.5, h_max: 0.1 };
    let step_size = match h {
        None => config.stepper.step_size,
        Some(h) => match h.extract::<f64>() {
            Ok(v) => StepSize::Fixed(v),
            Err(_) => match h.extract::<String>().as_deref() {
                Ok("auto") => match config.stepper.step_size {
                    StepSize::Auto { .. } => config.stepper.step_size,
                    StepSize::Fixed(_) => auto,
                },
                _ => return Err(invalid("h", h.repr()?, "a number > 0, or \"auto\"")),
            },
        },
    };
    let termination_given = steps.is_some() || final_time.is_some() || tolerance.is_some();
    let (max_steps, final_time, tolerance) = if termination_given || !core.has_time {
        (steps, final_time, tolerance)
    } else {
        (config.max_steps, config.final_time, config.tolerance)
    };
    let options = RunOptions {
        stepper: Stepper::new(scheme, step_size).map_err(to_py)?,
        max_steps,
        final_time,
        tolerance,
        every: every.unwrap_or(core.problem.output.every),
    };
    options.validate().map_err(|e| match e {
        Error::Invalid { field, value, .. } if field == "time" => to_py(Error::Invalid {
            field: "steps".into(),
            value,
            allowed: "at least one of steps=, final_time=, tolerance= (otherwise the run never ends)".into(),
        }),
        e => to_py(e),
    })?;
    Ok(options)
}

/// Builds the engine as the frflow tool does (`auto`: a hardware GPU when there is one, else the
/// CPU engine), silently.
fn build_engine(choice: EngineChoice, device: Option<&str>, problem: &Problem) -> frflow::Result<Box<dyn Engine>> {
    let (model, particles) = (problem.model.clone(), problem.particles.clone());
    frflow::runner::build_engine_noting(choice, device, problem.gpu, model, particles, |_| {})
}

/// Records the diagnostics every `every` steps and at the end, and calls the user's callback.
struct Recorder {
    every: u64,
    rows: Arc<Mutex<Vec<Diagnostics>>>,
    callback: Option<Py<PyAny>>,
    /// An exception the callback raised (re-raised after the run).
    error: Arc<Mutex<Option<PyErr>>>,
    stop: bool,
}

impl Observer for Recorder {
    fn every(&self) -> u64 {
        self.every
    }

    fn observe(&mut self, d: &Diagnostics, _: &mut dyn Engine) -> frflow::Result<()> {
        self.rows.lock().unwrap().push(d.clone());
        if let Some(callback) = &self.callback {
            let outcome = Python::attach(|py| -> PyResult<bool> {
                let result = callback.call1(py, (diagnostics_dict(py, d)?,))?;
                // Only an explicit False stops the run (None, the usual return, goes on).
                Ok(result.bind(py).is_instance_of::<pyo3::types::PyBool>() && !result.extract::<bool>(py)?)
            });
            match outcome {
                Ok(stop) => self.stop |= stop,
                Err(e) => {
                    *self.error.lock().unwrap() = Some(e);
                    return Err(Error::invalid("callback", "an exception", "a callback that returns"));
                }
            }
        }
        Ok(())
    }

    fn stop(&self) -> Option<String> {
        self.stop.then(|| "the callback returned False".to_string())
    }

    fn finish(&mut self, d: &Diagnostics, _: Termination, _: &mut dyn Engine) -> frflow::Result<()> {
        let mut rows = self.rows.lock().unwrap();
        if rows.last().is_none_or(|r| r.step != d.step) {
            rows.push(d.clone());
        }
        Ok(())
    }
}

fn diagnostics_dict<'py>(py: Python<'py>, d: &Diagnostics) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    out.set_item("step", d.step)?;
    out.set_item("time", d.time)?;
    out.set_item("energy", d.energy)?;
    out.set_item("f_energy", d.f_energy)?;
    out.set_item("mass", d.mass)?;
    out.set_item("ess", d.ess)?;
    out.set_item("max_abs_rate", d.max_abs_rate)?;
    out.set_item("max_rate", d.max_rate)?;
    out.set_item("mean", PyArray1::from_slice(py, &d.mean))?;
    out.set_item("variance", PyArray1::from_slice(py, &d.variance))?;
    out.set_item("truncation_bound", d.truncation_bound)?;
    Ok(out)
}

fn termination_name(t: Termination) -> &'static str {
    match t {
        Termination::MaxSteps => "max_steps",
        Termination::FinalTime => "final_time",
        Termination::Stationary => "stationary",
        Termination::Interrupted => "interrupted",
        Termination::Stopped => "stopped",
    }
}

/// What a run thread hands back.
struct Finished {
    summary: frflow::flow::Summary,
    state: State,
}

/// One run of `core`'s problem. Returns a dict (see `frflow.Result`); with "interrupted" = True
/// when Ctrl-C (a KeyboardInterrupt) stopped it, the state being the one reached.
#[pyfunction]
#[pyo3(signature = (core, engine=None, device=None, steps=None, final_time=None, tolerance=None, h=None, scheme=None, every=None, callback=None, resume=None))]
#[allow(clippy::too_many_arguments)]
fn run<'py>(
    py: Python<'py>,
    core: &ProblemCore,
    engine: Option<&str>,
    device: Option<String>,
    steps: Option<u64>,
    final_time: Option<f64>,
    tolerance: Option<f64>,
    h: Option<&Bound<'py, PyAny>>,
    scheme: Option<&str>,
    every: Option<u64>,
    callback: Option<Py<PyAny>>,
    resume: Option<(PyReadonlyArray1<'py, f64>, u64, f64)>,
) -> PyResult<Bound<'py, PyDict>> {
    let options = run_options(core, steps, final_time, tolerance, h, scheme, every)?;
    let choice = match engine {
        None => core.problem.engine,
        Some(e) => e.parse::<EngineChoice>().map_err(to_py)?,
    };
    let device = device.or_else(|| core.problem.device.clone());
    let resume = match resume {
        None => None,
        Some((lw, step, time)) => {
            let log_weights = lw.as_array().to_vec();
            if log_weights.len() != core.problem.particles.len() {
                return Err(invalid(
                    "resume",
                    format!("{} log-weights", log_weights.len()),
                    &format!("the result of a run of this problem ({} particles)", core.problem.particles.len()),
                ));
            }
            Some(State { log_weights, step, time })
        }
    };
    let rows = Arc::new(Mutex::new(Vec::new()));
    let callback_error = Arc::new(Mutex::new(None));
    let recorder =
        Recorder { every: options.every, rows: rows.clone(), callback, error: callback_error.clone(), stop: false };
    let interrupt = Arc::new(AtomicBool::new(false));
    let problem = &core.problem;
    let mut signal: Option<PyErr> = None;
    let outcome = std::thread::scope(|s| {
        let flag = interrupt.clone();
        let worker = s.spawn(move || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> frflow::Result<Finished> {
                let mut engine = build_engine(choice, device.as_deref(), problem)?;
                if let Some(state) = resume {
                    engine.set_state(state)?;
                }
                let mut observers: Vec<Box<dyn Observer>> = vec![Box::new(recorder)];
                let summary = frflow::flow::run(engine.as_mut(), &options, &mut observers, Some(flag))?;
                Ok(Finished { summary, state: engine.state()? })
            }))
        });
        // Wait without the GIL, looking at the signals (only the main thread sees them) meanwhile.
        loop {
            py.detach(|| std::thread::sleep(Duration::from_millis(10)));
            if worker.is_finished() {
                break;
            }
            if signal.is_none()
                && let Err(e) = py.check_signals()
            {
                signal = Some(e);
                interrupt.store(true, Ordering::SeqCst);
            }
        }
        py.detach(|| worker.join())
    });
    if let Some(e) = callback_error.lock().unwrap().take() {
        return Err(e);
    }
    let finished = match outcome {
        Ok(Ok(Ok(f))) => f,
        Ok(Ok(Err(e))) => return Err(to_py(e)),
        _ => return Err(FrflowError::new_err("internal error: the run panicked (a bug in frflow; please report it)")),
    };
    let interrupted = match signal {
        None => false,
        Some(e) if e.is_instance_of::<PyKeyboardInterrupt>(py) => true,
        Some(e) => return Err(e),
    };
    let out = PyDict::new(py);
    let weights = finished.state.weights();
    out.set_item("weights", PyArray1::from_vec(py, weights))?;
    out.set_item("log_weights", PyArray1::from_vec(py, finished.state.log_weights.clone()))?;
    out.set_item("positions", core.positions(py)?)?;
    out.set_item("step", finished.state.step)?;
    out.set_item("time", finished.state.time)?;
    let s = &finished.summary;
    out.set_item("termination", termination_name(s.termination))?;
    out.set_item("stop_reason", s.stop_reason.clone())?;
    out.set_item("engine", s.engine.clone())?;
    out.set_item("wall_seconds", s.wall_seconds)?;
    out.set_item("steps_this_run", s.steps_this_run)?;
    out.set_item("diagnostics", diagnostics_dict(py, &s.diagnostics)?)?;
    out.set_item("interrupted", interrupted)?;
    out.set_item("trace", trace_columns(py, &rows.lock().unwrap(), core.problem.model.space.dim)?)?;
    Ok(out)
}

/// The trace as columns (the names of the CLI's trace.csv).
fn trace_columns<'py>(py: Python<'py>, rows: &[Diagnostics], d: usize) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    let column = |f: &dyn Fn(&Diagnostics) -> f64| PyArray1::from_vec(py, rows.iter().map(f).collect());
    out.set_item("step", PyArray1::from_vec(py, rows.iter().map(|r| r.step).collect()))?;
    out.set_item("time", column(&|r| r.time))?;
    out.set_item("energy", column(&|r| r.energy.unwrap_or(f64::NAN)))?;
    out.set_item("f_energy", column(&|r| r.f_energy))?;
    out.set_item("mass", column(&|r| r.mass))?;
    out.set_item("ess", column(&|r| r.ess))?;
    out.set_item("max_abs_rate", column(&|r| r.max_abs_rate))?;
    out.set_item("max_rate", column(&|r| r.max_rate))?;
    for k in 0..d {
        out.set_item(format!("mean_{k}"), column(&|r| r.mean[k]))?;
    }
    for k in 0..d {
        out.set_item(format!("variance_{k}"), column(&|r| r.variance[k]))?;
    }
    out.set_item("truncation_bound", column(&|r| r.truncation_bound))?;
    Ok(out)
}

/// W₂² between Σ wx_i δ_{x_i} and Σ wy_j δ_{y_j} (x: n × d, y: m × d), without the GIL.
#[pyfunction]
#[pyo3(signature = (x, wx, y, wy, method, side=None, epsilon=None))]
#[allow(clippy::too_many_arguments)]
fn w2_squared(
    py: Python<'_>,
    x: PyReadonlyArray2<'_, f64>,
    wx: PyReadonlyArray1<'_, f64>,
    y: PyReadonlyArray2<'_, f64>,
    wy: PyReadonlyArray1<'_, f64>,
    method: &str,
    side: Option<f64>,
    epsilon: Option<f64>,
) -> PyResult<f64> {
    use frflow::transport::{Cost, SinkhornOptions, exact_ot, sinkhorn_divergence, w2_squared_1d};
    let d = x.shape()[1];
    if y.shape()[1] != d {
        return Err(invalid("y", format!("{} columns", y.shape()[1]), &format!("{d} columns, as x")));
    }
    for (name, w, n) in [("wx", &wx, x.shape()[0]), ("wy", &wy, y.shape()[0])] {
        if w.len() != n {
            return Err(invalid(name, format!("{} weights", w.len()), &format!("{n} weights (one per point)")));
        }
    }
    let (x, wx, y, wy) = (
        x.as_array().iter().copied().collect::<Vec<f64>>(),
        wx.to_vec()?,
        y.as_array().iter().copied().collect::<Vec<f64>>(),
        wy.to_vec()?,
    );
    let cost = match side {
        None => Cost::euclidean(d),
        Some(side) => Cost::torus(d, side),
    }
    .map_err(to_py)?;
    let value = py.detach(|| match method {
        "1d" => {
            if d != 1 || side.is_some() {
                return Err(Error::invalid(
                    "method",
                    "1d",
                    "points on the line (d = 1, no side); use exact or sinkhorn otherwise",
                ));
            }
            w2_squared_1d(&x, &wx, &y, &wy)
        }
        "exact" => exact_ot(&cost, &x, &wx, &y, &wy, false).map(|r| r.cost),
        "sinkhorn" => {
            let options = SinkhornOptions { epsilon, ..Default::default() };
            sinkhorn_divergence(&cost, &x, &wx, &y, &wy, &options).map(|r| r.value.max(0.0))
        }
        other => Err(Error::invalid("method", other, "exact, sinkhorn or 1d")),
    });
    value.map_err(to_py)
}

/// A sweep's outcome as JSON: (summary, runs, computed, reused).
type SweepJson = (String, String, usize, usize);

fn json<T: serde::Serialize>(value: &T) -> PyResult<String> {
    serde_json::to_string(value).map_err(|e| FrflowError::new_err(e.to_string()))
}

/// Runs (or resumes) a chaos sweep from its TOML text into `out`, without the GIL.
#[pyfunction]
#[pyo3(signature = (text, origin, base_dir, out, report=false))]
fn chaos(py: Python<'_>, text: &str, origin: &str, base_dir: &str, out: &str, report: bool) -> PyResult<SweepJson> {
    use frflow::experiments::chaos::{ChaosSpec, SweepOptions, run_chaos};
    let spec = ChaosSpec::from_str(text, origin, Path::new(base_dir)).map_err(to_py)?;
    let options = SweepOptions { out: out.into(), report, progress: false };
    let outcome = py.detach(|| run_chaos(&spec, &options)).map_err(to_py)?;
    Ok((json(&outcome.summary)?, json(&outcome.runs)?, outcome.computed, outcome.reused))
}

/// Runs (or resumes) a bandwidth sweep from its TOML text into `out`, without the GIL.
#[pyfunction]
#[pyo3(signature = (text, origin, base_dir, out, report=false))]
fn bandwidth(py: Python<'_>, text: &str, origin: &str, base_dir: &str, out: &str, report: bool) -> PyResult<SweepJson> {
    use frflow::experiments::bandwidth::{BandwidthSpec, run_bandwidth};
    use frflow::experiments::chaos::SweepOptions;
    let spec = BandwidthSpec::from_str(text, origin, Path::new(base_dir)).map_err(to_py)?;
    let options = SweepOptions { out: out.into(), report, progress: false };
    let outcome = py.detach(|| run_bandwidth(&spec, &options)).map_err(to_py)?;
    Ok((json(&outcome.summary)?, json(&outcome.runs)?, outcome.computed, outcome.reused))
}

/// The GPU adapters wgpu sees, as dicts (name, kind, backend, …).
#[pyfunction]
fn adapters<'py>(py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for a in py.detach(frflow::engine::gpu::context::list_adapters) {
        let text = json(&a)?;
        list.append(py.import("json")?.call_method1("loads", (text,))?)?;
    }
    Ok(list)
}

#[pymodule]
fn _frflow(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<ProblemCore>()?;
    m.add_function(wrap_pyfunction!(run, m)?)?;
    m.add_function(wrap_pyfunction!(w2_squared, m)?)?;
    m.add_function(wrap_pyfunction!(chaos, m)?)?;
    m.add_function(wrap_pyfunction!(bandwidth, m)?)?;
    m.add_function(wrap_pyfunction!(adapters, m)?)?;
    m.add("FrflowError", py.get_type::<FrflowError>())?;
    m.add("InvalidValueError", py.get_type::<InvalidValueError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("DataError", py.get_type::<DataError>())?;
    m.add("NumericalError", py.get_type::<NumericalError>())?;
    m.add("GpuError", py.get_type::<GpuError>())?;
    m.add("FileError", py.get_type::<FileError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
