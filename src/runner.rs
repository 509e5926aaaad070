//! A run with its outputs in a directory: what `frflow run`, `frflow demo` and `--resume` do.
//!
//! Output layout (documented in the README): `config.toml` (the run's config), `run.json` (where
//! relative data paths resolve), `positions.npy`, `trace.csv`, `snapshots/weights_<step>.npy`,
//! `checkpoint.bin`, and at the end `weights.npy`, `log_weights.npy`, `summary.json`,
//! `particles.png` and `particles.svg`.

use crate::config::{Config, EngineChoice, GpuSettings, Problem};
use crate::engine::Engine;
use crate::engine::cpu::CpuEngine;
use crate::engine::gpu::GpuEngine;
use crate::engine::gpu::context::GpuContext;
use crate::error::{Error, Result};
use crate::flow::{Observer, Summary, run};
use crate::io::guard::{LOCK_FILE, OutputLock};
use crate::io::output::{read_checkpoint_full, write_atomic, write_npy};
use crate::model::Model;
use crate::observe::{Checkpoints, Progress, Snapshots, Trace};
use crate::particles::Particles;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// Builds the engine a config asks for, `auto` as [`EngineChoice::resolve`] decides it; when
/// `auto` takes the CPU engine, or the GPU engine fails to build and it falls back to the CPU
/// engine, it says so on stderr.
pub fn build_engine(
    choice: EngineChoice,
    device: Option<&str>,
    gpu: GpuSettings,
    model: Model,
    particles: Particles,
) -> Result<Box<dyn Engine>> {
    build_engine_noting(choice, device, gpu, model, particles, |note| eprintln!("frflow: {note}"))
}

/// [`build_engine`], passing its note (why `auto` uses the CPU engine) to `note` instead of
/// printing it.
pub fn build_engine_noting(
    choice: EngineChoice,
    device: Option<&str>,
    settings: GpuSettings,
    model: Model,
    particles: Particles,
    note: impl FnOnce(&str),
) -> Result<Box<dyn Engine>> {
    let gpu = |model, particles| -> Result<Box<dyn Engine>> {
        Ok(Box::new(GpuEngine::with_options(GpuContext::new(device)?, model, particles, settings.options())?))
    };
    let auto = choice == EngineChoice::Auto;
    match choice.resolve() {
        EngineChoice::Gpu if auto => match gpu(model.clone(), particles.clone()) {
            Ok(engine) => return Ok(engine),
            Err(e) => note(&format!("GPU engine unavailable ({e}); using the CPU engine")),
        },
        EngineChoice::Gpu => return gpu(model, particles),
        _ if auto => note("no hardware GPU found; using the CPU engine"),
        _ => {}
    }
    Ok(Box::new(CpuEngine::new(model, particles)?))
}

/// Where the run's relative data paths resolve, saved so that `--resume` finds the same files,
/// and the fingerprint of the effective problem that `--resume` checks.
#[derive(serde::Serialize, serde::Deserialize)]
struct RunInfo {
    base_dir: PathBuf,
    frflow_version: String,
    #[serde(default)]
    fingerprint: Option<Fingerprint>,
}

/// What a run's results depend on: the config (its text as the run started) and the contents of
/// every data file it reads.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Fingerprint {
    /// FNV-1a 64 of everything below, in hex: also stamped into every checkpoint.
    combined: String,
    /// The config text the run started with.
    config: String,
    /// Each data file: the key naming it, its path and FNV-1a 64 of its bytes.
    data: Vec<DataPrint>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct DataPrint {
    key: String,
    path: PathBuf,
    bytes: u64,
    hash: String,
}

/// The largest data file fingerprinted (and read), in bytes: 16 GiB.
const MAX_DATA_BYTES: u64 = 16 << 30;

