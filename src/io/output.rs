//! Output files: `.npy` arrays, atomic writes, and the binary checkpoint.

use crate::error::{Error, Result};
use crate::particles::State;
use npyz::WriterBuilder;
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, synced, then renamed,
/// so a reader (or a resumed run) never sees a half-written file. On failure (a full disk, a
/// read-only folder) the temporary file is removed and `path` keeps its previous contents.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()))
        .map_err(|e| Error::io(&tmp, e))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    } else if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Make the rename itself durable (best effort: not every platform can open a folder).
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    written
}

/// Writes `rows` as a CSV file (the `csv` crate; the header from their serde field names),
/// atomically (see [`write_atomic`]).
pub fn write_csv<T: serde::Serialize>(path: &Path, rows: impl IntoIterator<Item = T>) -> Result<()> {
    write_csv_with(path, |w| rows.into_iter().try_for_each(|row| w.serialize(row)))
}

/// Writes `records` (the first one the header) as a CSV file (the `csv` crate), atomically.
pub fn write_csv_records<R: AsRef<[u8]>>(
    path: &Path,
    records: impl IntoIterator<Item = impl IntoIterator<Item = R>>,
) -> Result<()> {
    write_csv_with(path, |w| records.into_iter().try_for_each(|record| w.write_record(record)))
}

/// The CSV text `fill` writes, written to `path` atomically.
fn write_csv_with(path: &Path, fill: impl FnOnce(&mut csv::Writer<Vec<u8>>) -> csv::Result<()>) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    fill(&mut w).map_err(|e| Error::io(path, e.into()))?;
    let bytes = w.into_inner().map_err(|e| Error::io(path, e.into_error()))?;
    write_atomic(path, &bytes)
}

/// Encodes an f64 array of the given shape (C order) as `.npy` bytes.
pub fn npy_bytes(shape: &[u64], data: &[f64]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(128 + 8 * data.len());
    {
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(shape)
            .writer(&mut buf)
            .begin_nd()
            .expect("writing to a Vec cannot fail");
        w.extend(data.iter().copied()).expect("writing to a Vec cannot fail");
        w.finish().expect("writing to a Vec cannot fail");
    }
    buf
}

/// Writes an f64 array of the given shape as a `.npy` file, atomically.
pub fn write_npy(path: &Path, shape: &[u64], data: &[f64]) -> Result<()> {
    write_atomic(path, &npy_bytes(shape, data))
}

const MAGIC: &[u8; 8] = b"FRFLOWCK";
const VERSION: u32 = 2;
/// Magic, version, N, step, time, fingerprint.
const HEADER: usize = 8 + 4 + 8 + 8 + 8 + 8;
/// The CRC-32 after the log-weights.
const TRAILER: usize = 4;
/// The largest step a checkpoint may hold (far beyond any run; keeps `step + k` from wrapping).
pub const MAX_CHECKPOINT_STEP: u64 = 1 << 62;

/// A checkpoint: the state and the fingerprint of the run it belongs to.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// The saved state.
    pub state: State,
    /// The fingerprint of the run's effective problem (config and data contents); 0 when unknown.
    pub fingerprint: u64,
}

/// Encodes a state as a checkpoint (version 2): magic, version, N, step, time, the run's
/// fingerprint, N log-weights, then a CRC-32 of all the bytes before it; all little-endian, so
/// the log-weights round-trip bit for bit (−∞ included).
pub fn checkpoint_bytes(state: &State, fingerprint: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER + TRAILER + 8 * state.log_weights.len());
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&VERSION.to_le_bytes());
    b.extend_from_slice(&(state.log_weights.len() as u64).to_le_bytes());
    b.extend_from_slice(&state.step.to_le_bytes());
    b.extend_from_slice(&state.time.to_bits().to_le_bytes());
    b.extend_from_slice(&fingerprint.to_le_bytes());
    for l in &state.log_weights {
        b.extend_from_slice(&l.to_bits().to_le_bytes());
    }
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// Reads a checkpoint's state (see [`read_checkpoint_full`]).
pub fn read_checkpoint(path: &Path) -> Result<State> {
    read_checkpoint_full(path).map(|c| c.state)
}

