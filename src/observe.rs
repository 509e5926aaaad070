//! Observers of a run: progress bar, CSV trace, weight snapshots, checkpoints.
//!
//! Each only reads the engine, so adding or removing one never changes the numbers.

use crate::engine::{Diagnostics, Engine};
use crate::error::{Error, Result};
use crate::flow::{Observer, Termination};
use crate::io::output::{checkpoint_bytes, write_atomic, write_csv_records, write_npy};
use std::path::{Path, PathBuf};

/// A progress bar on stderr, shown only when stderr is a terminal.
#[cfg(feature = "cli")]
pub struct Progress {
    bar: indicatif::ProgressBar,
    every: u64,
    final_time: Option<f64>,
}

#[cfg(feature = "cli")]
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

#[cfg(feature = "cli")]
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

/// The CSV trace (written by the `csv` crate): one row of [`Diagnostics`] every `every` steps
/// (and at the end), each step at most once.
pub struct Trace {
    out: csv::Writer<std::fs::File>,
    path: PathBuf,
    every: u64,
    last_step: Option<u64>,
}

impl Trace {
    /// The column names for dimension `dim`.
    pub fn header(dim: usize) -> Vec<String> {
        let fixed = ["step", "time", "energy", "f_energy", "mass", "ess", "max_abs_rate", "max_rate"];
        let mut h: Vec<String> = fixed.iter().map(|c| c.to_string()).collect();
        h.extend((0..dim).map(|k| format!("mean_{k}")));
        h.extend((0..dim).map(|k| format!("variance_{k}")));
        h.push("truncation_bound".into());
        h
    }

    /// Starts `path` anew, or, when resuming at `resume_step`, keeps its complete rows before that
    /// step. The kept rows are written to a temporary file which then replaces `path` (synced,
    /// renamed), so a crash at any point leaves either the old trace or the new one, never a
    /// truncated one; rows are then appended and flushed one by one.
    pub fn create(path: &Path, dim: usize, every: u64, resume_step: Option<u64>) -> Result<Self> {
        let header = Self::header(dim);
        let mut kept = vec![csv::ByteRecord::from(header.clone())];
        if let Some(start) = resume_step
            && path.exists()
        {
            let f = crate::io::guard::open_regular(path)?;
            let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(std::io::BufReader::new(f));
            for record in reader.byte_records() {
                // Only whole rows: a row cut by a crash has fewer fields (or is unreadable).
                let Ok(record) = record else { continue };
                if record.len() != header.len() {
                    continue;
                }
                let step = std::str::from_utf8(&record[0]).ok().and_then(|s| s.parse::<u64>().ok());
                if step.is_some_and(|s| s < start) {
                    kept.push(record);
                }
            }
        }
        write_csv_records(path, &kept)?;
        let file = std::fs::OpenOptions::new().append(true).open(path).map_err(|e| Error::io(path, e))?;
        let out = csv::WriterBuilder::new().has_headers(false).from_writer(file);
        Ok(Trace { out, path: path.to_path_buf(), every, last_step: None })
    }

    /// One CSV record (shortest round-trip formatting of each f64; an absent energy is empty).
    pub fn record(d: &Diagnostics) -> Vec<String> {
        let energy = d.energy.map(|e| e.to_string()).unwrap_or_default();
        let mut r = vec![d.step.to_string(), d.time.to_string(), energy];
        r.extend([d.f_energy, d.mass, d.ess, d.max_abs_rate, d.max_rate].iter().map(f64::to_string));
        r.extend(d.mean.iter().chain(&d.variance).map(f64::to_string));
        r.push(d.truncation_bound.to_string());
        r
    }
}

impl Observer for Trace {
    fn every(&self) -> u64 {
        self.every
    }

    fn observe(&mut self, d: &Diagnostics, _: &mut dyn Engine) -> Result<()> {
        if self.last_step == Some(d.step) {
            return Ok(()); // e.g. a run that ends at its starting step: one row, not two
        }
        // One write per row (the writer's buffer, flushed): a crash cuts at most the last row,
        // which a resume drops.
        self.out.write_record(Self::record(d)).map_err(|e| Error::io(&self.path, e.into()))?;
        self.out.flush().map_err(|e| Error::io(&self.path, e))?;
        self.last_step = Some(d.step);
        Ok(())
    }
}

/// Writes the weights every `every` steps to `DIR/weights_<step>.npy`.
pub struct Snapshots {
    dir: PathBuf,
    every: u64,
    last_step: Option<u64>,
}

impl Snapshots {
    /// Snapshots into `dir` (created if missing).
    pub fn new(dir: &Path, every: u64) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        Ok(Snapshots { dir: dir.to_path_buf(), every, last_step: None })
    }
}

impl Observer for Snapshots {
    fn every(&self) -> u64 {
        self.every
    }

    fn observe(&mut self, d: &Diagnostics, engine: &mut dyn Engine) -> Result<()> {
        if self.last_step == Some(d.step) {
            return Ok(());
        }
        let w = engine.state()?.weights();
        write_npy(&self.dir.join(format!("weights_{:09}.npy", d.step)), &[w.len() as u64], &w)?;
        self.last_step = Some(d.step);
        Ok(())
    }

    /// A run that ends (other than by an interrupt) also gets a snapshot of its final step.
    fn finish(&mut self, d: &Diagnostics, reason: Termination, engine: &mut dyn Engine) -> Result<()> {
        if reason == Termination::Interrupted { Ok(()) } else { self.observe(d, engine) }
    }
}

/// Writes the full state every `every` steps and when the run ends (also on Ctrl-C), atomically.
pub struct Checkpoints {
    path: PathBuf,
    every: u64,
    fingerprint: u64,
}

impl Checkpoints {
    /// Checkpoints to `path` (e.g. `OUT/checkpoint.bin`), stamped with the run's `fingerprint`.
    pub fn new(path: &Path, every: u64, fingerprint: u64) -> Self {
        Checkpoints { path: path.to_path_buf(), every, fingerprint }
    }
}

impl Observer for Checkpoints {
    fn every(&self) -> u64 {
        self.every
    }

    fn observe(&mut self, _: &Diagnostics, engine: &mut dyn Engine) -> Result<()> {
        write_atomic(&self.path, &checkpoint_bytes(&engine.state()?, self.fingerprint))
    }
}
