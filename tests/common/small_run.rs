//! The small CPU run that the tests of runs into output directories share (runs.rs,
//! reliability.rs).

use std::path::{Path, PathBuf};

/// `name` under the tests' temporary directory, unique to this test binary's process, removed if
/// an earlier run left it.
pub fn fresh_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("runs-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// A small problem whose weights move a lot: variant C (two N×N passes), auto step size, on the
/// CPU engine, with `n` particles and `steps` steps; a checkpoint every 10 steps, a trace row and
/// a snapshot every 5.
pub fn config(steps: u64, n: usize) -> String {
    format!(
        r#"
seed = 3
engine = "cpu"
sigma = 0.5
[domain]
kind = "torus"
dim = 2
[reference]
kind = "uniform"
[kernel]
epsilon = 0.08
variant = "C"
[[energy]]
kind = "potential"
potential = "cosine"
amplitude = 1.0
frequency = 2
[particles]
n = {n}
init = {{ kind = "uniform" }}
[time]
h = "auto"
h_max = 0.2
steps = {steps}
[output]
every = 5
checkpoint_every = 10
snapshot_every = 5
plot = false
"#
    )
}