/// Reads a checkpoint written by [`checkpoint_bytes`] and checks everything it can on its own:
/// the magic, version, size for N, the checksum, and every header field (a step of at most
/// [`MAX_CHECKPOINT_STEP`], a finite time ≥ 0 that is 0 exactly at step 0) and log-weight (no NaN,
/// no +∞, not all −∞). A damaged checkpoint is an error naming the file and the field.
pub fn read_checkpoint_full(path: &Path) -> Result<Checkpoint> {
    let file = crate::io::guard::open_regular(path)?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let max_len = (HEADER + TRAILER) as u64 + 8 * crate::config::MAX_PARTICLES as u64;
    let bad = |message: String| Error::Checkpoint { path: path.display().to_string(), message };
    if len > max_len {
        return Err(bad(format!(
            "{len} bytes, more than any checkpoint of at most {} particles",
            crate::config::MAX_PARTICLES
        )));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    std::io::Read::read_to_end(&mut std::io::Read::take(file, max_len + 1), &mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() < 12 || &bytes[..8] != MAGIC {
        return Err(bad("not an frflow checkpoint (bad magic or too short)".into()));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(bad(format!("field `version` is {version}, this frflow reads version {VERSION}")));
    }
    if bytes.len() < HEADER + TRAILER {
        return Err(bad(format!(
            "{} bytes, too short for a header (expected at least {})",
            bytes.len(),
            HEADER + TRAILER
        )));
    }
    let u64_at = |k: usize| u64::from_le_bytes(bytes[k..k + 8].try_into().expect("8 bytes"));
    let n = u64_at(12);
    let expected = (n <= crate::config::MAX_PARTICLES as u64).then(|| (HEADER + TRAILER) as u64 + 8 * n);
    if expected != Some(bytes.len() as u64) {
        return Err(bad(match expected {
            Some(e) => {
                format!("{} bytes, expected {e} for N = {n} (field `n`; the file is truncated or damaged)", bytes.len())
            }
            None => format!("field `n` is {n}, more than {} particles", crate::config::MAX_PARTICLES),
        }));
    }
    let body = bytes.len() - TRAILER;
    let stored = u32::from_le_bytes(bytes[body..].try_into().expect("4 bytes"));
    let computed = crc32fast::hash(&bytes[..body]);
    if stored != computed {
        return Err(bad(format!(
            "checksum mismatch (stored {stored:08x}, computed {computed:08x}): the file is damaged"
        )));
    }
    let n = n as usize;
    let step = u64_at(20);
    let time = f64::from_bits(u64_at(28));
    let fingerprint = u64_at(36);
    if step > MAX_CHECKPOINT_STEP {
        return Err(bad(format!("field `step` is {step}, more than {MAX_CHECKPOINT_STEP}")));
    }
    if !(time.is_finite() && time >= 0.0) || (step == 0) != (time == 0.0) {
        return Err(bad(format!(
            "field `time` is {time:e} at step {step}: expected a finite time ≥ 0, 0 exactly at step 0"
        )));
    }
    let log_weights: Vec<f64> = (0..n).map(|i| f64::from_bits(u64_at(HEADER + 8 * i))).collect();
    if let Some(i) = log_weights.iter().position(|l| l.is_nan() || *l == f64::INFINITY) {
        return Err(bad(format!("field `log_weights[{i}]` is {}: expected finite or −∞", log_weights[i])));
    }
    if n > 0 && log_weights.iter().all(|l| *l == f64::NEG_INFINITY) {
        return Err(bad("field `log_weights` is −∞ everywhere: no mass left".into()));
    }
    Ok(Checkpoint { state: State { log_weights, step, time }, fingerprint })
}
