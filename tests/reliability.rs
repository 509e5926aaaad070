//! The reliability guarantees of issue 12: no data lost, no checkpoint that lies, no panic or
//! hang on hostile input, no silent NaN. Each test names the issue's item it covers.
//! (Unix only: the tests use FIFOs, symlinks and signals.)
#![cfg(unix)]

use frflow::io::output::{checkpoint_bytes, read_checkpoint_full};
use frflow::particles::State;
use frflow::runner::{RunRequest, resume, run_config};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common {
    pub mod small_run;
}
use common::small_run::{config, fresh_dir};

fn frflow() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_frflow"));
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        c.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    c
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes `text` as `DIR/run.toml` and returns its path.
fn config_file(dir: &Path, text: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("run.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < Duration::from_secs(120), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---- 1. Data loss: a resume killed during start-up keeps every trace row ----

/// Item 1: `run --resume` killed by SIGKILL at many points of its start-up never loses a trace
/// row from before the checkpoint, and a resume of a finished run writes its final row once.
#[test]
fn resume_killed_during_start_up_keeps_every_trace_row() {
    let (cfg, out) = (fresh_dir("kill-cfg"), fresh_dir("kill-out"));
    let path = config_file(&cfg, &config(40, 3000));
    let first = frflow().arg("run").arg(&path).arg("--out").arg(&out).output().unwrap();
    assert!(first.status.success(), "{}", stderr(&first));
    let trace = std::fs::read_to_string(out.join("trace.csv")).unwrap();
    assert_eq!(trace.lines().count(), 1 + 9, "header and steps 0, 5, …, 40:\n{trace}");
    // Resuming the finished run takes no step and writes its final row once.
    let start = Instant::now();
    let again = frflow().arg("run").arg("--resume").arg(&out).output().unwrap();
    let whole = start.elapsed();
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(
        std::fs::read_to_string(out.join("trace.csv")).unwrap(),
        trace,
        "the trace after resuming a finished run"
    );
    // SIGKILL at 24 points spread over that start-up: process start, config and checkpoint checks,
    // engine build, trace rewrite, first evaluation.
    let before: Vec<&str> = trace.lines().filter(|l| !l.starts_with("40,")).collect();
    for k in 0..24u32 {
        let delay = whole.mul_f64((f64::from(k) + 0.5) / 24.0);
        let mut child = frflow().arg("run").arg("--resume").arg(&out).stdout(Stdio::null()).spawn().unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        let now = std::fs::read_to_string(out.join("trace.csv")).unwrap();
        let kept: Vec<&str> = now.lines().collect();
        // Every row before the checkpoint's step (40) is there, in order; at most row 40 may be missing.
        assert!(kept.len() >= before.len(), "rows lost after a kill at {delay:?}:\n{now}");
        assert_eq!(&kept[..before.len()], &before[..], "rows changed after a kill at {delay:?}");
    }
    let last = frflow().arg("run").arg("--resume").arg(&out).output().unwrap();
    assert!(last.status.success(), "{}", stderr(&last));
    assert_eq!(std::fs::read_to_string(out.join("trace.csv")).unwrap(), trace);
}

// ---- 2. One process per output directory ----

/// Item 2: while one `frflow run` writes into a directory, a second process (run, resume) is
/// refused with an error naming the first one's pid, and nothing of the first run is touched.
#[test]
fn a_second_process_on_the_same_out_is_refused_naming_the_holder() {
    let (cfg, out) = (fresh_dir("lock-cfg"), fresh_dir("lock-out"));
    let path = config_file(&cfg, &config(100_000_000, 300));
    let mut child = frflow().arg("run").arg(&path).arg("--out").arg(&out).stdout(Stdio::null()).spawn().unwrap();
    wait_for("the first run's trace", || {
        std::fs::read_to_string(out.join("trace.csv")).map(|t| t.lines().count()).unwrap_or(0) >= 3
    });
    let pid = child.id().to_string();
    let second = frflow().arg("run").arg(&path).arg("--out").arg(&out).arg("--force").output().unwrap();
    let resumed = frflow().arg("run").arg("--resume").arg(&out).output().unwrap();
    let _ = Command::new("kill").arg("-INT").arg(&pid).status();
    let status = child.wait().unwrap();
    for (what, o) in [("run --force", &second), ("run --resume", &resumed)] {
        assert_eq!(o.status.code(), Some(1), "{what}: {}", stderr(o));
        let err = stderr(o);
        assert!(
            err.contains("in use by another frflow process") && err.contains(&format!("pid {pid}")),
            "{what}: {err}"
        );
    }
    assert_eq!(status.code(), Some(130));
    // The first run is intact: its final checkpoint resumes.
    let state = frflow::io::output::read_checkpoint(&out.join("checkpoint.bin")).unwrap();
    assert!(state.step > 0);
}

/// Item 2, in one process: a lock is exclusive while held and free once dropped.
#[test]
fn output_lock_is_exclusive_and_released_on_drop() {
    let dir = fresh_dir("lock-lib");
    let lock = frflow::io::guard::OutputLock::acquire(&dir).unwrap();
    let err = frflow::io::guard::OutputLock::acquire(&dir).unwrap_err().to_string();
    assert!(err.contains(&format!("pid {}", std::process::id())), "{err}");
    // A sweep into a locked directory is refused too.
    let chaos = frflow().arg("chaos").arg("examples/chaos_t2.toml").arg("--out").arg(&dir).output().unwrap();
    assert!(stderr(&chaos).contains("in use by another frflow process"), "{}", stderr(&chaos));
    drop(lock);
    frflow::io::guard::OutputLock::acquire(&dir).unwrap();
}

// ---- 3. A directory holding another run ----

/// Item 3: `run --out DIR` on a previous run is refused (naming --resume and --force); with
/// --force the previous run is deleted first (no stale snapshot survives); a non-empty directory
/// that holds no run is refused even with --force. Item 15: a config error creates no directory.
#[test]
fn a_previous_run_is_kept_unless_force_clears_it() {
    let (cfg, out) = (fresh_dir("force-cfg"), fresh_dir("force-out"));
    let long = config_file(&cfg.join("long"), &config(40, 60));
    let first = frflow().arg("run").arg(&long).arg("--out").arg(&out).output().unwrap();
    assert!(first.status.success(), "{}", stderr(&first));
    let before = std::fs::read(out.join("checkpoint.bin")).unwrap();
    assert!(out.join("snapshots/weights_000000040.npy").exists());

    let short = config_file(&cfg.join("short"), &config(10, 60).replace("seed = 3", "seed = 4"));
    let refused = frflow().arg("run").arg(&short).arg("--out").arg(&out).output().unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let err = stderr(&refused);
    assert!(err.contains("holds another run") && err.contains("--force") && err.contains("--resume"), "{err}");
    assert_eq!(std::fs::read(out.join("checkpoint.bin")).unwrap(), before, "a refused run changed the checkpoint");

    let forced = frflow().arg("run").arg(&short).arg("--out").arg(&out).arg("--force").output().unwrap();
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert!(stderr(&forced).contains("deleting the previous run"), "{}", stderr(&forced));
    assert!(!out.join("snapshots/weights_000000040.npy").exists(), "a snapshot of the previous run survived");
    assert!(out.join("snapshots/weights_000000010.npy").exists());
    assert!(std::fs::read_to_string(out.join("config.toml")).unwrap().contains("seed = 4"));

    // Someone else's files are never deleted.
    let other = fresh_dir("force-other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "mine").unwrap();
    let no = frflow().arg("run").arg(&short).arg("--out").arg(&other).arg("--force").output().unwrap();
    assert_eq!(no.status.code(), Some(1));
    assert!(stderr(&no).contains("holds no frflow run"), "{}", stderr(&no));
    assert_eq!(std::fs::read_to_string(other.join("notes.txt")).unwrap(), "mine");

    // Item 15: an invalid config leaves no output directory behind.
    let bad = config_file(&cfg.join("bad"), &config(10, 60).replace("epsilon = 0.08", "epsilon = -1.0"));
    let fresh = fresh_dir("force-never");
    let o = frflow().arg("run").arg(&bad).arg("--out").arg(&fresh).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(!fresh.exists(), "a failed run left {}", fresh.display());
}

// ---- 4. A results file with a cut last line ----

#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
struct Payload {
    value: f64,
}

/// Item 4: a results.jsonl whose last line was cut by a crash is repaired before the next row is
/// appended, so every later row parses and no run is recomputed forever.
#[test]
fn results_file_with_a_cut_last_line_is_repaired_before_appending() {
    use frflow::experiments::sweep::ResultsStore;
    let dir = fresh_dir("results");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("results.jsonl");
    let mut store = ResultsStore::<Payload>::open(&path, "fp").unwrap();
    store.append("a", Payload { value: 1.0 }).unwrap();
    store.append("b", Payload { value: 2.0 }).unwrap();
    // Cut the last row in the middle, as a crash during the write would.
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, &text[..text.len() - 9]).unwrap();
    let mut store = ResultsStore::<Payload>::open(&path, "fp").unwrap();
    assert!(store.get("a").is_some() && store.get("b").is_none());
    store.append("b", Payload { value: 2.0 }).unwrap();
    store.append("c", Payload { value: 3.0 }).unwrap();
    let store = ResultsStore::<Payload>::open(&path, "fp").unwrap();
    for k in ["a", "b", "c"] {
        assert!(store.get(k).is_some(), "row {k} lost:\n{}", std::fs::read_to_string(&path).unwrap());
    }
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text.lines().all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()), "{text}");
}

