//! The application examples (examples/*.toml, README "Applications") on reduced sizes.
//!
//! Each test runs the documented config with only N, M and the final time reduced (and
//! `engine = "cpu"`, `plot = false`), through [`run_config`] like the examples do, and checks the
//! example's acceptance criterion on the run's trace and weights. Together they take well under
//! a minute on two cores.

use frflow::config::Config;
use frflow::io::data::load_npy;
use frflow::pictures::{TraceRow, draw_run, mass_near, npmle_truth, read_trace, wasserstein1_1d, well_masses};
use frflow::plot::log_gibbs_target;
use frflow::runner::{RunRequest, run_config};
use std::path::{Path, PathBuf};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// The example `name`'s config with each `(from, to)` applied; every `from` must occur exactly
/// once, so a change to the example that the reduction no longer matches fails loudly.
fn reduced(name: &str, edits: &[(&str, &str)]) -> String {
    let mut text = std::fs::read_to_string(examples().join(format!("{name}.toml"))).unwrap();
    let always = [("engine = \"auto\"", "engine = \"cpu\""), ("plot = true", "plot = false")];
    for (from, to) in always.iter().chain(edits) {
        assert_eq!(text.matches(from).count(), 1, "`{from}` should occur once in examples/{name}.toml");
        text = text.replacen(from, to, 1);
    }
    text
}

