//! Moving weight onto a 2-D target sample by the MMD energy (examples/mmd_2d.toml).
//!
//! ```text
//! cargo run --release --example mmd_2d [OUT_DIR]     # default out/mmd_2d
//! ```
//!
//! Runs the config through the library (engine "auto"), writes the usual run outputs and
//! `mmd.png`/`.svg` (the weighted particles over the target sample; ½ MMD² against time), and
//! prints how much the MMD fell.

use frflow::pictures::{draw_run, read_trace};
use frflow::runner::{RunRequest, run_config};
use std::path::{Path, PathBuf};

const CONFIG: &str = include_str!("mmd_2d.toml");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args().nth(1).map_or_else(|| PathBuf::from("out/mmd_2d"), PathBuf::from);
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let summary = run_config(CONFIG, &base, &out, RunRequest::default())?;
    let pictures = draw_run(&out)?;
    let trace = read_trace(&out.join("trace.csv"))?;
    let (first, last) = (trace.first().ok_or("empty trace")?, trace.last().ok_or("empty trace")?);
    let mmd = |f: f64| (2.0 * f).sqrt();
    println!("engine          {}", summary.engine);
    println!("steps           {} (t = {})", last.step, last.time);
    println!(
        "½ MMD²          {:.3e} -> {:.3e} (factor {:.0})",
        first.f_energy,
        last.f_energy,
        first.f_energy / last.f_energy
    );
    println!("MMD             {:.4} -> {:.4}", mmd(first.f_energy), mmd(last.f_energy));
    println!("ESS             {:.1}", summary.diagnostics.ess);
    println!("wall time       {:.1} s", summary.wall_seconds);
    for p in pictures {
        println!("picture         {}", p.display());
    }
    Ok(())
}
