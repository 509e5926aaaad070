//! What every sweep shares: the base problem of a sweep file, the append-only results file that
//! makes a sweep resumable, and the progress bars.

use crate::config::{Config, check_finite};
use crate::error::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The base problem of a sweep: the `[problem]` table (a normal run config) or `problem_file`.
#[derive(Clone, Debug)]
pub struct BaseProblem {
    /// The parsed run config.
    pub config: Config,
    /// Its TOML text (the table as re-serialised, or the file's contents), for fingerprints and reports.
    pub text: String,
    /// Where its relative data paths resolve.
    pub base_dir: PathBuf,
    /// `[problem]` for the inline table, else the problem file's path.
    pub origin: String,
}

/// Parses a sweep file's text into `T` (whose tables deny unknown keys), checking finiteness.
pub fn parse_sweep<T: DeserializeOwned>(text: &str, origin: &str) -> Result<(T, toml::Table)> {
    let toml_error =
        |e: toml::de::Error| Error::Config { path: origin.to_string(), message: crate::config::toml_message(text, &e) };
    let parsed: T = toml::from_str(text).map_err(toml_error)?;
    let table: toml::Table = toml::from_str(text).map_err(toml_error)?;
    check_finite("", &toml::Value::Table(table.clone()))?;
    Ok((parsed, table))
}

/// The base problem from the inline `[problem]` table or the `problem_file` key (exactly one).
/// `sweep_dir` is the sweep file's directory: relative paths resolve there.
pub fn base_problem(
    inline: Option<Config>,
    file: Option<&Path>,
    table: &toml::Table,
    sweep_dir: &Path,
) -> Result<BaseProblem> {
    match (inline, file) {
        (Some(config), None) => {
            let text = toml::to_string(table.get("problem").expect("parsed")).unwrap_or_default();
            Ok(BaseProblem { config, text, base_dir: sweep_dir.to_path_buf(), origin: "[problem]".into() })
        }
        (None, Some(f)) => {
            let path = sweep_dir.join(f);
            let text = crate::io::guard::read_config_text(&path)?;
            let config = Config::from_str(&text, &path.display().to_string())?;
            let base_dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
            Ok(BaseProblem { config, text, base_dir, origin: path.display().to_string() })
        }
        (Some(_), Some(_)) => Err(Error::invalid("problem_file", "given with [problem]", "one of the two")),
        (None, None) => {
            Err(Error::invalid("problem", "missing", "a [problem] table (a run config) or problem_file = \"run.toml\""))
        }
    }
}

/// FNV-1a, 64 bits: a stable fingerprint of what a sweep's results depend on.
pub fn fingerprint(parts: &[&str]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0xff)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// A row of a results file: a fingerprint of the problem and sweep settings it was computed
/// with, its key within the sweep, and its payload.
#[derive(Serialize, serde::Deserialize)]
struct Row<T> {
    fingerprint: String,
    key: String,
    #[serde(flatten)]
    result: T,
}

/// An append-only JSON-lines file of finished results (`results.jsonl`). Every finished run is
/// appended and flushed at once, so an interrupted sweep loses at most the run in progress; a
/// rerun reads the file and skips every key already there with the same fingerprint. Rows from
/// another fingerprint (a changed problem) and a torn last line are ignored.
pub struct ResultsStore<T> {
    path: PathBuf,
    fingerprint: String,
    done: HashMap<String, T>,
    /// Rows ignored because their fingerprint differs.
    pub stale: usize,
}

impl<T: Serialize + DeserializeOwned + Clone> ResultsStore<T> {
    /// Opens (or starts) the results file at `path` for results with `fingerprint`.
    ///
    /// A last line cut by a crash (no final newline) is removed from the file, with a warning, so
    /// that the next row starts on a line of its own; its run is computed again.
    pub fn open(path: &Path, fingerprint: &str) -> Result<Self> {
        let mut done = HashMap::new();
        let mut stale = 0;
        if path.exists() {
            let mut bytes = crate::io::guard::read_regular(path, 1 << 32)?;
            if !bytes.is_empty() && !bytes.ends_with(b"\n") {
                let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                eprintln!(
                    "frflow: warning: {} ends with a cut line ({} bytes, from an interrupted write); \
                     removing it, its run will be computed again",
                    path.display(),
                    bytes.len() - keep
                );
                let f = std::fs::OpenOptions::new().write(true).open(path).map_err(|e| Error::io(path, e))?;
                f.set_len(keep as u64).and_then(|()| f.sync_all()).map_err(|e| Error::io(path, e))?;
                bytes.truncate(keep);
            }
            let text = String::from_utf8_lossy(&bytes);
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                // A line that does not parse (damaged by hand or by a disk) is ignored: its run is computed again.
                if let Ok(row) = serde_json::from_str::<Row<T>>(line) {
                    if row.fingerprint == fingerprint {
                        done.insert(row.key, row.result);
                    } else {
                        stale += 1;
                    }
                }
            }
        }
        Ok(ResultsStore { path: path.to_path_buf(), fingerprint: fingerprint.to_string(), done, stale })
    }

    /// The finished result for `key`, if any.
    pub fn get(&self, key: &str) -> Option<&T> {
        self.done.get(key)
    }

    /// Appends a finished result and flushes it to disk.
    pub fn append(&mut self, key: &str, result: T) -> Result<()> {
        let row = Row { fingerprint: self.fingerprint.clone(), key: key.to_string(), result };
        let mut line = serde_json::to_string(&row).expect("plain data");
        line.push('\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::io(&self.path, e))?;
        // One write of the whole line keeps concurrent readers from seeing half of it in practice.
        f.write_all(line.as_bytes()).and_then(|()| f.flush()).map_err(|e| Error::io(&self.path, e))?;
        // Keep what a rerun will read (JSON floats need not round-trip to the last bit), so that a
        // resumed sweep reports exactly what the uninterrupted one did.
        let row: Row<T> = serde_json::from_str(&line).expect("just written");
        self.done.insert(row.key, row.result);
        Ok(())
    }
}

