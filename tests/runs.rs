//! Runs into output directories: checkpoints, resume, Ctrl-C, the demo.

use frflow::engine::{Diagnostics, Engine};
use frflow::flow::{Observer, Termination};
use frflow::runner::{RunRequest, resume, run_config};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

mod common {
    pub mod small_run;
}
use common::small_run::{config, fresh_dir};

/// Raises the interrupt flag once the run reaches `at`.
struct InterruptAt {
    at: u64,
    flag: Arc<AtomicBool>,
}

impl Observer for InterruptAt {
    fn every(&self) -> u64 {
        1
    }
    fn observe(&mut self, d: &Diagnostics, _: &mut dyn Engine) -> frflow::Result<()> {
        if d.step >= self.at {
            self.flag.store(true, Ordering::SeqCst);
        }
        Ok(())
    }
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{}: {e}", dir.join(name).display()))
}

#[test]
fn interrupted_then_resumed_run_equals_uninterrupted_bit_for_bit() {
    let text = config(60, 300);
    let (a, b) = (fresh_dir("whole"), fresh_dir("split"));
    let whole = run_config(&text, Path::new("."), &a, RunRequest::default()).unwrap();
    assert_eq!(whole.termination, Termination::MaxSteps);

    // Stop at step 23, between checkpoints and off the trace cadence: the final checkpoint holds step 23.
    let flag = Arc::new(AtomicBool::new(false));
    let stopper = InterruptAt { at: 23, flag: flag.clone() };
    let request = RunRequest { interrupt: Some(flag), observers: vec![Box::new(stopper)], ..Default::default() };
    let first = run_config(&text, Path::new("."), &b, request).unwrap();
    assert_eq!(first.termination, Termination::Interrupted);
    assert_eq!(first.diagnostics.step, 23);
    let second = resume(&b, RunRequest::default()).unwrap();
    assert_eq!(second.termination, Termination::MaxSteps);
    assert_eq!(second.steps_this_run, 60 - 23);

    assert_eq!(read(&a, "log_weights.npy"), read(&b, "log_weights.npy"), "final log-weights differ");
    assert_eq!(read(&a, "checkpoint.bin"), read(&b, "checkpoint.bin"), "final checkpoints differ");
    assert_eq!(read(&a, "trace.csv"), read(&b, "trace.csv"), "traces differ");
    assert_eq!(read(&a, "snapshots/weights_000000040.npy"), read(&b, "snapshots/weights_000000040.npy"));
    assert_eq!(whole.diagnostics, second.diagnostics);
    // The run really moved the weights (so equality above is not trivially about uniform weights).
    assert!(whole.diagnostics.ess < 0.9 * 300.0, "ESS {}", whole.diagnostics.ess);
}

#[test]
fn resume_rejects_a_damaged_checkpoint() {
    let dir = fresh_dir("damaged");
    run_config(&config(10, 50), Path::new("."), &dir, RunRequest::default()).unwrap();
    let ck = dir.join("checkpoint.bin");
    let mut bytes = std::fs::read(&ck).unwrap();
    bytes.truncate(bytes.len() - 3);
    std::fs::write(&ck, bytes).unwrap();
    let err = resume(&dir, RunRequest::default()).unwrap_err().to_string();
    assert!(err.contains("checkpoint") && err.contains("expected"), "{err}");
}

fn frflow() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_frflow"))
}