// ---- 5. Checkpoints: checksum and header fields ----

/// A finished run of `config(10, 50)` in `name`; returns the directory.
fn finished_run(name: &str) -> PathBuf {
    let dir = fresh_dir(name);
    run_config(&config(10, 50), Path::new("."), &dir, RunRequest::default()).unwrap();
    dir
}

/// Item 5: every single-bit flip and every truncation of a checkpoint is a clear error naming the
/// file (never a panic, never a silent continuation).
#[test]
fn every_bit_flip_and_truncation_of_a_checkpoint_is_refused() {
    let dir = finished_run("ck-flips");
    let ck = dir.join("checkpoint.bin");
    let good = std::fs::read(&ck).unwrap();
    let probe = dir.join("probe.bin");
    for bit in 0..good.len() * 8 {
        let mut bytes = good.clone();
        bytes[bit / 8] ^= 1 << (bit % 8);
        std::fs::write(&probe, &bytes).unwrap();
        let err = read_checkpoint_full(&probe).expect_err(&format!("bit {bit} flipped was accepted")).to_string();
        assert!(err.contains("probe.bin"), "bit {bit}: {err}");
    }
    for len in 0..good.len() {
        std::fs::write(&probe, &good[..len]).unwrap();
        let err = read_checkpoint_full(&probe).expect_err(&format!("cut at {len} was accepted")).to_string();
        assert!(err.contains("probe.bin"), "cut at {len}: {err}");
    }
    // And through `resume`: one flipped bit in a log-weight.
    let mut bytes = good.clone();
    bytes[60] ^= 0x10;
    std::fs::write(&ck, &bytes).unwrap();
    let err = resume(&dir, RunRequest::default()).unwrap_err().to_string();
    assert!(err.contains("checkpoint.bin") && err.contains("checksum"), "{err}");
}

