//! A multi-well Gibbs measure on the 2-D torus (examples/gibbs_torus.toml).
//!
//! ```text
//! cargo run --release --example gibbs_torus [OUT_DIR]     # default out/gibbs_torus
//! ```
//!
//! Runs the config through the library (engine "auto"), writes the usual run outputs with
//! `particles.png`/`.svg` (the weighted particles over the target density μ* ∝ π e^{−U/σ}), and
//! prints the mass of each well under the particles and under μ*.

use frflow::config::Problem;
use frflow::io::data::load_npy;
use frflow::pictures::{read_trace, well_masses};
use frflow::plot::log_gibbs_target;
use frflow::runner::{RunRequest, run_config};
use std::path::{Path, PathBuf};

const CONFIG: &str = include_str!("gibbs_torus.toml");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args().nth(1).map_or_else(|| PathBuf::from("out/gibbs_torus"), PathBuf::from);
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let summary = run_config(CONFIG, &base, &out, RunRequest::default())?;
    let trace = read_trace(&out.join("trace.csv"))?;
    let (first, last) = (trace.first().ok_or("empty trace")?, trace.last().ok_or("empty trace")?);
    let problem: Problem = frflow::config::Config::from_str(CONFIG, "config")?.build(&base)?;
    let w = load_npy(&out.join("weights.npy"), Some(1))?.values;
    let masses = well_masses(&problem.particles.positions, &w);
    // μ*'s masses of the same regions, by the midpoint rule on a 400 × 400 grid.
    let g = 400;
    let (mut grid, mut dens) = (Vec::with_capacity(2 * g * g), Vec::with_capacity(g * g));
    for i in 0..g {
        for j in 0..g {
            let x = [(i as f64 + 0.5) / g as f64, (j as f64 + 0.5) / g as f64];
            dens.push(log_gibbs_target(&problem.model, &x).ok_or("F is not a potential")?.exp());
            grid.extend_from_slice(&x);
        }
    }
    let target = well_masses(&grid, &dens);
    println!("engine          {}", summary.engine);
    println!("steps           {} (t = {}), {:?}", last.step, last.time, summary.termination);
    if let (Some(a), Some(b)) = (first.energy, last.energy) {
        println!("energy V        {a:.5} -> {b:.5}");
    }
    println!("max |a_i|       {:.3e}", summary.diagnostics.max_abs_rate);
    println!("well            particles   target");
    for (name, (p, t)) in ["centre", "edges (2)", "corner"].iter().zip(masses.iter().zip(&target)) {
        println!("{name:<15} {p:.4}      {t:.4}");
    }
    let tv = 0.5 * masses.iter().zip(&target).map(|(p, t)| (p - t).abs()).sum::<f64>();
    println!("TV (wells)      {tv:.4}");
    println!("wall time       {:.1} s", summary.wall_seconds);
    println!("picture         {}", out.join("particles.png").display());
    Ok(())
}
