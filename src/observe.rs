//! Observers of a run: progress bar, CSV trace, weight snapshots, checkpoints.
//!
//! Each only reads the engine, so adding or removing one never changes the numbers.

use crate::engine::{Diagnostics, Engine};
use crate::error::{Error, Result};
use crate::flow::{Observer, Termination};
use crate::io::output::{checkpoint_bytes, write_atomic, write_npy};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// A progress bar on stderr, shown only when stderr is a terminal.
pub struct Progress {
    bar: indicatif::ProgressBar,
    every: u64,
    final_time: Option<f64>,
}

impl Progress {
    /// A bar over `max_steps` steps, or over the flow time up to `final_time` (in thousandths).
    pub fn new(every: u64, max_steps: Option<u64>, final_time: Option<f64>) -> Self {
        use std::io::IsTerminal;
        let (len, final_time) = match (final_time, max_steps) {
            (Some(_), _) => (1000, final_time),
            (None, Some(m)) => (m, None),
            (None, None) => (0, None),
        };
        let bar = if std::io::stderr().is_terminal() {
            indicatif::ProgressBar::new(len)
        } else {
            indicatif::ProgressBar::hidden()
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {percent}% {msg}")
                .expect("valid template"),
        );
        Progress { bar, every, final_time }
    }
}

impl Observer for Progress {
    fn every(&self) -> u64 {
        self.every
    }

    fn observe(&mut self, d: &Diagnostics, _: &mut dyn Engine) -> Result<()> {
        match self.final_time {
            Some(t) => self.bar.set_position((1000.0 * d.time / t) as u64),
            None => self.bar.set_position(d.step),
        }
        self.bar.set_message(format!("step {} t={:.4} max|a|={:.3e}", d.step, d.time, d.max_abs_rate));
        Ok(())
    }

    fn finish(&mut self, d: &Diagnostics, _: Termination, e: &mut dyn Engine) -> Result<()> {
        self.observe(d, e)?;
        self.bar.finish_and_clear();
        Ok(())
    }
}

/// The CSV trace: one row of [`Diagnostics`] every `every` steps.
pub struct Trace {
    out: std::io::BufWriter<std::fs::File>,
    path: PathBuf,
    every: u64,
}

impl Trace {
    /// The column names for dimension `dim`.
    pub fn header(dim: usize) -> String {
        let mut h = String::from("step,time,energy,f_energy,mass,ess,max_abs_rate,max_rate");
        (0..dim).for_each(|k| h.push_str(&format!(",mean_{k}")));
        (0..dim).for_each(|k| h.push_str(&format!(",variance_{k}")));
        h
    }

    /// Starts `path` anew, or, when resuming at `resume_step`, keeps its rows before that step.
    pub fn create(path: &Path, dim: usize, every: u64, resume_step: Option<u64>) -> Result<Self> {
        let mut kept = vec![Self::header(dim)];
        if let Some(start) = resume_step
            && let Ok(f) = std::fs::File::open(path)
        {
            for line in std::io::BufReader::new(f).lines().skip(1) {
                let line = line.map_err(|e| Error::io(path, e))?;
                let step: Option<u64> = line.split(',').next().and_then(|s| s.parse().ok());
                if step.is_some_and(|s| s < start) {
                    kept.push(line);
                }
            }
        }
        let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
        let mut out = std::io::BufWriter::new(file);
        for line in kept {
            writeln!(out, "{line}").map_err(|e| Error::io(path, e))?;
        }
        Ok(Trace { out, path: path.to_path_buf(), every })
    }

    /// One CSV row (shortest round-trip formatting of each f64; an absent energy is empty).
    pub fn row(d: &Diagnostics) -> String {
        let energy = d.energy.map(|e| e.to_string()).unwrap_or_default();
        let mut r = format!(
            "{},{},{},{},{},{},{},{}",
            d.step, d.time, energy, d.f_energy, d.mass, d.ess, d.max_abs_rate, d.max_rate
        );
        d.mean.iter().chain(&d.variance).for_each(|v| r.push_str(&format!(",{v}")));
        r
    }
}

impl Observer for Trace {
    fn every(&self) -> u64 {
        self.every
    }

    fn observe(&mut self, d: &Diagnostics, _: &mut dyn Engine) -> Result<()> {
        writeln!(self.out, "{}", Self::row(d)).and_then(|_| self.out.flush()).map_err(|e| Error::io(&self.path, e))
    }
}

/// Writes the weights every `every` steps to `DIR/weights_<step>.npy`.
pub struct Snapshots {
    dir: PathBuf,
    every: u64,
}

impl Snapshots {
    /// Snapshots into `dir` (created if missing).
    pub fn new(dir: &Path, every: u64) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        Ok(Snapshots { dir: dir.to_path_buf(), every })
    }
}

impl Observer for Snapshots {
    fn every(&self) -> u64 {
        self.every
    }

    fn observe(&mut self, d: &Diagnostics, engine: &mut dyn Engine) -> Result<()> {
        let w = engine.state()?.weights();
        write_npy(&self.dir.join(format!("weights_{:09}.npy", d.step)), &[w.len() as u64], &w)
    }

    fn finish(&mut self, _: &Diagnostics, _: Termination, _: &mut dyn Engine) -> Result<()> {
        Ok(())
    }
}

/// Writes the full state every `every` steps and when the run ends (also on Ctrl-C), atomically.
pub struct Checkpoints {
    path: PathBuf,
    every: u64,
}

impl Checkpoints {
    /// Checkpoints to `path` (e.g. `OUT/checkpoint.bin`).
    pub fn new(path: &Path, every: u64) -> Self {
        Checkpoints { path: path.to_path_buf(), every }
    }
}

impl Observer for Checkpoints {
    fn every(&self) -> u64 {
        self.every
    }

    fn observe(&mut self, _: &Diagnostics, engine: &mut dyn Engine) -> Result<()> {
        write_atomic(&self.path, &checkpoint_bytes(&engine.state()?))
    }
}