/// Item 5: a checkpoint with a valid checksum but an impossible header is refused naming the field:
/// a NaN or negative time, a step near 2⁶⁴, a step beyond `time.steps`, a NaN log-weight.
#[test]
fn checkpoint_header_fields_are_validated_by_name() {
    let dir = finished_run("ck-fields");
    let ck = dir.join("checkpoint.bin");
    let good = read_checkpoint_full(&ck).unwrap();
    let fp = good.fingerprint;
    let with = |step: u64, time: f64, lw: Vec<f64>| checkpoint_bytes(&State { log_weights: lw, step, time }, fp);
    let lw = good.state.log_weights.clone();
    let mut nan_lw = lw.clone();
    nan_lw[7] = f64::NAN;
    let cases = [
        (with(5, f64::NAN, lw.clone()), "`time`"),
        (with(5, -1e300, lw.clone()), "`time`"),
        (with(u64::MAX - 1, 1.0, lw.clone()), "`step`"),
        (with(11, 1.0, lw.clone()), "`step`"),
        (with(5, 1.0, nan_lw), "`log_weights[7]`"),
        (with(5, 1.0, lw[..49].to_vec()), "`n`"),
        (checkpoint_bytes(&State { log_weights: lw.clone(), step: 5, time: 1.0 }, fp ^ 1), "`fingerprint`"),
    ];
    for (bytes, field) in cases {
        std::fs::write(&ck, &bytes).unwrap();
        let err = resume(&dir, RunRequest::default()).unwrap_err().to_string();
        assert!(err.contains("checkpoint.bin") && err.contains(field), "expected {field}: {err}");
    }
    // No checkpoint at all (killed before the first one): the message says how to start again.
    std::fs::remove_file(&ck).unwrap();
    let err = resume(&dir, RunRequest::default()).unwrap_err().to_string();
    assert!(err.contains("nothing to resume") && err.contains("--force"), "{err}");
}

// ---- 6. The resume fingerprint ----

/// Item 6: `--resume` refuses a run whose config (any key) or data file changed since it started,
/// naming the key or the file; a change of layout or comments only is accepted.
#[test]
fn resume_refuses_a_changed_config_or_data_file_naming_it() {
    let cfg = fresh_dir("fp-cfg");
    std::fs::create_dir_all(&cfg).unwrap();
    let sample: String =
        (0..40).map(|i| format!("{},{}\n", (i as f64 * 0.37).sin(), (i as f64 * 0.11).cos())).collect();
    std::fs::write(cfg.join("sample.csv"), &sample).unwrap();
    let text = config(10, 50).replace(
        "[particles]",
        "[[energy]]\nkind = \"mmd\"\nwidth = 0.3\nsample = { file = \"sample.csv\" }\n[particles]",
    );
    let out = fresh_dir("fp-out");
    run_config(&text, &cfg, &out, RunRequest::default()).unwrap();
    let config_path = out.join("config.toml");

    // Layout and comments only: accepted.
    std::fs::write(&config_path, format!("# a comment\n{text}\n\n")).unwrap();
    resume(&out, RunRequest::default()).unwrap();

    for (from, to, key) in
        [("seed = 3", "seed = 4", "`seed`"), ("variant = \"C\"", "variant = \"A\"", "`kernel.variant`")]
    {
        std::fs::write(&config_path, text.replace(from, to)).unwrap();
        let err = resume(&out, RunRequest::default()).unwrap_err().to_string();
        assert!(err.contains(key) && err.contains("changed"), "{key}: {err}");
    }
    std::fs::write(&config_path, &text).unwrap();
    std::fs::write(cfg.join("sample.csv"), sample.replacen('0', "1", 1)).unwrap();
    let err = resume(&out, RunRequest::default()).unwrap_err().to_string();
    assert!(err.contains("sample.csv") && err.contains("energy[1].sample.file"), "{err}");
    std::fs::write(cfg.join("sample.csv"), &sample).unwrap();
    resume(&out, RunRequest::default()).unwrap();
}

// ---- 7–9. No panic, no hang, no huge allocation on hostile arguments or files ----

