//! Your own potential U(x), without forking frflow.
//!
//! ```text
//! cargo run --release --example custom_energy
//! ```
//!
//! U(x) = 100 |x − c|⁴ on the 2-D torus, given two ways: as a Rust closure
//! (`CustomPotential::new`) and as a config formula (`potential = "expression"`). Positions never
//! move, so U is evaluated once per particle in f64 when an engine is built. Both run through
//! `flow::run` on the CPU engine and, where a GPU adapter (or lavapipe) opens, on the GPU engine;
//! the example prints the variance of each run and the largest disagreement of the weights.

use frflow::config::Config;
use frflow::engine::Engine;
use frflow::engine::cpu::CpuEngine;
use frflow::engine::gpu::{GpuContext, GpuEngine};
use frflow::flow::run;
use frflow::model::{CustomPotential, Energy, Potential};
use std::path::Path;

const CONFIG: &str = r#"
seed = 5
sigma = 0.2
[domain]
kind = "torus"
dim = 2
side = 1.0
[reference]
kind = "uniform"
[kernel]
epsilon = 0.05
variant = "B"
[particles]
n = 2048
[time]
h = 0.01
steps = 200
[[energy]]
kind = "potential"
potential = "expression"
expression = "100 * ((x0 - 0.5)^2 + (x1 - 0.5)^2)^2"
"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The formula, from the config.
    let from_config = Config::from_str(CONFIG, "custom_energy")?.build(Path::new("."))?;
    // The same U as a closure. The particles lie in [0, 1)² and the centre mid-cell, so the plain
    // difference is the minimum-image one, as in the formula.
    let closure = CustomPotential::new("100 |x - c|^4", |x: &[f64]| {
        let r2 = (x[0] - 0.5).powi(2) + (x[1] - 0.5).powi(2);
        100.0 * r2 * r2
    });
    let mut with_closure = from_config.model.clone();
    with_closure.energy = vec![Energy::Potential(Potential::Custom(closure))];

    let mut results = Vec::new();
    for (name, model) in [("formula", &from_config.model), ("closure", &with_closure)] {
        let mut cpu = CpuEngine::new(model.clone(), from_config.particles.clone())?;
        let s = run(&mut cpu, &from_config.run, &mut [], None)?;
        println!("{name:>8} on {:<40} variance {:.6}", cpu.name(), s.diagnostics.variance[0]);
        results.push(cpu.state()?.weights());
        match GpuContext::new(None).or_else(|_| GpuContext::new(Some("llvmpipe"))) {
            Ok(ctx) => {
                let mut gpu = GpuEngine::new(ctx, model.clone(), from_config.particles.clone())?;
                let s = run(&mut gpu, &from_config.run, &mut [], None)?;
                println!("{name:>8} on {:<40} variance {:.6}", gpu.name(), s.diagnostics.variance[0]);
                results.push(gpu.state()?.weights());
            }
            Err(e) => println!("{name:>8}: no GPU adapter ({e}); CPU engine only"),
        }
    }
    let worst = results
        .iter()
        .flat_map(|w| w.iter().zip(&results[0]).map(|(a, b)| (a - b).abs() / b.max(1e-300)))
        .fold(0.0, f64::max);
    println!("largest relative disagreement of the weights across runs: {worst:.2e}");
    Ok(())
}