/// Runs `text` into a fresh directory and returns the directory and the trace.
fn run(text: &str, name: &str) -> (PathBuf, Vec<TraceRow>) {
    let out = std::env::temp_dir().join(format!("frflow-applications-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let summary = run_config(text, &examples(), &out, RunRequest::default()).unwrap();
    println!(
        "{name}: {} steps, t = {}, {:.1} s",
        summary.diagnostics.step, summary.diagnostics.time, summary.wall_seconds
    );
    let trace = read_trace(&out.join("trace.csv")).unwrap();
    assert!(trace.len() > 2);
    (out, trace)
}

/// V_ε never increases along a gradient-flow variant's trace (to rounding).
fn assert_energy_decreases(trace: &[TraceRow]) {
    for pair in trace.windows(2) {
        let (a, b) = (pair[0].energy.unwrap(), pair[1].energy.unwrap());
        assert!(b <= a + 1e-12 * a.abs().max(1.0), "V rose from {a} to {b} at step {}", pair[1].step);
    }
}

/// The picture of the run exists and is a PNG of some substance.
fn assert_picture(out: &Path, name: &str) {
    let written = draw_run(out).unwrap();
    let png = out.join(format!("{name}.png"));
    assert_eq!(written, vec![png.clone()]);
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000, "{}: {} bytes", png.display(), bytes.len());
    assert!(out.join(format!("{name}.svg")).exists());
}

#[test]
fn two_layer_net_loss_falls_tenfold() {
    // Full example: N = 2048, M = 512, T = 100.
    let text = reduced(
        "two_layer_net",
        &[("n = 2048", "n = 1024"), ("m = 512", "m = 256"), ("final_time = 100.0", "final_time = 40.0")],
    );
    let (out, trace) = run(&text, "net");
    let (first, last) = (trace[0].f_energy, trace[trace.len() - 1].f_energy);
    println!("two-layer net: loss {first:.5} -> {last:.5} (factor {:.1})", first / last);
    assert!(last <= 0.1 * first, "loss {first} -> {last}: less than a tenfold decrease");
    assert_energy_decreases(&trace);
    // The fit is close to the noiseless target, not only to the noisy data.
    let problem = Config::from_str(&text, "net").unwrap().build(&examples()).unwrap();
    let w = load_npy(&out.join("weights.npy"), Some(1)).unwrap().values;
    let pos = &problem.particles.positions;
    let worst = (0..=80)
        .map(|k| -3.5 + 7.0 * f64::from(k) / 80.0)
        .map(|z| (frflow::pictures::network_output(pos, &w, &[z]) - frflow::io::data::bumps_function(z)).abs())
        .fold(0.0, f64::max);
    assert!(worst < 0.25, "largest error of the fit on [-3.5, 3.5]: {worst}");
    assert_picture(&out, "two_layer_net");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn npmle_likelihood_rises_and_mass_gathers_at_the_true_atoms() {
    // Full example: N = 400, M = 10 000, 500 EM steps.
    let text = reduced("npmle", &[("n = 400", "n = 200"), ("m = 10000", "m = 3000"), ("steps = 500", "steps = 300")]);
    let (out, trace) = run(&text, "npmle");
    // EM never decreases the likelihood: F = −mean log-likelihood never increases.
    for pair in trace.windows(2) {
        assert!(pair[1].f_energy <= pair[0].f_energy + 1e-12, "log-likelihood fell at step {}", pair[1].step);
    }
    let (first, last) = (-trace[0].f_energy, -trace[trace.len() - 1].f_energy);
    assert!(last > first + 0.2, "mean log-likelihood {first} -> {last}");
    let truth = npmle_truth(&Config::from_str(&text, "npmle").unwrap().build(Path::new(".")).unwrap()).unwrap();
    let x = load_npy(&out.join("positions.npy"), Some(1)).unwrap().values;
    let w = load_npy(&out.join("weights.npy"), Some(1)).unwrap().values;
    let centres: Vec<f64> = truth.iter().map(|a| a.location).collect();
    let near = mass_near(&x, &w, &centres, 0.25);
    let fitted: Vec<(f64, f64)> = x.iter().copied().zip(w.iter().copied()).collect();
    let atoms: Vec<(f64, f64)> = truth.iter().map(|a| (a.location, a.weight)).collect();
    let w1 = wasserstein1_1d(&fitted, &atoms);
    println!("npmle: log-likelihood {first:.4} -> {last:.4}, mass within 0.25 {near:.4}, W1 {w1:.4}");
    assert!(near > 0.9, "mass within ±0.25 of the true atoms: {near}");
    assert!(w1 < 0.15, "W1 to the true mixing distribution: {w1}");
    assert_picture(&out, "npmle");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn mmd_falls_twentyfold() {
    // Full example: N = 4096, M = 800, T = 500.
    let text = reduced(
        "mmd_2d",
        &[("n = 4096", "n = 2048"), ("m = 800", "m = 400"), ("final_time = 500.0", "final_time = 300.0")],
    );
    let (out, trace) = run(&text, "mmd");
    let (first, last) = (trace[0].f_energy, trace[trace.len() - 1].f_energy);
    println!("mmd: ½ MMD² {first:.3e} -> {last:.3e} (factor {:.1})", first / last);
    assert!(last <= first / 20.0, "½ MMD² {first} -> {last}");
    assert_energy_decreases(&trace);
    assert_picture(&out, "mmd");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn gibbs_torus_wells_get_the_target_masses() {
    // Full example: N = 4096.
    let text = reduced("gibbs_torus", &[("n = 4096", "n = 1024")]);
    let (out, trace) = run(&text, "gibbs");
    assert_energy_decreases(&trace);
    let problem = Config::from_str(&text, "gibbs").unwrap().build(&examples()).unwrap();
    let w = load_npy(&out.join("weights.npy"), Some(1)).unwrap().values;
    let got = well_masses(&problem.particles.positions, &w);
    let g = 200;
    let (mut grid, mut dens) = (Vec::new(), Vec::new());
    for i in 0..g {
        for j in 0..g {
            let x = [(f64::from(i) + 0.5) / f64::from(g), (f64::from(j) + 0.5) / f64::from(g)];
            dens.push(log_gibbs_target(&problem.model, &x).unwrap().exp());
            grid.extend_from_slice(&x);
        }
    }
    let want = well_masses(&grid, &dens);
    let tv = 0.5 * got.iter().zip(&want).map(|(a, b)| (a - b).abs()).sum::<f64>();
    println!("gibbs: wells {got:?} vs target {want:?}, TV {tv:.4}");
    assert!(tv < 0.03, "well masses {got:?} vs {want:?}");
    // No application picture for a potential energy: plot.rs's particles.png is the picture.
    assert!(draw_run(&out).unwrap().is_empty());
    let _ = std::fs::remove_dir_all(&out);
}