impl Fingerprint {
    fn of(config: &Config, text: &str, base_dir: &Path) -> Result<Fingerprint> {
        let mut data = Vec::new();
        for (key, file) in config.data_files() {
            let path = base_dir.join(&file);
            let bytes = crate::io::guard::read_regular(&path, MAX_DATA_BYTES)?;
            data.push(DataPrint {
                key,
                path: file,
                bytes: bytes.len() as u64,
                hash: format!("{:016x}", crate::io::guard::fnv64(&bytes)),
            });
        }
        let mut all = format!("{:016x}", crate::io::guard::fnv64(text.as_bytes()));
        for d in &data {
            all.push_str(&format!("|{}|{}|{}", d.key, d.bytes, d.hash));
        }
        let combined = format!("{:016x}", crate::io::guard::fnv64(all.as_bytes()));
        Ok(Fingerprint { combined, config: text.to_string(), data })
    }

    fn value(&self) -> u64 {
        u64::from_str_radix(&self.combined, 16).unwrap_or(0)
    }

    /// Why `now` (the same run's inputs read today) is not this fingerprint: the config keys whose
    /// values changed, or the data files whose contents did.
    fn changes(&self, now_text: &str, now: &Fingerprint) -> Vec<String> {
        let mut changes = Vec::new();
        let table = |t: &str| t.parse::<toml::Table>().ok().map(toml::Value::Table);
        if let (Some(a), Some(b)) = (table(&self.config), table(now_text)) {
            diff_values("", &a, &b, &mut changes);
        } else if self.config != now_text {
            changes.push("config.toml text".into());
        }
        for (i, d) in self.data.iter().enumerate() {
            match now.data.iter().find(|n| n.key == d.key) {
                Some(n) if n.hash == d.hash && n.bytes == d.bytes => {}
                Some(n) => changes.push(format!(
                    "the contents of data file {} (`{}`: {} bytes, hash {} → {} bytes, hash {})",
                    n.path.display(),
                    d.key,
                    d.bytes,
                    d.hash,
                    n.bytes,
                    n.hash
                )),
                None if i < now.data.len() => changes.push(format!("data file `{}`", d.key)),
                None => changes.push(format!("data file `{}` (no longer in the config)", d.key)),
            }
        }
        changes
    }
}

/// A value for a message: TOML's text, cut to 60 characters.
fn shown(v: Option<&toml::Value>) -> String {
    match v {
        None => "absent".into(),
        Some(v) => {
            let t = v.to_string();
            if t.chars().count() > 60 { format!("{}…", t.chars().take(60).collect::<String>()) } else { t }
        }
    }
}

/// The dotted keys whose values differ between `a` and `b`, with both values.
fn diff_values(path: &str, a: &toml::Value, b: &toml::Value, out: &mut Vec<String>) {
    match (a, b) {
        (toml::Value::Table(x), toml::Value::Table(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => diff_values(&p, u, v, out),
                    (u, v) => out.push(format!("`{p}` ({} → {})", shown(u), shown(v))),
                }
            }
        }
        (toml::Value::Array(x), toml::Value::Array(y)) if x.len() == y.len() => {
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                diff_values(&format!("{path}[{i}]"), u, v, out);
            }
        }
        (u, v) if u != v => out.push(format!("`{path}` ({} → {})", shown(Some(u)), shown(Some(v)))),
        _ => {}
    }
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
    /// A new run may replace a previous run in its output directory (which is cleared first).
    pub force: bool,
}

/// Files whose presence marks a directory as holding a run.
const RUN_FILES: [&str; 6] =
    ["run.json", "config.toml", "checkpoint.bin", "trace.csv", "positions.npy", "summary.json"];

