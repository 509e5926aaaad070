//! A mean-field two-layer network fits the 1-D bumps target (examples/two_layer_net.toml).
//!
//! ```text
//! cargo run --release --example two_layer_net [OUT_DIR]     # default out/two_layer_net
//! ```
//!
//! Runs the config through the library (engine "auto": a hardware GPU when there is one, else
//! the CPU engine), writes the usual run outputs and `two_layer_net.png`/`.svg` (the fit against
//! the data and the target; the loss F against time), and prints how much the loss fell.

use frflow::pictures::{draw_run, read_trace};
use frflow::runner::{RunRequest, run_config};
use std::path::{Path, PathBuf};

const CONFIG: &str = include_str!("two_layer_net.toml");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args().nth(1).map_or_else(|| PathBuf::from("out/two_layer_net"), PathBuf::from);
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let summary = run_config(CONFIG, &base, &out, RunRequest::default())?;
    let pictures = draw_run(&out)?;
    let trace = read_trace(&out.join("trace.csv"))?;
    let (first, last) = (trace.first().ok_or("empty trace")?, trace.last().ok_or("empty trace")?);
    // The first time the loss is a tenth of its initial value.
    let tenth = trace.iter().find(|r| r.f_energy <= 0.1 * first.f_energy).map(|r| r.time);
    println!("engine          {}", summary.engine);
    println!("steps           {} (t = {})", last.step, last.time);
    println!(
        "loss F          {:.6} -> {:.6} (factor {:.1})",
        first.f_energy,
        last.f_energy,
        first.f_energy / last.f_energy
    );
    match tenth {
        Some(t) => println!("F(0)/10 reached at t = {t:.2}"),
        None => println!("F(0)/10 not reached"),
    }
    println!(
        "ESS             {:.1} of {}",
        summary.diagnostics.ess,
        frflow::config::Config::from_str(CONFIG, "config")?.particles.n
    );
    println!("wall time       {:.1} s", summary.wall_seconds);
    for p in pictures {
        println!("picture         {}", p.display());
    }
    Ok(())
}
