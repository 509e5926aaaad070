//! Configs on the GPU engine: `frflow chaos` (the path its large-N points take) against the same
//! sweep on the f64 CPU engine, and the config's `workgroup_size`, on lavapipe in CI.

mod common;

use frflow::experiments::{ChaosSpec, SweepOptions, run_chaos};
use std::path::Path;

/// SPEC §7 T2 (variant B, d = 1, T = 2, Euler h = 0.05) swept over awkward N with two replicates
/// on `engine`.
fn t2_sweep(engine: &str) -> String {
    format!(
        r#"
[problem]
seed = 1
engine = "{engine}"
sigma = 1.0
[problem.domain]
kind = "euclidean"
dim = 1
[problem.reference]
kind = "gaussian"
mean = 0.0
std = 1.0
[problem.kernel]
epsilon = 0.5
variant = "B"
[problem.particles]
n = 64
init = {{ kind = "gaussian", mean = 0.8, std = 1.5 }}
[problem.time]
scheme = "euler"
h = 0.05
final_time = 2.0
[sweep]
n = [61, 256, 1031]
replicates = 2
reference = "closed-form"
seed = 300
"#
    )
}

/// Every (N, replicate) of the GPU sweep matches the CPU sweep's run on the same positions: the
/// coupled weight distance Σ|w − w̄| (≈ 1e-2) and W₂ to the Gaussian μ_T (≈ 1e-2) within 1e-6
/// absolute. Weights are f32 on the GPU (log-weight error up to ~1e-5 relative, see
/// tests/gpu_engine.rs); measured here: 1e-7 for the coupling, 3e-8 for W₂.
#[test]
fn chaos_sweep_on_the_gpu_matches_the_cpu_sweep() {
    if common::context().is_none() {
        return;
    }
    let run = |engine: &str| {
        let spec = ChaosSpec::from_str(&t2_sweep(engine), "t2-chaos", Path::new(".")).unwrap();
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("gpu-chaos-{engine}"));
        let _ = std::fs::remove_dir_all(&out);
        run_chaos(&spec, &SweepOptions { out, report: false, progress: false }).unwrap()
    };
    let (gpu, cpu) = (run("gpu"), run("cpu"));
    assert_eq!(gpu.runs.len(), 6);
    let mut worst = (0.0f64, 0.0f64);
    for (g, c) in gpu.runs.iter().zip(&cpu.runs) {
        assert_eq!((g.n, g.replicate, g.steps), (c.n, c.replicate, c.steps));
        worst = (worst.0.max((g.coupling - c.coupling).abs()), worst.1.max((g.w2 - c.w2).abs()));
        println!(
            "N = {:4} rep {}: coupling {:.6e} / {:.6e}, W2 {:.6e} / {:.6e}",
            g.n, g.replicate, g.coupling, c.coupling, g.w2, c.w2
        );
    }
    println!("largest differences: coupling {:.1e}, W2 {:.1e}", worst.0, worst.1);
    assert!(worst.0 < 1e-6 && worst.1 < 1e-6, "{worst:?}");
}

/// A run config's `workgroup_size` reaches the GPU engine: 64 runs to the same final state as the
/// default tile (to f32 summation-order rounding), and 6 is refused naming the key.
#[test]
fn workgroup_size_in_a_config_reaches_the_gpu_engine() {
    if common::context().is_none() {
        return;
    }
    // The sweep's [problem] table as a run config: its keys at the top level, its sub-tables as tables.
    let problem = t2_sweep("gpu").split("[sweep]").next().unwrap().replace("[problem]\n", "").replace("[problem.", "[");
    let run = |extra: &str| {
        let text = format!("{extra}\n{problem}");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gpu-workgroup");
        let _ = std::fs::remove_dir_all(&out);
        frflow::runner::run_config(&text, Path::new("."), &out, frflow::runner::RunRequest::default())
    };
    let default = run("").unwrap();
    let tuned = run("workgroup_size = 64").unwrap();
    let (a, b) = (default.diagnostics.variance[0], tuned.diagnostics.variance[0]);
    assert!((a - b).abs() < 1e-5 * a, "variance {a} vs {b}");
    match run("workgroup_size = 6") {
        Err(frflow::Error::Invalid { field, .. }) => assert_eq!(field, "workgroup_size"),
        other => panic!("expected an Invalid error naming workgroup_size, got {:?}", other.map(|_| ())),
    }
}

/// A run config's `image_exponentials` reaches the GPU engine, whose name in the summary gives
/// the kernel path; a value other than fma or sfu is refused naming the key and both values.
#[test]
fn image_exponentials_in_a_config_reach_the_gpu_engine() {
    if common::context().is_none() {
        return;
    }
    // A torus with images: ε = 0.1 on the unit torus.
    let problem = r#"
engine = "gpu"
device = "llvmpipe"
sigma = 0.5
[domain]
kind = "torus"
dim = 2
[kernel]
epsilon = 0.1
variant = "A"
[particles]
n = 500
[time]
h = 0.01
steps = 5
[output]
plot = false
"#;
    let run = |extra: &str| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gpu-image-exponentials");
        let _ = std::fs::remove_dir_all(&out);
        let text = format!("{extra}\n{problem}");
        frflow::runner::run_config(&text, Path::new("."), &out, Default::default())
    };
    let (fma, sfu) = (run("").unwrap(), run("image_exponentials = \"sfu\"").unwrap());
    assert!(fma.engine.ends_with(", torus-images)"), "{}", fma.engine);
    assert!(sfu.engine.ends_with(", torus-images-sfu)"), "{}", sfu.engine);
    let (a, b) = (fma.diagnostics.variance[0], sfu.diagnostics.variance[0]);
    assert!((a - b).abs() < 1e-5 * a, "variance {a} vs {b}");
    let err = run("image_exponentials = \"gpu\"").map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("image_exponentials") && err.contains("fma") && err.contains("sfu"), "{err}");
}