/// Takes `out` for a new run: creates and locks it; a directory holding another run is refused
/// unless `force` (then cleared), and one holding anything else is refused.
/// Returns the lock and whether the directory was created here.
fn claim_new(out: &Path, force: bool) -> Result<(OutputLock, bool)> {
    let created = !out.exists();
    let lock = OutputLock::acquire(out)?;
    let entries: Vec<_> = std::fs::read_dir(out)
        .map_err(|e| Error::io(out, e))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name() != LOCK_FILE)
        .collect();
    if entries.is_empty() {
        return Ok((lock, created));
    }
    let names: Vec<String> = entries.iter().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    let found: Vec<&str> = RUN_FILES.into_iter().filter(|f| names.iter().any(|n| n == f)).collect();
    let fail = |message: String| Error::Output { path: out.display().to_string(), message };
    if found.is_empty() {
        let some: Vec<&str> = names.iter().take(3).map(String::as_str).collect();
        return Err(fail(format!(
            "not empty ({}{}) and holds no frflow run; a run is written only into a new or empty directory \
             (or over a previous run with --force)",
            some.join(", "),
            if names.len() > 3 { ", …" } else { "" }
        )));
    }
    if !force {
        return Err(fail(format!(
            "holds another run ({}); continue it with `frflow run --resume {}`, or pass --force to delete it \
             and start this run there",
            found.join(", "),
            out.display()
        )));
    }
    eprintln!("frflow: --force: deleting the previous run in {}", out.display());
    for e in entries {
        let p = e.path();
        let removed = if e.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        removed.map_err(|err| Error::io(&p, err))?;
    }
    Ok((lock, false))
}

/// Starts a run of the config file at `path` (relative data paths resolve in its directory) into
/// `out`. The file must be a regular file of at most
/// [`MAX_CONFIG_BYTES`](crate::io::guard::MAX_CONFIG_BYTES); errors name it.
pub fn run_file(path: &Path, out: &Path, request: RunRequest) -> Result<Summary> {
    let text = crate::io::guard::read_config_text(path)?;
    // `run.toml` has the parent "": relative data paths resolve in ".".
    let base = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    start(&text, &path.display().to_string(), base, out, request)
}

/// Starts a run of the config `text` (relative paths resolve in `base_dir`) into `out`.
///
/// The directory must be new, empty, or (with `request.force`) hold a previous run, which is
/// deleted; it is locked for the run's duration. Nothing is created when the config is invalid,
/// and a directory created here is removed again when the run fails before its first trace row.
pub fn run_config(text: &str, base_dir: &Path, out: &Path, request: RunRequest) -> Result<Summary> {
    start(text, "<config text>", base_dir, out, request)
}

fn start(text: &str, origin: &str, base_dir: &Path, out: &Path, request: RunRequest) -> Result<Summary> {
    let config = Config::from_str(text, origin)?;
    let problem = config.build(base_dir)?;
    let fingerprint = Fingerprint::of(&config, text, base_dir)?;
    let (lock, created) = claim_new(out, request.force)?;
    let result = (|| {
        write_atomic(&out.join("config.toml"), text.as_bytes())?;
        let stamp = fingerprint.value();
        let info = RunInfo {
            base_dir: std::path::absolute(base_dir).map_err(|e| Error::io(base_dir, e))?,
            frflow_version: env!("CARGO_PKG_VERSION").into(),
            fingerprint: Some(fingerprint),
        };
        write_atomic(&out.join("run.json"), serde_json::to_string_pretty(&info).expect("plain data").as_bytes())?;
        let p = &problem.particles;
        write_npy(&out.join("positions.npy"), &[p.len() as u64, p.space.dim as u64], &p.positions)?;
        execute(problem, out, None, stamp, request)
    })();
    // A run that failed before its first trace row (no engine, a non-finite start) leaves nothing
    // to read or resume:
    // remove the directory it created rather than leave a half-written one.
    let no_rows = || std::fs::read_to_string(out.join("trace.csv")).map_or(true, |t| t.lines().count() <= 1);
    if result.is_err() && created && no_rows() {
        drop(lock);
        let _ = std::fs::remove_dir_all(out);
    }
    result
}