/// Runs `cmd` with a deadline: a hang is a test failure, not a stuck test.
fn output_within(mut cmd: Command, seconds: u64) -> Output {
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(seconds)) {
        Ok(o) => o.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
            panic!("frflow did not finish within {seconds} s: {cmd:?}");
        }
    }
}

/// Items 7 and 9: every number of `frflow bench` is checked before anything is allocated or
/// timed, and the error names the flag (sizes beyond the config's limits, 0 repeats, nan/inf/0
/// batch times, negative or nan ceilings).
#[test]
fn bench_rejects_every_bad_number_naming_the_flag() {
    let cases: [(&[&str], &str); 12] = [
        (&["--n", "18446744073709551615"], "--n"),
        (&["--n", "4611686018427387904"], "--n"),
        (&["--n", "100000000"], "--n"),
        (&["--n", "0"], "--n"),
        (&["--d", "0"], "--d"),
        (&["--d", "9"], "--d"),
        (&["--m", "0", "--energy", "mmd"], "--m"),
        (&["--repeats", "0"], "--repeats"),
        (&["--min-batch-seconds", "nan"], "--min-batch-seconds"),
        (&["--min-batch-seconds", "inf"], "--min-batch-seconds"),
        (&["--ceiling=-1"], "--ceiling"),
        (&["--ceiling", "nan"], "--ceiling"),
    ];
    for (args, flag) in cases {
        let mut cmd = frflow();
        cmd.args(["bench", "--engine", "cpu"]).args(args);
        let o = output_within(cmd, 60);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(&format!("`{flag}`")) && !err.contains("panicked"), "{args:?}: {err}");
    }
}

/// Item 7, in the library: sampling more particles than the config allows is an error, not a
/// capacity-overflow panic.
#[test]
fn sampling_a_huge_particle_count_is_an_error() {
    use frflow::model::{Domain, Space};
    use frflow::particles::{Initial, Particles};
    let space = Space::new(3, Domain::Torus { side: 1.0 }).unwrap();
    for n in [usize::MAX, 1 << 62, frflow::config::MAX_PARTICLES + 1] {
        let err = Particles::sample(space, &Initial::Uniform { low: 0.0, high: 1.0 }, n, 1).unwrap_err();
        assert!(err.to_string().contains("particles.n"), "{err}");
    }
}

/// Item 8: a config or data path naming a device (`/dev/zero`), a FIFO or a directory is refused
/// at once (no endless read, no block), and so is a config beyond the size cap.
#[test]
fn configs_and_data_must_be_regular_files() {
    let dir = fresh_dir("files");
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("fifo.toml");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let big = dir.join("big.toml");
    std::fs::write(&big, "#".repeat(5 << 20)).unwrap();
    for (path, expect) in [
        (PathBuf::from("/dev/zero"), "not a regular file"),
        (fifo.clone(), "not a regular file"),
        (dir.clone(), "a directory"),
        (big, "more than the"),
    ] {
        let mut cmd = frflow();
        cmd.arg("run").arg(&path).arg("--out").arg(dir.join("out"));
        let o = output_within(cmd, 30);
        assert_eq!(o.status.code(), Some(1), "{}: {}", path.display(), stderr(&o));
        assert!(stderr(&o).contains(expect) && stderr(&o).contains(&*path.to_string_lossy()), "{}", stderr(&o));
        let mut cmd = frflow();
        cmd.arg("chaos").arg(&path).arg("--out").arg(dir.join("sweep"));
        let o = output_within(cmd, 30);
        assert_eq!(o.status.code(), Some(1), "chaos {}: {}", path.display(), stderr(&o));
    }
    // Data files: a symlink to /dev/zero with a .npy name, and a FIFO with a .csv name.
    std::os::unix::fs::symlink("/dev/zero", dir.join("zero.npy")).unwrap();
    assert!(Command::new("mkfifo").arg(dir.join("pipe.csv")).status().unwrap().success());
    for file in ["zero.npy", "pipe.csv"] {
        let text = config(5, 20).replace(
            "[particles]",
            &format!("[[energy]]\nkind = \"mmd\"\nwidth = 0.3\nsample = {{ file = \"{file}\" }}\n[particles]"),
        );
        let path = config_file(&dir.join(format!("cfg-{file}")), &text);
        std::fs::rename(dir.join(file), path.parent().unwrap().join(file)).unwrap();
        let mut cmd = frflow();
        cmd.arg("run").arg(&path).arg("--out").arg(dir.join(format!("out-{file}")));
        let o = output_within(cmd, 30);
        assert_eq!(o.status.code(), Some(1), "{file}: {}", stderr(&o));
        assert!(stderr(&o).contains("not a regular file") && stderr(&o).contains(file), "{}", stderr(&o));
    }
}

// ---- 10–13. No silent NaN or wrong result with exit 0 ----

/// A Euclidean 2-D problem (Gaussian reference) with `kernel` and `extra` appended.
fn euclidean(kernel: &str, extra: &str) -> String {
    format!(
        r#"
seed = 3
engine = "cpu"
sigma = 0.5
[domain]
kind = "euclidean"
dim = 2
[reference]
kind = "gaussian"
mean = [0.0, 0.0]
std = 1.0
[kernel]
{kernel}
{extra}
[particles]
n = 50
init = {{ kind = "gaussian", mean = [0.0, 0.0], std = 1.0 }}
[time]
h = 0.1
steps = 5
[output]
every = 1
plot = false
"#
    )
}

