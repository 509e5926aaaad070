//! Output files: `.npy` arrays, atomic writes, and the binary checkpoint.

use crate::error::{Error, Result};
use crate::particles::State;
use npyz::WriterBuilder;
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, synced, then renamed,
/// so a reader (or a resumed run) never sees a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
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
const VERSION: u32 = 1;

/// Encodes a state as a checkpoint: magic, version, N, step, time, then N log-weights, all
/// little-endian, so the log-weights round-trip bit for bit (−∞ included).
pub fn checkpoint_bytes(state: &State) -> Vec<u8> {
    let mut b = Vec::with_capacity(36 + 8 * state.log_weights.len());
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&VERSION.to_le_bytes());
    b.extend_from_slice(&(state.log_weights.len() as u64).to_le_bytes());
    b.extend_from_slice(&state.step.to_le_bytes());
    b.extend_from_slice(&state.time.to_bits().to_le_bytes());
    for l in &state.log_weights {
        b.extend_from_slice(&l.to_bits().to_le_bytes());
    }
    b
}

/// Reads a checkpoint written by [`checkpoint_bytes`], checking its size and header.
pub fn read_checkpoint(path: &Path) -> Result<State> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |message: &str| Error::Checkpoint { path: path.display().to_string(), message: message.into() };
    if bytes.len() < 36 || &bytes[..8] != MAGIC {
        return Err(bad("not an frflow checkpoint (bad magic or too short)"));
    }
    let u64_at = |k: usize| u64::from_le_bytes(bytes[k..k + 8].try_into().expect("8 bytes"));
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(bad(&format!("version {version}, this frflow reads version {VERSION}")));
    }
    let n = u64_at(12) as usize;
    if bytes.len() != 36 + 8 * n {
        return Err(bad(&format!("{} bytes, expected {} for N = {n}", bytes.len(), 36 + 8 * n)));
    }
    let log_weights = (0..n).map(|i| f64::from_bits(u64_at(36 + 8 * i))).collect();
    Ok(State { log_weights, step: u64_at(20), time: f64::from_bits(u64_at(28)) })
}
