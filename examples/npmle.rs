//! NPMLE deconvolution of a 1-D Gaussian location mixture (examples/npmle.toml).
//!
//! ```text
//! cargo run --release --example npmle [OUT_DIR]     # default out/npmle
//! ```
//!
//! Runs the config through the library (engine "auto"), writes the usual run outputs and
//! `npmle.png`/`.svg` (the fitted mixing measure against the true atoms; the fitted density
//! against a histogram of the observations), and prints the log-likelihood and how close the
//! fitted mixing measure is to the true one.

use frflow::config::Config;
use frflow::io::data::load_npy;
use frflow::pictures::{draw_run, mass_near, npmle_truth, read_trace, wasserstein1_1d};
use frflow::runner::{RunRequest, run_config};
use std::path::{Path, PathBuf};

const CONFIG: &str = include_str!("npmle.toml");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args().nth(1).map_or_else(|| PathBuf::from("out/npmle"), PathBuf::from);
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let summary = run_config(CONFIG, &base, &out, RunRequest::default())?;
    let pictures = draw_run(&out)?;
    let trace = read_trace(&out.join("trace.csv"))?;
    let (first, last) = (trace.first().ok_or("empty trace")?, trace.last().ok_or("empty trace")?);
    let truth = npmle_truth(&Config::from_str(CONFIG, "config")?.build(&base)?).ok_or("no generated truth")?;
    let x = load_npy(&out.join("positions.npy"), Some(1))?.values;
    let w = load_npy(&out.join("weights.npy"), Some(1))?.values;
    let fitted: Vec<(f64, f64)> = x.iter().copied().zip(w.iter().copied()).collect();
    let atoms: Vec<(f64, f64)> = truth.iter().map(|a| (a.location, a.weight)).collect();
    let centres: Vec<f64> = truth.iter().map(|a| a.location).collect();
    let uniform: Vec<(f64, f64)> = x.iter().map(|x| (*x, 1.0)).collect();
    println!("engine              {}", summary.engine);
    println!("steps               {} (EM iterations)", last.step);
    println!("mean log-likelihood {:.6} -> {:.6}", -first.f_energy, -last.f_energy);
    println!(
        "W1(fit, truth)      {:.4} (uniform start: {:.4})",
        wasserstein1_1d(&fitted, &atoms),
        wasserstein1_1d(&uniform, &atoms)
    );
    for delta in [0.1, 0.25, 0.5] {
        println!("mass within ±{delta:<4}  {:.4}", mass_near(&x, &w, &centres, delta));
    }
    println!("wall time           {:.1} s", summary.wall_seconds);
    for p in pictures {
        println!("picture             {}", p.display());
    }
    Ok(())
}