/// Runs the config `text` (written into a fresh directory with `files`) through the CLI; returns
/// the output and the output directory.
fn cli_run(name: &str, text: &str, files: &[(&str, &str)]) -> (Output, PathBuf) {
    let cfg = fresh_dir(&format!("{name}-cfg"));
    let path = config_file(&cfg, text);
    for (f, body) in files {
        std::fs::write(cfg.join(f), body).unwrap();
    }
    let out = fresh_dir(&format!("{name}-out"));
    let mut cmd = frflow();
    cmd.arg("run").arg(&path).arg("--out").arg(&out);
    (output_within(cmd, 60), out)
}

/// Item 10: inputs that make a non-finite diagnostic inevitable are rejected up front, naming
/// them: an MMD sample with values ±1e308 (F was NaN in every row, exit 0) and a torus of side
/// 1e300 (variance inf).
#[test]
fn inputs_that_overflow_the_diagnostics_are_rejected_up_front() {
    let mmd = euclidean(
        "epsilon = 0.3\nvariant = \"D\"",
        "[[energy]]\nkind = \"mmd\"\nwidth = 0.3\nsample = { file = \"big.csv\" }",
    );
    let (o, out) = cli_run("nan-mmd", &mmd, &[("big.csv", "1e308,-1e308\n-1e308,1e308\n0.5,0.5\n")]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("energy[0].sample.file") && err.contains("1e308") && err.contains("row 1"), "{err}");
    assert!(!out.exists(), "a rejected run left {}", out.display());

    let torus = config(5, 50).replace("dim = 2", "dim = 1\nside = 1e300");
    let (o, _) = cli_run("nan-torus", &torus, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("domain.side") && stderr(&o).contains("1e300"), "{}", stderr(&o));
}

/// Item 10: any non-finite diagnostic that still occurs stops the run with an error naming the
/// quantity, the step and the inputs it comes from (checked on every quantity).
#[test]
fn non_finite_diagnostics_are_errors_naming_quantity_step_and_cause() {
    use frflow::engine::Diagnostics;
    use frflow::flow::check_diagnostics;
    let good = Diagnostics {
        step: 7,
        time: 0.7,
        energy: Some(1.0),
        f_energy: 0.5,
        mass: 1.0,
        ess: 40.0,
        max_abs_rate: 0.3,
        max_rate: 0.2,
        mean: vec![0.1, 0.2],
        variance: vec![1.0, 2.0],
        truncation_bound: 0.0,
    };
    check_diagnostics(&good, 1e-6).unwrap();
    type Edit = fn(&mut Diagnostics);
    let cases: [(Edit, &str, &str); 8] = [
        (|d| d.energy = Some(f64::NAN), "energy (V", "[[energy]]"),
        (|d| d.f_energy = f64::INFINITY, "f_energy", "[[energy]]"),
        (|d| d.mass = f64::NAN, "mass", "kernel.epsilon"),
        (|d| d.ess = f64::NAN, "ess", "kernel.epsilon"),
        (|d| d.max_abs_rate = f64::INFINITY, "max_abs_rate", "kernel.epsilon"),
        (|d| d.max_rate = f64::NAN, "max_rate", "kernel.epsilon"),
        (|d| d.mean[1] = f64::NEG_INFINITY, "mean_1", "domain.side"),
        (|d| d.variance[0] = f64::INFINITY, "variance_0", "domain.side"),
    ];
    for (edit, quantity, cause) in cases {
        let mut d = good.clone();
        edit(&mut d);
        let err = check_diagnostics(&d, 1e-6).unwrap_err().to_string();
        assert!(err.contains("step 7") && err.contains(quantity) && err.contains(cause), "{err}");
    }
    // Item 14: a rate that is not finite names the inputs that cause it.
    let rate = frflow::Error::NonFinite { step: 0, particle: 0, quantity: "rate", value: f64::NAN }.to_string();
    assert!(rate.contains("kernel.epsilon") && rate.contains("sigma") && rate.contains("chi2"), "{rate}");
    assert_eq!(frflow::flow::mass_tolerance("cpu-f64 (2 threads)"), 1e-6);
}