/// SIGINT, as Ctrl-C sends it, ends a long run cleanly: exit status 130, an `interrupted`
/// summary and a final checkpoint of the very state the summary reports. (That resuming from such
/// a checkpoint is bit for bit the uninterrupted run is checked above, without a signal race.)
#[test]
fn ctrl_c_stops_cleanly_with_a_final_checkpoint() {
    let (cfg, out) = (fresh_dir("cli-cfg"), fresh_dir("cli-split"));
    std::fs::create_dir_all(&cfg).unwrap();
    let path = cfg.join("run.toml");
    std::fs::write(&path, config(100_000_000, 300)).unwrap();

    let mut child = frflow().arg("run").arg(&path).arg("--out").arg(&out).spawn().unwrap();
    // Wait until the run is under way (a few trace rows), then send SIGINT as Ctrl-C would.
    let trace = out.join("trace.csv");
    let start = std::time::Instant::now();
    while std::fs::read_to_string(&trace).map(|t| t.lines().count()).unwrap_or(0) < 4 {
        assert!(start.elapsed().as_secs() < 120, "run did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let kill = std::process::Command::new("kill").arg("-INT").arg(child.id().to_string()).status().unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "an interrupted run exits with 130");
    let summary: serde_json::Value = serde_json::from_slice(&read(&out, "summary.json")).unwrap();
    assert_eq!(summary["termination"], "interrupted");
    let state = frflow::io::output::read_checkpoint(&out.join("checkpoint.bin")).unwrap();
    assert_eq!(Some(state.step), summary["diagnostics"]["step"].as_u64());
    assert!(state.step > 0 && state.step < 100_000_000);
}

/// `frflow run --resume DIR` continues from the checkpoint: on a finished run it takes no step.
#[test]
fn cli_resume_continues_from_the_checkpoint() {
    let (cfg, out) = (fresh_dir("resume-cfg"), fresh_dir("resume-out"));
    std::fs::create_dir_all(&cfg).unwrap();
    let path = cfg.join("run.toml");
    std::fs::write(&path, config(30, 100)).unwrap();
    let first = frflow().arg("run").arg(&path).arg("--out").arg(&out).output().unwrap();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let before = read(&out, "log_weights.npy");
    let again = frflow().arg("run").arg("--resume").arg(&out).output().unwrap();
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(stdout.contains("MaxSteps after 30 steps") && stdout.contains("(0 steps this run)"), "{stdout}");
    assert_eq!(before, read(&out, "log_weights.npy"));
}

#[test]
fn demo_writes_trace_state_summary_and_picture() {
    let out = fresh_dir("demo");
    let run = frflow().arg("demo").arg("--engine").arg("cpu").arg("--out").arg(&out).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    for f in ["trace.csv", "weights.npy", "positions.npy", "summary.json", "particles.png", "particles.svg"] {
        assert!(out.join(f).metadata().map(|m| m.len() > 0).unwrap_or(false), "{f} missing");
    }
    let png = read(&out, "particles.png");
    assert_eq!(&png[1..4], b"PNG");
    let summary: serde_json::Value = serde_json::from_slice(&read(&out, "summary.json")).unwrap();
    assert_eq!(summary["termination"], "final_time");
    // The four-well target is concentrated: the weights must have moved far from uniform.
    let ess = summary["diagnostics"]["ess"].as_f64().unwrap();
    assert!(ess < 0.6 * 4096.0, "ESS {ess}");
}

#[test]
fn cli_reports_bad_configs_without_panicking() {
    let dir = fresh_dir("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(&path, config(10, 50).replace("epsilon = 0.08", "epsilon = -1.0")).unwrap();
    let out = frflow().arg("run").arg(&path).arg("--out").arg(dir.join("o")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("kernel.epsilon") && err.contains("-1"), "{err}");
    let missing = frflow().arg("run").arg(dir.join("nope.toml")).output().unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nope.toml"));
}

/// `frflow bench --sinkhorn --json` on the CPU engine, at awkward N: every figure of every row is
/// a positive finite rate and the JSON names the device. (Speed itself is not asserted.)
#[test]
fn bench_writes_every_figure_including_the_sinkhorn_pass() {
    let dir = fresh_dir("bench");
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("bench.json");
    let out = frflow()
        .args(["bench", "--n", "7,130", "--d", "2", "--engine", "cpu", "--sinkhorn", "--repeats", "1"])
        .args(["--min-batch-seconds", "0.01", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("sinkhorn"), "{stdout}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert!(report["device"].as_str().unwrap().starts_with("cpu-f64"));
    let rows = report["rows"].as_array().unwrap();
    // Per N: the minimal kernel, the f64 kernel pass, steps of A, B, C, D, the Sinkhorn pass.
    let kinds = ["minimal", "kernel", "step", "step", "step", "step", "sinkhorn"];
    let expected: Vec<(u64, &str)> = [7, 130].iter().flat_map(|n| kinds.iter().map(move |k| (*n, *k))).collect();
    let got: Vec<(u64, &str)> = rows.iter().map(|r| (r["n"].as_u64().unwrap(), r["kind"].as_str().unwrap())).collect();
    assert_eq!(got, expected);
    for r in rows {
        for key in ["pairs_per_second", "ratio_to_minimal", "seconds"] {
            let v = r[key].as_f64().unwrap_or(f64::NAN);
            assert!(v.is_finite() && v > 0.0, "{key} = {v} in {r}");
        }
    }
}

/// `frflow bench --epsilon --cutoff` on the CPU engine: the step row reports the pairs it
/// evaluated (fewer than the all-pairs count its pairs/s is based on) and its truncation bound;
/// a bad cutoff is refused naming the flag. (Speed itself is not asserted.)
#[test]
fn bench_reports_the_cutoff_steps_evaluated_pairs_and_bound() {
    let dir = fresh_dir("bench-cutoff");
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("bench.json");
    let out = frflow()
        .args(["bench", "--n", "3001", "--d", "2", "--engine", "cpu", "--epsilon", "0.01", "--cutoff", "1e-10"])
        .args(["--variant", "A", "--repeats", "1", "--min-batch-seconds", "0.01", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let step = report["rows"].as_array().unwrap().iter().find(|r| r["kind"] == "step").unwrap().clone();
    let (pairs, evaluated) = (step["pairs"].as_f64().unwrap(), step["pairs_evaluated"].as_f64().unwrap());
    assert!(evaluated > 0.0 && evaluated < 0.2 * pairs, "{evaluated} of {pairs}");
    let bound = step["truncation_bound"].as_f64().unwrap();
    assert!(bound > 0.0 && bound < 1e-4, "{bound}");
    let bad = frflow().args(["bench", "--engine", "cpu", "--cutoff", "2"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--cutoff"), "{}", String::from_utf8_lossy(&bad.stderr));
}
