//! A run with its outputs in a directory: what `frflow run`, `frflow demo` and `--resume` do.
//!
//! Output layout (documented in the README): `config.toml` (the run's config), `run.json` (where
//! relative data paths resolve), `positions.npy`, `trace.csv`, `snapshots/weights_<step>.npy`,
//! `checkpoint.bin`, and at the end `weights.npy`, `log_weights.npy`, `summary.json`,
//! `particles.png` and `particles.svg`.

use crate::config::{Config, EngineChoice, Problem};
use crate::engine::Engine;
use crate::engine::cpu::CpuEngine;
use crate::engine::gpu::context::{GpuContext, hardware_adapter_available};
use crate::engine::gpu::{GpuEngine, GpuOptions};
use crate::error::{Error, Result};
use crate::flow::{Observer, Summary, run};
use crate::io::output::{read_checkpoint, write_atomic, write_npy};
use crate::model::Model;
use crate::observe::{Checkpoints, Progress, Snapshots, Trace};
use crate::particles::Particles;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// Builds the engine a config asks for. `auto` takes a hardware GPU when one exists and the
/// CPU engine otherwise (saying so on stderr): a software GPU such as lavapipe is slower than
/// the CPU engine, so it is used only when asked for with `gpu` (and a `device` naming it).
pub fn build_engine(
    choice: EngineChoice,
    device: Option<&str>,
    workgroup_size: Option<u32>,
    model: Model,
    particles: Particles,
) -> Result<Box<dyn Engine>> {
    let gpu = |model, particles| -> Result<Box<dyn Engine>> {
        let defaults = GpuOptions::default();
        let options = GpuOptions { kernel_workgroup: workgroup_size.unwrap_or(defaults.kernel_workgroup), ..defaults };
        Ok(Box::new(GpuEngine::with_options(GpuContext::new(device)?, model, particles, options)?))
    };
    match choice {
        EngineChoice::Cpu => Ok(Box::new(CpuEngine::new(model, particles)?)),
        EngineChoice::Gpu => gpu(model, particles),
        EngineChoice::Auto => {
            if hardware_adapter_available() {
                match gpu(model.clone(), particles.clone()) {
                    Ok(engine) => return Ok(engine),
                    Err(e) => eprintln!("frflow: GPU engine unavailable ({e}); using the CPU engine"),
                }
            } else {
                eprintln!("frflow: no hardware GPU found; using the CPU engine");
            }
            Ok(Box::new(CpuEngine::new(model, particles)?))
        }
    }
}

/// Where the run's relative data paths resolve, saved so that `--resume` finds the same files.
#[derive(serde::Serialize, serde::Deserialize)]
struct RunInfo {
    base_dir: PathBuf,
    frflow_version: String,
}

/// Options of a run into a directory beyond its config.
#[derive(Default)]
pub struct RunRequest {
    /// Replaces the config's `engine`.
    pub engine: Option<EngineChoice>,
    /// Replaces the config's `device`.
    pub device: Option<String>,
    /// Raised by Ctrl-C: the run stops cleanly with a final checkpoint.
    pub interrupt: Option<Arc<AtomicBool>>,
    /// More observers (e.g. a test's), called after the built-in ones.
    pub observers: Vec<Box<dyn Observer>>,
}

/// Starts a run of the config `text` (relative paths resolve in `base_dir`) into `out`.
pub fn run_config(text: &str, base_dir: &Path, out: &Path, request: RunRequest) -> Result<Summary> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let config = Config::from_str(text, "config")?;
    let problem = config.build(base_dir)?;
    write_atomic(&out.join("config.toml"), text.as_bytes())?;
    let info = RunInfo {
        base_dir: std::path::absolute(base_dir).map_err(|e| Error::io(base_dir, e))?,
        frflow_version: env!("CARGO_PKG_VERSION").into(),
    };
    write_atomic(&out.join("run.json"), serde_json::to_string_pretty(&info).expect("plain data").as_bytes())?;
    let p = &problem.particles;
    write_npy(&out.join("positions.npy"), &[p.len() as u64, p.space.dim as u64], &p.positions)?;
    execute(problem, out, None, request)
}

/// Continues the run in `out` from its last checkpoint; the result is bit-for-bit that of an
/// uninterrupted run.
pub fn resume(out: &Path, request: RunRequest) -> Result<Summary> {
    let read = |name: &str| {
        let p = out.join(name);
        std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))
    };
    let text = read("config.toml")?;
    let info: RunInfo = serde_json::from_str(&read("run.json")?)
        .map_err(|e| Error::Checkpoint { path: out.display().to_string(), message: format!("run.json: {e}") })?;
    let problem = Config::from_str(&text, &out.join("config.toml").display().to_string())?.build(&info.base_dir)?;
    let state = read_checkpoint(&out.join("checkpoint.bin"))?;
    execute(problem, out, Some(state), request)
}

fn execute(
    problem: Problem,
    out: &Path,
    state: Option<crate::particles::State>,
    request: RunRequest,
) -> Result<Summary> {
    let Problem { model, particles, run: options, output, engine, device, workgroup_size, .. } = problem;
    let choice = request.engine.unwrap_or(engine);
    let device = request.device.or(device);
    let dim = model.space.dim;
    let plot_inputs = output.plot.then(|| (model.clone(), particles.clone()));
    let mut engine = build_engine(choice, device.as_deref(), workgroup_size, model, particles)?;
    let resume_step = state.as_ref().map(|s| s.step);
    if let Some(s) = state {
        engine.set_state(s)?;
    }
    let mut observers: Vec<Box<dyn Observer>> = vec![
        Box::new(Progress::new(output.every, options.max_steps, options.final_time)),
        Box::new(Trace::create(&out.join("trace.csv"), dim, output.every, resume_step)?),
        Box::new(Checkpoints::new(&out.join("checkpoint.bin"), output.checkpoint_every.unwrap_or(0))),
    ];
    if let Some(k) = output.snapshot_every {
        observers.push(Box::new(Snapshots::new(&out.join("snapshots"), k)?));
    }
    observers.extend(request.observers);
    let summary = run(&mut *engine, &options, &mut observers, request.interrupt)?;
    let state = engine.state()?;
    let w = state.weights();
    write_npy(&out.join("weights.npy"), &[w.len() as u64], &w)?;
    write_npy(&out.join("log_weights.npy"), &[w.len() as u64], &state.log_weights)?;
    let json = serde_json::to_string_pretty(&summary).expect("plain data");
    write_atomic(&out.join("summary.json"), json.as_bytes())?;
    if let Some((model, particles)) = plot_inputs {
        crate::plot::plot_particles(&model, &particles, &w, &out.join("particles.png"), &out.join("particles.svg"))?;
        // The application pictures (network fit and loss, NPMLE mixing measure, MMD target), if any.
        crate::pictures::draw_run(out)?;
    }
    Ok(summary)
}