/// Item 11: on the CPU engine, Euclidean with ε = 1e6 and variant D made the total weight drift
/// by 1e-5 in a step with exit 0; a drift beyond the tolerance is now an error naming the step.
#[test]
fn mass_drift_beyond_the_tolerance_is_an_error() {
    let (o, _) = cli_run("mass", &euclidean("epsilon = 1e6\nvariant = \"D\"", ""), &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("mass drifted from 1") && err.contains("step 1"), "{err}");
    // The same problem with a sane bandwidth conserves mass to rounding and runs.
    let (o, _) = cli_run("mass-ok", &euclidean("epsilon = 0.5\nvariant = \"D\"", ""), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Item 12: every sweep list rejects a value given twice, naming the list and both positions.
#[test]
fn sweep_lists_reject_duplicates() {
    use frflow::experiments::{BandwidthSpec, ChaosSpec};
    let chaos = std::fs::read_to_string("examples/chaos_t2.toml").unwrap();
    let n_line = chaos.lines().find(|l| l.starts_with("n = [")).unwrap();
    for (from, to, field) in [
        (n_line, "n = [16, 32, 16]", "sweep.n[2]"),
        ("variants = [\"A\", \"B\"]", "variants = [\"A\", \"B\", \"A\"]", "sweep.variants[2]"),
    ] {
        let err = ChaosSpec::from_str(&chaos.replace(from, to), "chaos", Path::new("examples")).unwrap_err();
        assert!(err.to_string().contains(field) && err.to_string().contains("already given"), "{err}");
    }
    let band = std::fs::read_to_string("examples/bandwidth_t2.toml").unwrap();
    let eps_line = band.lines().find(|l| l.starts_with("epsilon = [")).unwrap();
    let err =
        BandwidthSpec::from_str(&band.replace(eps_line, "epsilon = [0.5, 0.25, 0.5]"), "bw", Path::new("examples"))
            .unwrap_err();
    assert!(err.to_string().contains("sweep.epsilon[2]"), "{err}");
}

/// Item 13: a run that ends at its starting step writes its trace row once; the final step gets a
/// snapshot even off the snapshot cadence; a final time too small to take a step is an error.
/// Item 14: so is a step size beyond 1e6 (the GPU failed on it where the CPU ran).
#[test]
fn final_rows_and_snapshots_are_written_exactly_once() {
    let dir = fresh_dir("final");
    run_config(&config(0, 30), Path::new("."), &dir, RunRequest::default()).unwrap();
    let trace = std::fs::read_to_string(dir.join("trace.csv")).unwrap();
    assert_eq!(trace.lines().count(), 2, "header and one row for step 0:\n{trace}");

    let dir = fresh_dir("final-snap");
    run_config(&config(42, 30), Path::new("."), &dir, RunRequest::default()).unwrap();
    for s in [40, 42] {
        assert!(dir.join(format!("snapshots/weights_{s:09}.npy")).exists(), "no snapshot at step {s}");
    }
    let rows = std::fs::read_to_string(dir.join("trace.csv")).unwrap();
    assert_eq!(rows.lines().filter(|l| l.starts_with("42,")).count(), 1, "{rows}");

    // Item 14: a step too long for f32 (GPU "log-weight not finite", CPU ran it) is refused up front on both.
    for (from, to, key) in [
        ("h = \"auto\"", "h = 1e300\nscheme = \"exponential\"", "time.h"),
        ("h_max = 0.2", "h_max = 1e300", "time.h_max"),
    ] {
        let err =
            run_config(&config(3, 30).replace(from, to), Path::new("."), &fresh_dir("final-h"), RunRequest::default())
                .unwrap_err();
        assert!(err.to_string().contains(&format!("`{key}`")), "{err}");
    }
    let tiny = config(10, 30).replace("steps = 10", "final_time = 1e-300");
    let err = run_config(&tiny, Path::new("."), &fresh_dir("final-tiny"), RunRequest::default()).unwrap_err();
    assert!(err.to_string().contains("time.final_time"), "{err}");
}

// ---- 14. Messages that say what to fix ----

/// Item 14: a parse error names the config file's path; an error at a sweep point names the point
/// and the key with its `problem.` prefix.
#[test]
fn messages_name_the_file_the_sweep_point_and_the_key() {
    let (o, _) = cli_run("parse", "sigma = [", &[]);
    let err = stderr(&o);
    assert!(err.contains("parse-cfg") && err.contains("run.toml") && !err.contains("config config"), "{err}");
    // Tables nested past the parser's recursion limit: the message names the line.
    let deep = format!("sigma = 1.0\n# comment\na{} = 1\n", ".b".repeat(300));
    let (o, _) = cli_run("deep", &deep, &[]);
    assert!(stderr(&o).contains("nested too deeply") && stderr(&o).contains("line 3"), "{}", stderr(&o));
    // A huge number is shown in exponent notation, not as 301 digits.
    let (o, _) = cli_run("huge", &config(3, 20).replace("sigma = 0.5", "sigma = -1e300"), &[]);
    let err = stderr(&o);
    assert!(err.contains("`sigma`: -1e300") && err.len() < 400, "{err}");

    let dir = fresh_dir("point");
    let chaos = std::fs::read_to_string("examples/chaos_t2.toml").unwrap();
    let n_line = chaos.lines().find(|l| l.starts_with("n = [")).unwrap();
    let text = chaos
        .replace(n_line, "n = [16]")
        .replace("replicates = 16", "replicates = 1")
        .replace("variants = [\"A\", \"B\"]", "variants = [\"A\"]")
        .replace("engine = \"auto\"", "engine = \"cpu\"")
        .replace("h = 0.02", "h = 1e6");
    let path = config_file(&dir, &text);
    let mut cmd = frflow();
    cmd.arg("chaos").arg(&path).arg("--out").arg(dir.join("out"));
    let o = output_within(cmd, 60);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("sweep point variant A, N = 16, replicate 0"), "{err}");
    // A key of the inline [problem] table is named with its `problem.` prefix.
    let bad = text.replace("h = 1e6", "h = 0.02").replace("epsilon = 0.5", "epsilon = -0.5");
    let path = config_file(&dir.join("eps"), &bad);
    let mut cmd = frflow();
    cmd.arg("chaos").arg(&path).arg("--out").arg(dir.join("out-eps"));
    let o = output_within(cmd, 60);
    let err = stderr(&o);
    assert!(err.contains("sweep point variant A, N = 16") && err.contains("`problem.kernel.epsilon`"), "{err}");
}

// ---- 15. Leftovers ----

/// Item 15: SIGTERM ends a run like Ctrl-C: exit 130 and a final checkpoint of the reported step.
#[test]
fn sigterm_stops_cleanly_with_a_final_checkpoint() {
    let (cfg, out) = (fresh_dir("term-cfg"), fresh_dir("term-out"));
    let path = config_file(&cfg, &config(100_000_000, 300));
    let mut child = frflow().arg("run").arg(&path).arg("--out").arg(&out).stdout(Stdio::piped()).spawn().unwrap();
    wait_for("the run's trace", || {
        std::fs::read_to_string(out.join("trace.csv")).map(|t| t.lines().count()).unwrap_or(0) >= 4
    });
    assert!(Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap().success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "SIGTERM is handled like SIGINT");
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["termination"], "interrupted");
    let state = frflow::io::output::read_checkpoint(&out.join("checkpoint.bin")).unwrap();
    assert_eq!(Some(state.step), summary["diagnostics"]["step"].as_u64());
}

