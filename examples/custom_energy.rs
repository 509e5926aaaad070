//! Your own terms of F, without forking frflow: the three ways, on both engines.
//!
//! ```text
//! cargo run --release --example custom_energy
//! ```
//!
//! 1. A potential U(x) = 100 |x − c|⁴ on the 2-D torus, as a config formula
//!    (`potential = "expression"`) and as a Rust closure (`CustomPotential::new`): positions never
//!    move, so U is evaluated once per particle in f64 when an engine is built.
//! 2. A pairwise interaction ½ ∬ W(x, y) m(dx) m(dy) with the user's W(x, y) = 0.5 cos(2π(x₀ − y₀))
//!    (`PairKernel`: a WGSL `pair_kernel` spliced into the GPU's pair-sum shader, checked
//!    against its Rust twin when the engine is built).
//! 3. The same interaction as a whole term (`EnergyTerm`), evaluated on the host; the GPU engine
//!    reads the weights back each step for it and says so in its name.
//!
//! Every model runs through `flow::run` on the CPU engine and, where a GPU adapter (or lavapipe)
//! opens, on the GPU engine; the example prints each run's variance and the largest disagreement
//! of the weights between the engines, and between (2) and (3).

use frflow::config::Config;
use frflow::engine::Engine;
use frflow::engine::cpu::CpuEngine;
use frflow::engine::gpu::{GpuContext, GpuEngine};
use frflow::flow::run;
use frflow::model::{CustomPotential, CustomTerm, Energy, EnergyTerm, Model, PairKernel, Potential};
use std::f64::consts::TAU;
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

/// W(x, y) = 0.5 cos(2π(x₀ − y₀)): pulls the weight towards one phase of the first coordinate.
fn w(x: &[f64], y: &[f64]) -> f64 {
    0.5 * (TAU * (x[0] - y[0])).cos()
}

/// ½ ∬ W dm dm as a whole term: F and δF/δm(y) = ∫ W(y, x) m(dx), in O(N) through the cosine's
/// two Fourier moments, which is why a user might write a term rather than a pair kernel.
struct CosineInteraction;

impl EnergyTerm for CosineInteraction {
    fn name(&self) -> &str {
        "cosine interaction"
    }

    fn evaluate(&self, positions: &[f64], weights: &[f64], targets: &[f64]) -> frflow::Result<(f64, Vec<f64>)> {
        let d = positions.len() / weights.len();
        let (mut c, mut s) = (0.0, 0.0);
        for (x, wi) in positions.chunks(d).zip(weights) {
            c += wi * (TAU * x[0]).cos();
            s += wi * (TAU * x[0]).sin();
        }
        let f = 0.25 * (c * c + s * s);
        Ok((f, targets.chunks(d).map(|y| 0.5 * ((TAU * y[0]).cos() * c + (TAU * y[0]).sin() * s)).collect()))
    }
}

/// Runs `model` on the CPU engine and, where an adapter opens, on the GPU; returns the weights.
fn run_both(
    name: &str,
    model: &Model,
    config: &frflow::config::Problem,
) -> Result<Vec<Vec<f64>>, Box<dyn std::error::Error>> {
    let mut weights = Vec::new();
    let mut cpu = CpuEngine::new(model.clone(), config.particles.clone())?;
    let s = run(&mut cpu, &config.run, &mut [], None)?;
    println!("{name:>12} on {:<60} variance {:.6}", cpu.name(), s.diagnostics.variance[0]);
    weights.push(cpu.state()?.weights());
    match GpuContext::new(None).or_else(|_| GpuContext::new(Some("llvmpipe"))) {
        Ok(ctx) => {
            let mut gpu = GpuEngine::new(ctx, model.clone(), config.particles.clone())?;
            let s = run(&mut gpu, &config.run, &mut [], None)?;
            println!("{name:>12} on {:<60} variance {:.6}", gpu.name(), s.diagnostics.variance[0]);
            weights.push(gpu.state()?.weights());
        }
        Err(e) => println!("{name:>12}: no GPU adapter ({e}); CPU engine only"),
    }
    Ok(weights)
}

/// The largest relative difference between weight vectors.
fn disagreement(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs() / y.max(1e-300)).fold(0.0, f64::max)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 1. The formula, from the config, and the same U as a closure. The particles lie in [0, 1)²
    //    and the centre mid-cell, so the plain difference is the minimum-image one, as in the formula.
    let problem = Config::from_str(CONFIG, "custom_energy")?.build(Path::new("."))?;
    let closure = CustomPotential::new("100 |x - c|^4", |x: &[f64]| {
        let r2 = (x[0] - 0.5).powi(2) + (x[1] - 0.5).powi(2);
        100.0 * r2 * r2
    });
    let u = Energy::Potential(Potential::Custom(closure));
    let with = |extra: Vec<Energy>| Model { energy: [vec![u.clone()], extra].concat(), ..problem.model.clone() };
    // 2. The pair kernel: WGSL and its Rust twin.
    let wgsl = "fn pair_kernel(x: array<f32, D>, y: array<f32, D>) -> f32 {
        return 0.5 * cos(6.2831853 * (x[0] - y[0]));
    }";
    let pair = Energy::Pair(PairKernel::new("0.5 cos(2π(x0 - y0))", wgsl, w));
    // 3. The whole term.
    let term = Energy::Custom(CustomTerm::new(CosineInteraction));

    let formula = run_both("formula", &problem.model, &problem)?;
    let closure = run_both("closure", &with(vec![]), &problem)?;
    let pair = run_both("pair kernel", &with(vec![pair]), &problem)?;
    let term = run_both("whole term", &with(vec![term]), &problem)?;
    let engines = |name: &str, w: &[Vec<f64>]| {
        if let [cpu, gpu] = w {
            println!("{name:>12}: GPU against CPU, largest relative weight difference {:.2e}", disagreement(gpu, cpu));
        }
    };
    engines("formula", &formula);
    engines("closure", &closure);
    engines("pair kernel", &pair);
    engines("whole term", &term);
    println!("formula against closure (CPU): {:.2e}", disagreement(&closure[0], &formula[0]));
    println!("pair kernel against whole term (CPU): {:.2e}", disagreement(&term[0], &pair[0]));
    Ok(())
}