/// The overall and per-configuration progress bars (drawn only when stderr is a terminal and
/// `show` is set).
pub struct Bars {
    multi: indicatif::MultiProgress,
    /// Finished configurations out of all.
    pub overall: indicatif::ProgressBar,
    show: bool,
}

impl Bars {
    /// Bars for a sweep of `total` configurations, `done` of which are already finished.
    pub fn new(total: u64, done: u64, show: bool) -> Self {
        use std::io::IsTerminal;
        let show = show && std::io::stderr().is_terminal();
        let target =
            if show { indicatif::ProgressDrawTarget::stderr() } else { indicatif::ProgressDrawTarget::hidden() };
        let multi = indicatif::MultiProgress::with_draw_target(target);
        let overall = multi.add(indicatif::ProgressBar::new(total));
        overall.set_style(
            indicatif::ProgressStyle::with_template("{elapsed_precise} sweep [{wide_bar}] {pos}/{len} eta {eta} {msg}")
                .expect("valid template"),
        );
        overall.set_position(done);
        Bars { multi, overall, show }
    }

    /// A bar over the flow time [0, `t_end`] (in thousandths) for one configuration.
    pub fn config_bar(&self, label: &str) -> indicatif::ProgressBar {
        if !self.show {
            return indicatif::ProgressBar::hidden();
        }
        let bar = self.multi.add(indicatif::ProgressBar::new(1000));
        bar.set_style(
            indicatif::ProgressStyle::with_template("  {prefix:>28} [{bar:40}] {percent:>3}% {msg}")
                .expect("valid template"),
        );
        bar.set_prefix(label.to_string());
        bar
    }

    /// Clears the bars at the end of a sweep.
    pub fn finish(&self) {
        self.overall.finish_and_clear();
    }
}

/// Writes `text` to `path`, naming the path in an error.
pub fn write_text(path: &Path, text: &str) -> Result<()> {
    crate::io::output::write_atomic(path, text.as_bytes())
}

/// A float for a CSV cell: `None` (an empty cell) when it is not finite.
pub fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// Gives every generated data set of `config` an explicit seed (its default, `seed + 1 + i` for
/// `energy[i]`), so that changing the top-level seed per replicate redraws the positions only and
/// every replicate solves the same problem.
pub fn pin_data_seeds(config: &mut Config) {
    let base = config.seed;
    for (i, e) in config.energy.iter_mut().enumerate() {
        let seed = base.wrapping_add(1 + i as u64);
        let pin = |d: &mut crate::config::DataConfig| {
            if d.generate.is_some() && d.seed.is_none() {
                d.seed = Some(seed);
            }
        };
        e.data_mut().into_iter().for_each(pin);
    }
}

/// Rejects a sweep list that names a value twice (its runs would be shown twice and pooled).
pub fn reject_duplicates<T: PartialEq + std::fmt::Debug>(field: &str, values: &[T]) -> Result<()> {
    for (i, v) in values.iter().enumerate() {
        if let Some(j) = values[..i].iter().position(|u| u == v) {
            return Err(Error::invalid(
                format!("{field}[{i}]"),
                format!("{v:?}, already given as {field}[{j}]"),
                "each value once",
            ));
        }
    }
    Ok(())
}

/// Names the point of a sweep where an error happened (an error about the `[sweep]` table itself
/// concerns every point and is returned as it is).
pub fn at_point(point: impl Into<String>, e: Error) -> Error {
    match e {
        Error::Invalid { ref field, .. } if field.starts_with("sweep") => e,
        e => Error::SweepPoint { point: point.into(), source: Box::new(e) },
    }
}

/// An error of the base problem, named as the sweep file spells it: `problem.` before a key of the
/// inline `[problem]` table.
pub fn in_problem(base: &BaseProblem, e: Error) -> Error {
    let inline = base.origin == "[problem]";
    match e {
        Error::Invalid { ref field, .. } if field.starts_with("sweep") || field.starts_with("problem") => e,
        Error::Invalid { field, value, allowed } if inline => {
            Error::Invalid { field: format!("problem.{field}"), value, allowed }
        }
        Error::Invalid { field, value, allowed } => {
            Error::Invalid { field: format!("{} ({})", field, base.origin), value, allowed }
        }
        e => e,
    }
}

/// Checks a list of particle counts from a sweep file.
pub fn particle_counts(field: &str, n: &[i64]) -> Result<Vec<usize>> {
    if n.is_empty() {
        return Err(Error::invalid(field, "[]", "at least one particle count"));
    }
    reject_duplicates(field, n)?;
    n.iter()
        .map(|&v| match usize::try_from(v) {
            Ok(u) if (1..=crate::config::MAX_PARTICLES).contains(&u) => Ok(u),
            _ => Err(Error::invalid(field, v, format!("integers from 1 to {}", crate::config::MAX_PARTICLES))),
        })
        .collect()
}