/// Continues the run in `out` from its last checkpoint; the result is bit-for-bit that of an
/// uninterrupted run.
///
/// Refused, naming what changed, when the config or a data file is not what the run started
/// with, or when the checkpoint is damaged or belongs to another run.
pub fn resume(out: &Path, request: RunRequest) -> Result<Summary> {
    if !out.is_dir() {
        return Err(Error::Output {
            path: out.display().to_string(),
            message: "not a directory holding a run (nothing to resume)".into(),
        });
    }
    let _lock = OutputLock::acquire(out)?;
    let config_path = out.join("config.toml");
    let text = crate::io::guard::read_config_text(&config_path)?;
    let info_path = out.join("run.json");
    // run.json holds the config text (at most 4 MiB) escaped as JSON: allow it four times that.
    let info_bytes = crate::io::guard::read_regular(&info_path, 4 * crate::io::guard::MAX_CONFIG_BYTES)?;
    let info: RunInfo = serde_json::from_slice(&info_bytes)
        .map_err(|e| Error::Checkpoint { path: info_path.display().to_string(), message: e.to_string() })?;
    let config = Config::from_str(&text, &config_path.display().to_string())?;
    let Some(recorded) = info.fingerprint else {
        return Err(Error::Checkpoint {
            path: info_path.display().to_string(),
            message: format!(
                "no fingerprint (the run was started by frflow {}); it cannot be checked, so it is not resumed",
                info.frflow_version
            ),
        });
    };
    let now = Fingerprint::of(&config, &recorded.config, &info.base_dir)?;
    let changes = recorded.changes(&text, &now);
    if !changes.is_empty() {
        return Err(Error::Checkpoint {
            path: out.display().to_string(),
            message: format!(
                "the problem changed since the run started: {}; resuming would mix two problems \
                 (start a new run instead)",
                changes.join(", ")
            ),
        });
    }
    let problem = config.build(&info.base_dir)?;
    let ck_path = out.join("checkpoint.bin");
    if !ck_path.exists() {
        return Err(Error::Checkpoint {
            path: ck_path.display().to_string(),
            message: format!(
                "missing: the run stopped before its first checkpoint, so there is nothing to resume; start it \
                 again with `frflow run CONFIG --out {} --force` (its config is saved as {})",
                out.display(),
                config_path.display()
            ),
        });
    }
    let checkpoint = read_checkpoint_full(&ck_path)?;
    let stamp = recorded.value();
    let bad = |message: String| Error::Checkpoint { path: ck_path.display().to_string(), message };
    if checkpoint.fingerprint != stamp {
        return Err(bad(format!(
            "field `fingerprint` is {:016x}, but this run's is {:016x}: the checkpoint belongs to another run",
            checkpoint.fingerprint, stamp
        )));
    }
    let state = checkpoint.state;
    if state.log_weights.len() != problem.particles.len() {
        return Err(bad(format!(
            "field `n` is {}, but the run has {} particles",
            state.log_weights.len(),
            problem.particles.len()
        )));
    }
    if let Some(m) = problem.run.max_steps
        && state.step > m
    {
        return Err(bad(format!("field `step` is {}, beyond the run's time.steps = {m}", state.step)));
    }
    if let Some(t) = problem.run.final_time
        && state.time > t * (1.0 + 1e-12)
    {
        return Err(bad(format!("field `time` is {:e}, beyond the run's time.final_time = {t:e}", state.time)));
    }
    execute(problem, out, Some(state), stamp, request)
}

fn execute(
    problem: Problem,
    out: &Path,
    state: Option<crate::particles::State>,
    fingerprint: u64,
    request: RunRequest,
) -> Result<Summary> {
    let Problem { model, particles, run: options, output, engine, device, gpu, .. } = problem;
    let choice = request.engine.unwrap_or(engine);
    let device = request.device.or(device);
    let dim = model.space.dim;
    let plot_inputs = output.plot.then(|| (model.clone(), particles.clone()));
    let mut engine = build_engine(choice, device.as_deref(), gpu, model, particles)?;
    let resume_step = state.as_ref().map(|s| s.step);
    if let Some(s) = state {
        engine.set_state(s)?;
    }
    let mut observers: Vec<Box<dyn Observer>> = vec![
        Box::new(Progress::new(output.every, options.max_steps, options.final_time)),
        Box::new(Trace::create(&out.join("trace.csv"), dim, output.every, resume_step)?),
        Box::new(Checkpoints::new(&out.join("checkpoint.bin"), output.checkpoint_every.unwrap_or(0), fingerprint)),
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