/// Item 15: a write that fails (here the rename, onto a folder) leaves no temporary file behind
/// and the target as it was.
#[test]
fn a_failed_atomic_write_leaves_no_temporary_file() {
    let dir = fresh_dir("tmp-left");
    let target = dir.join("checkpoint.bin");
    std::fs::create_dir_all(target.join("inside")).unwrap();
    assert!(frflow::io::output::write_atomic(&target, b"bytes").is_err());
    assert!(!dir.join("checkpoint.tmp").exists(), "checkpoint.tmp left behind");
    assert!(target.join("inside").is_dir());
}

// ---- kill -9 during steps and checkpoint writes, for runs and sweeps ----

/// A tiny deterministic generator for the kill points and the fuzz below (no dependency, fixed seed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn fraction(&mut self) -> f64 {
        self.next() as f64 / (1u64 << 31) as f64
    }
}

/// The step of the last whole row of a trace (0 when there is none).
fn last_traced_step(dir: &Path) -> u64 {
    let text = std::fs::read_to_string(dir.join("trace.csv")).unwrap_or_default();
    text.lines().filter_map(|l| l.split(',').next()?.parse().ok()).next_back().unwrap_or(0)
}

/// Acceptance of issue 12: a run killed with SIGKILL at random points of its steps and checkpoint
/// writes (checkpoints every step), then resumed (and killed again), ends bit for bit where an
/// uninterrupted run ends: the same final log-weights, checkpoint and trace.
#[test]
fn run_killed_at_random_points_then_resumed_equals_uninterrupted() {
    let text = config(200, 1000).replace("checkpoint_every = 10", "checkpoint_every = 1");
    let cfg = fresh_dir("kill9-cfg");
    let path = config_file(&cfg, &text);
    let (whole, split) = (fresh_dir("kill9-whole"), fresh_dir("kill9-split"));
    let o = frflow().arg("run").arg(&path).arg("--out").arg(&whole).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let mut rng = Lcg(12);
    let mut kills = 0;
    for round in 0..9 {
        let mut cmd = frflow();
        match frflow::io::output::read_checkpoint(&split.join("checkpoint.bin")) {
            Ok(_) => cmd.arg("run").arg("--resume").arg(&split),
            // Killed before its first checkpoint (or never started): start again over it.
            Err(_) => cmd.arg("run").arg(&path).arg("--out").arg(&split).arg("--force"),
        };
        let from = last_traced_step(&split);
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        if round == 8 {
            assert!(child.wait().unwrap().success(), "the final resume failed");
            break;
        }
        // Let it run a random number of steps (5 to 25 beyond where it starts), then a random
        // fraction of a step more, and kill it: mid-step or mid-checkpoint-write.
        let until = from + 5 * (1 + rng.below(5));
        let start = Instant::now();
        while last_traced_step(&split) < until && child.try_wait().unwrap().is_none() {
            assert!(start.elapsed() < Duration::from_secs(120), "the run made no progress");
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_micros(rng.below(3000)));
        if child.try_wait().unwrap().is_none() {
            kills += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(kills >= 4, "only {kills} kills landed mid-run");
    for f in ["log_weights.npy", "checkpoint.bin", "trace.csv", "weights.npy"] {
        assert!(
            std::fs::read(whole.join(f)).unwrap() == std::fs::read(split.join(f)).unwrap(),
            "{f} differs from the uninterrupted run's"
        );
    }
}

/// Acceptance of issue 12: a chaos sweep killed with SIGKILL at random points and rerun ends with
/// the same summary as an uninterrupted sweep, and its results file parses line by line.
#[test]
fn sweep_killed_at_random_points_then_rerun_equals_uninterrupted() {
    let chaos = std::fs::read_to_string("examples/chaos_t2.toml").unwrap();
    let n_line = chaos.lines().find(|l| l.starts_with("n = [")).unwrap();
    let text = chaos
        .replace(n_line, "n = [64, 128, 256]")
        .replace("replicates = 16", "replicates = 6")
        .replace("engine = \"auto\"", "engine = \"cpu\"");
    let cfg = fresh_dir("sweep-kill-cfg");
    let path = config_file(&cfg, &text);
    let (whole, split) = (fresh_dir("sweep-whole"), fresh_dir("sweep-split"));
    let start = Instant::now();
    let o = frflow().arg("chaos").arg(&path).arg("--out").arg(&whole).output().unwrap();
    let duration = start.elapsed();
    assert!(o.status.success(), "{}", stderr(&o));
    let mut rng = Lcg(7);
    for round in 0..6 {
        let mut child =
            frflow().arg("chaos").arg(&path).arg("--out").arg(&split).stdout(Stdio::null()).spawn().unwrap();
        std::thread::sleep(duration.mul_f64(0.1 + 0.5 * rng.fraction()));
        let _ = child.kill();
        let _ = child.wait();
        // Cut the results file's last line now and then, as a kill during its write would.
        if round % 2 == 1
            && let Ok(t) = std::fs::read(split.join("results.jsonl"))
            && t.len() > 10
        {
            std::fs::write(split.join("results.jsonl"), &t[..t.len() - 1 - rng.below(8) as usize]).unwrap();
        }
    }
    let o = frflow().arg("chaos").arg(&path).arg("--out").arg(&split).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let results = std::fs::read_to_string(split.join("results.jsonl")).unwrap();
    assert!(results.lines().all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()), "{results}");
    assert_eq!(
        std::fs::read_to_string(whole.join("chaos_summary.csv")).unwrap(),
        std::fs::read_to_string(split.join("chaos_summary.csv")).unwrap()
    );
}

// ---- CLI fuzz ----

/// Acceptance of issue 12: random command lines from hostile values (nan, inf, negative, huge,
/// garbage numbers; devices, FIFOs, folders and missing files as paths) never panic or hang: each
/// ends within 60 s with status 0 (success), 1 (a reported error) or 2 (a usage error).
#[test]
fn random_command_lines_never_panic_or_hang() {
    let dir = fresh_dir("fuzz-cli");
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let good = config_file(&dir.join("good"), &config(3, 20));
    std::fs::write(dir.join("garbage.toml"), [0xff, 0xfe, 0x00, b'[', b'x']).unwrap();
    let paths: Vec<String> = [
        PathBuf::from("/dev/zero"),
        fifo,
        dir.clone(),
        dir.join("missing.toml"),
        dir.join("garbage.toml"),
        good,
        PathBuf::from("examples/chaos_t2.toml"),
    ]
    .iter()
    .map(|p| p.display().to_string())
    .collect();
    let numbers = [
        "0",
        "-1",
        "nan",
        "inf",
        "-inf",
        "1e300",
        "18446744073709551615",
        "4611686018427387904",
        "",
        "x",
        "7",
        "2",
        "0.001",
        "3,3",
        "7,0",
    ];
    let mut rng = Lcg(2026);
    for case in 0..60 {
        let pick = |rng: &mut Lcg, v: &[&str]| v[rng.below(v.len() as u64) as usize].to_string();
        let num = |rng: &mut Lcg| pick(rng, &numbers);
        let path = |rng: &mut Lcg| paths[rng.below(paths.len() as u64) as usize].clone();
        let out = dir.join(format!("out-{case}")).display().to_string();
        let args: Vec<String> = match rng.below(5) {
            0 => {
                let mut a = vec!["bench".into(), "--engine".into(), "cpu".into(), "--repeats".into()];
                a.push(pick(&mut rng, &["0", "1", "2", "-3", "nan"]));
                for flag in ["--n", "--d", "--m", "--min-batch-seconds", "--ceiling", "--workgroup-size"] {
                    if rng.below(2) == 0 {
                        a.push(format!("{flag}={}", num(&mut rng)));
                    }
                }
                if !a.iter().any(|s| s.starts_with("--n=")) {
                    a.push("--n=7".into());
                }
                if !a.iter().any(|s| s.starts_with("--min-batch-seconds")) {
                    a.push("--min-batch-seconds=0.001".into());
                }
                a
            }
            1 => {
                let mut a = vec!["run".into(), path(&mut rng), "--out".into(), out];
                if rng.below(2) == 0 {
                    a.push("--force".into());
                }
                if rng.below(3) == 0 {
                    a.push(format!("--engine={}", pick(&mut rng, &["cpu", "bogus", ""])));
                }
                a
            }
            2 => vec!["run".into(), "--resume".into(), path(&mut rng)],
            3 => vec![pick(&mut rng, &["chaos", "bandwidth"]), path(&mut rng), "--out".into(), out],
            _ => vec![pick(&mut rng, &["demo", "info", "bogus"]), "--print-config".into()],
        };
        let mut cmd = frflow();
        cmd.args(&args);
        let o = output_within(cmd, 60);
        let err = stderr(&o);
        assert!(matches!(o.status.code(), Some(0..=2)), "{args:?}: status {:?}\n{err}", o.status);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
