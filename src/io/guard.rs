//! What keeps an output directory and its inputs safe: one process per output directory (an
//! advisory lock), inputs read only from regular files of bounded size, and the hashes that
//! fingerprint a run's inputs and check a checkpoint's bytes.

use crate::error::{Error, Result};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file inside an output directory.
pub const LOCK_FILE: &str = ".frflow.lock";

/// The largest config or sweep file read, in bytes (a guard against `/dev/zero` and mistakes).
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// An output directory owned by this process until the value is dropped.
///
/// The lock is an advisory `flock` on `DIR/.frflow.lock` (released by the OS when the process
/// ends, also on kill -9); the file holds the owner's pid so that a second process can say who
/// holds it. The file itself stays: deleting it would let two processes lock two different files.
#[derive(Debug)]
pub struct OutputLock {
    _file: std::fs::File,
    dir: PathBuf,
}

impl OutputLock {
    /// Creates `dir` if missing and takes its lock, or fails naming the pid of the process that
    /// holds it.
    pub fn acquire(dir: &Path) -> Result<OutputLock> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        // fs4's flock (LockFileEx on Windows); std's File::try_lock needs Rust 1.89.
        let mut tries = 0;
        loop {
            match fs4::FileExt::try_lock(&file) {
                Ok(()) => break,
                Err(fs4::TryLockError::WouldBlock) => {
                    let mut text = String::new();
                    let _ = file.rewind().and_then(|()| file.read_to_string(&mut text));
                    let pid = text.trim().parse::<u32>().ok();
                    // A lock this process has just released can outlive its `close` for a moment
                    // when another thread forks a child meanwhile (the child shares the open file
                    // until its exec): wait for that briefly before reporting ourselves as holder.
                    if pid == Some(std::process::id()) && tries < 100 {
                        tries += 1;
                        std::thread::sleep(std::time::Duration::from_millis(10));
                        continue;
                    }
                    let holder = match pid {
                        Some(pid) => format!("pid {pid}"),
                        None => "a process that is still starting".to_string(),
                    };
                    return Err(Error::Output {
                        path: dir.display().to_string(),
                        message: format!(
                            "in use by another frflow process ({holder}, lock file {}); wait for it to end \
                             or choose another output directory",
                            path.display()
                        ),
                    });
                }
                // A file system without locks (some network mounts): say so and go on unlocked.
                Err(fs4::TryLockError::Error(e)) if e.kind() == std::io::ErrorKind::Unsupported => {
                    eprintln!(
                        "frflow: warning: {} cannot be locked ({e}); nothing stops a second process from writing there",
                        dir.display()
                    );
                    break;
                }
                Err(fs4::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
            }
        }
        let pid = format!("{}\n", std::process::id());
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(pid.as_bytes()))
            .and_then(|()| file.flush())
            .map_err(|e| Error::io(&path, e))?;
        Ok(OutputLock { _file: file, dir: dir.to_path_buf() })
    }

    /// The locked directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Reads a whole input file, accepting only a regular file (not a device such as `/dev/zero`,
/// a FIFO or a directory) of at most `cap` bytes.
pub fn read_regular(path: &Path, cap: u64) -> Result<Vec<u8>> {
    let file = open_regular(path)?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let too_big = |len: u64| Error::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(format!("{len} bytes, more than the {cap} bytes allowed for this file")),
    };
    if len > cap {
        return Err(too_big(len));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    // `take` bounds a file that grows while it is read.
    file.take(cap + 1).read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > cap {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Reads a UTF-8 config or sweep file (a regular file of at most [`MAX_CONFIG_BYTES`]).
pub fn read_config_text(path: &Path) -> Result<String> {
    let bytes = read_regular(path, MAX_CONFIG_BYTES)?;
    String::from_utf8(bytes).map_err(|e| Error::Io {
        path: path.display().to_string(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not UTF-8 text: {e}")),
    })
}

/// Opens `path` for reading if it is a regular file; a device, FIFO or directory is an error
/// (checked before opening, so that opening a FIFO cannot block).
pub fn open_regular(path: &Path) -> Result<std::fs::File> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        let kind = if meta.is_dir() { "a directory" } else { "not a regular file (a device, FIFO or socket)" };
        return Err(Error::Io {
            path: path.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{kind}; expected a regular file")),
        });
    }
    std::fs::File::open(path).map_err(|e| Error::io(path, e))
}

/// FNV-1a, 64 bits, of `bytes`: the fingerprint of a run's inputs. Any change of one byte changes
/// it (each step of the hash is a bijection of its state).
pub fn fnv64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
