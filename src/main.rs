//! The frflow command-line tool: a thin layer over the library.

use clap::{Parser, Subcommand};
use frflow::bench::{BenchOptions, run_bench};
use frflow::config::EngineChoice;
use frflow::engine::gpu::ImageExponentials;
use frflow::flow::{Summary, Termination};
use frflow::runner::{RunRequest, resume, run_config, run_file};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The embedded demo problem (examples/demo.toml).
const DEMO: &str = include_str!("../examples/demo.toml");

#[derive(Parser)]
#[command(
    name = "frflow",
    version,
    about = "Kernelized Fisher–Rao gradient flows for entropic mean-field optimisation",
    long_about = "Minimises V(m) = F(m) + σ·D(m|π) over probability measures by the kernelized \
                  Fisher–Rao flow: particle positions stay fixed and their weights evolve. \
                  See the README for the config reference and output formats."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the problem described by a TOML config, writing outputs into a directory.
    Run {
        /// The TOML config (see the README's config reference). Not needed with --resume.
        #[arg(required_unless_present = "resume")]
        config: Option<PathBuf>,
        /// Output directory (created if missing; it must be empty or new, see --force).
        #[arg(long, short, default_value = "out", conflicts_with = "resume")]
        out: PathBuf,
        /// Continue the run in this output directory from its last checkpoint.
        #[arg(long, value_name = "DIR")]
        resume: Option<PathBuf>,
        /// Delete a previous run in the output directory and start this one there.
        #[arg(long, conflicts_with = "resume")]
        force: bool,
        /// Override the config's engine: cpu, gpu or auto.
        #[arg(long, value_parser = EngineChoice::from_str)]
        engine: Option<EngineChoice>,
        /// GPU adapter by kind (discrete, integrated, cpu), index or name substring; also FRFLOW_DEVICE.
        #[arg(long)]
        device: Option<String>,
    },
    /// Run the embedded demo (a 2-D four-well Gibbs measure on the torus, variant B, N = 4096).
    Demo {
        /// Output directory.
        #[arg(long, short, default_value = "demo-out")]
        out: PathBuf,
        /// Override the engine (default: auto).
        #[arg(long, value_parser = EngineChoice::from_str)]
        engine: Option<EngineChoice>,
        /// GPU adapter selector, as for `run`.
        #[arg(long)]
        device: Option<String>,
        /// Print the demo's config and exit.
        #[arg(long)]
        print_config: bool,
        /// Delete a previous run in the output directory and start the demo there.
        #[arg(long)]
        force: bool,
    },
    /// Print the version and the GPU adapters this machine offers.
    Info,
    /// Measure pair throughput: the N×N kernel-sum pass alone and whole explicit Euler steps (median of repeats).
    Bench {
        /// Particle counts, comma separated (e.g. 65536,1048576).
        #[arg(long, value_delimiter = ',', default_value = "4096")]
        n: Vec<usize>,
        /// Dimension d.
        #[arg(long, default_value_t = 3)]
        d: usize,
        /// Kernelization variants of the steps, comma separated: A, B, C, D, D', exact.
        #[arg(long, value_delimiter = ',', default_value = "A,B,C,D", value_parser = parse_variant)]
        variant: Vec<frflow::model::Variant>,
        /// Energy of the step: none, potential, interaction, mmd, two-layer-net, npmle.
        #[arg(long, default_value = "none")]
        energy: frflow::bench::BenchEnergy,
        /// Data size M for mmd, two-layer-net and npmle.
        #[arg(long, default_value_t = 4096)]
        m: usize,
        /// Engine: gpu (default) or cpu.
        #[arg(long, default_value = "gpu", value_parser = EngineChoice::from_str)]
        engine: EngineChoice,
        /// GPU adapter by kind, index or name substring (default: the best one; also FRFLOW_DEVICE).
        #[arg(long)]
        device: Option<String>,
        /// Timed batches per figure; the median is reported.
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Each batch is grown until it lasts at least this many seconds.
        #[arg(long, default_value_t = 0.2)]
        min_batch_seconds: f64,
        /// Use the bounds-checked shader modules (slower; for comparison).
        #[arg(long)]
        checked: bool,
        /// Workgroup size (and source tile) of the kernel-sum passes, alone and in steps: a multiple of 4 (default 128).
        #[arg(long)]
        workgroup_size: Option<u32>,
        /// Where the steps' GPU engine computes the periodic images' exponentials: fma (a polynomial on the FMA pipe, the default) or sfu (the special-function unit's exp2); the kernel passes time both (torus-images, torus-images-sfu).
        #[arg(long, default_value = "fma", value_parser = ImageExponentials::from_str)]
        image_exponentials: ImageExponentials,
        /// The card's ceiling in pair evaluations per second (e.g. 3.9e12 for an H100), to report the fraction reached.
        #[arg(long)]
        ceiling: Option<f64>,
        /// Also time one N × N pass of entropic OT's Sinkhorn iteration (the W₂ of chaos sweeps).
        #[arg(long)]
        sinkhorn: bool,
        /// Refuse a software adapter (lavapipe): for scripted runs on a GPU machine.
        #[arg(long)]
        hardware_only: bool,
        /// ε of the steps' problem (uniform particles on the unit torus).
        #[arg(long, default_value_t = 0.1)]
        epsilon: f64,
        /// The steps' cutoff: none, auto, or a tolerance δ in (0, 1) (cells wherever they save work).
        #[arg(long, default_value = "auto", value_parser = parse_cutoff)]
        cutoff: frflow::engine::cells::Cutoff,
        /// Kernel-sum paths timed alone on the GPU: all, none, or names separated by commas (euclidean-f32, euclidean-fixed, torus-f32, torus-fixed, torus-images, torus-images-far, torus-images-sfu).
        #[arg(long, default_value = "all")]
        kernel_paths: String,
        /// Also write the report as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Propagation-of-chaos sweep over N: interacting vs reference system (examples/chaos_t2.toml).
    Chaos {
        /// The sweep file: a [problem] table (or problem_file) and a [sweep] table.
        config: PathBuf,
        /// Output directory (created if missing); a rerun skips the finished runs recorded there.
        #[arg(long, short, default_value = "chaos-out")]
        out: PathBuf,
        /// Also write DIR/report.html (tables, fitted rates, plots as inline SVG).
        #[arg(long)]
        report: bool,
    },
    /// Bandwidth sweep over ε (and N): stationary states vs the unkernelized minimiser
    /// (examples/bandwidth_t2.toml).
    Bandwidth {
        /// The sweep file: a [problem] table (or problem_file) and a [sweep] table.
        config: PathBuf,
        /// Output directory (created if missing); a rerun skips the finished runs recorded there.
        #[arg(long, short, default_value = "bandwidth-out")]
        out: PathBuf,
        /// Also write DIR/report.html (tables, fitted orders, plots as inline SVG).
        #[arg(long)]
        report: bool,
    },
}

/// A flag raised by the first Ctrl-C (SIGINT) or SIGTERM; a second one exits at once.
fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    let _ = ctrlc::set_handler(move || {
        if f.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nfrflow: interrupted; finishing the step and writing a checkpoint (Ctrl-C again to abort)");
    });
    flag
}

fn report(summary: &Summary, out: &Path) -> ExitCode {
    let d = &summary.diagnostics;
    println!("engine        {}", summary.engine);
    println!("stopped       {:?} after {} steps (t = {:.6})", summary.termination, d.step, d.time);
    if let Some(e) = d.energy {
        println!("energy V      {e:.10}");
    }
    println!("F(μᴺ)         {:.10}", d.f_energy);
    println!("mass          {:.15}", d.mass);
    println!("ESS           {:.1}", d.ess);
    println!("max |a_i|     {:.3e}", d.max_abs_rate);
    println!("wall time     {:.2} s ({} steps this run)", summary.wall_seconds, summary.steps_this_run);
    println!("outputs in    {}", out.display());
    if summary.termination == Termination::Interrupted {
        println!("resume with   frflow run --resume {}", out.display());
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    }
}

fn parse_variant(s: &str) -> Result<frflow::model::Variant, String> {
    frflow::model::Variant::ALL
        .into_iter()
        .find(|v| v.name().eq_ignore_ascii_case(s))
        .ok_or_else(|| format!("`{s}`: allowed A, B, C, D, D', exact"))
}

/// `--cutoff`: none, auto, or a tolerance.
fn parse_cutoff(s: &str) -> Result<frflow::engine::cells::Cutoff, String> {
    use frflow::engine::cells::Cutoff;
    let c = match s {
        "none" => Cutoff::None,
        "auto" => Cutoff::Auto,
        _ => Cutoff::Tolerance {
            tolerance: s.parse().map_err(|_| format!("`{s}`: allowed none, auto, or a tolerance in (0, 1)"))?,
            max_error: Cutoff::DEFAULT_MAX_ERROR,
        },
    };
    c.validate("--cutoff").map_err(|e| e.to_string())?;
    Ok(c)
}

/// Checks every number of `frflow bench` the way the config checks its keys, naming the flag:
/// sizes within the config's limits (so nothing huge is allocated), at least one repeat, and
/// finite positive times and ceilings.
fn check_bench_args(
    n: &[usize],
    d: usize,
    m: usize,
    repeats: usize,
    min_batch_seconds: f64,
    ceiling: Option<f64>,
) -> frflow::Result<()> {
    use frflow::Error;
    let max_n = frflow::config::MAX_PARTICLES;
    if let Some(bad) = n.iter().find(|v| !(1..=max_n).contains(*v)) {
        return Err(Error::invalid("--n", bad, format!("particle counts from 1 to {max_n} (as particles.n)")));
    }
    if n.is_empty() {
        return Err(Error::invalid("--n", "nothing", "one or more particle counts"));
    }
    let max_d = frflow::model::MAX_DIM;
    if !(1..=max_d).contains(&d) {
        return Err(Error::invalid("--d", d, format!("an integer from 1 to {max_d} (as domain.dim)")));
    }
    let max_m = frflow::io::data::MAX_GENERATED_ROWS;
    if !(1..=max_m).contains(&m) {
        return Err(Error::invalid("--m", m, format!("an integer from 1 to {max_m} (as a data set's m)")));
    }
    if !(1..=1000).contains(&repeats) {
        return Err(Error::invalid("--repeats", repeats, "an integer from 1 to 1000"));
    }
    if !(min_batch_seconds.is_finite() && min_batch_seconds > 0.0 && min_batch_seconds <= 3600.0) {
        return Err(Error::invalid("--min-batch-seconds", min_batch_seconds, "a number of seconds > 0 and ≤ 3600"));
    }
    if let Some(c) = ceiling
        && !(c.is_finite() && c > 0.0)
    {
        return Err(Error::invalid("--ceiling", c, "a finite number of pair evaluations per second > 0"));
    }
    Ok(())
}

/// Runs the benchmark, prints its table and writes the JSON report.
fn bench(options: &BenchOptions, json: Option<&Path>) -> frflow::Result<()> {
    let report = run_bench(options)?;
    print!("{}", report.table());
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&report).expect("plain data");
        std::fs::write(path, text).map_err(|e| frflow::Error::io(path, e))?;
    }
    Ok(())
}

/// Prints the version and every GPU adapter with the limits that bound N.
fn info() {
    println!("frflow {}", env!("CARGO_PKG_VERSION"));
    let adapters = frflow::engine::gpu::context::list_adapters();
    if adapters.is_empty() {
        println!("no GPU adapters found (the CPU engine is available; on Linux, install a Vulkan driver)");
    }
    for a in adapters {
        println!("[{}] {} ({}, {}, driver {})", a.index, a.name, a.backend, a.device_type, a.driver);
        println!(
            "    max storage binding {} MiB, max buffer {} MiB, workgroup storage {} KiB, \
             invocations/workgroup {}, workgroups/dimension {}",
            a.max_storage_buffer_binding_size >> 20,
            a.max_buffer_size >> 20,
            a.max_compute_workgroup_storage_size >> 10,
            a.max_compute_invocations_per_workgroup,
            a.max_compute_workgroups_per_dimension
        );
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config, out, resume: resume_dir, force, engine, device } => {
            let request =
                RunRequest { engine, device, interrupt: Some(interrupt_flag()), observers: Vec::new(), force };
            match (resume_dir, config) {
                (Some(dir), _) => resume(&dir, request).map(|s| (s, dir)),
                (None, Some(path)) => run_file(&path, &out, request).map(|s| (s, out)),
                (None, None) => unreachable!("clap requires a config unless --resume is given"),
            }
        }
        Command::Demo { out, engine, device, print_config, force } => {
            if print_config {
                print!("{DEMO}");
                return ExitCode::SUCCESS;
            }
            let request =
                RunRequest { engine, device, interrupt: Some(interrupt_flag()), observers: Vec::new(), force };
            run_config(DEMO, Path::new("."), &out, request).map(|s| (s, out))
        }
        Command::Info => {
            info();
            return ExitCode::SUCCESS;
        }
        Command::Bench {
            n,
            d,
            variant,
            energy,
            m,
            engine,
            device,
            repeats,
            min_batch_seconds,
            checked,
            workgroup_size,
            image_exponentials,
            ceiling,
            sinkhorn,
            hardware_only,
            epsilon,
            cutoff,
            kernel_paths,
            json,
        } => {
            if let Err(e) = check_bench_args(&n, d, m, repeats, min_batch_seconds, ceiling).and_then(|()| {
                if epsilon.is_finite() && epsilon > 0.0 && epsilon <= 1.0 {
                    Ok(())
                } else {
                    Err(frflow::Error::invalid("--epsilon", epsilon, "a number in (0, 1] (the torus has side 1)"))
                }
            }) {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
            let device = match engine {
                EngineChoice::Cpu => None,
                _ => Some(device.unwrap_or_default()),
            };
            let kernel_paths = match frflow::bench::parse_kernel_paths(&kernel_paths) {
                Ok(paths) => paths,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let options = BenchOptions {
                n,
                dim: d,
                variants: variant,
                energy,
                m,
                repeats,
                min_batch_seconds,
                device,
                checked,
                workgroup_size,
                image_exponentials,
                ceiling,
                sinkhorn,
                hardware_only,
                epsilon,
                cutoff,
                kernel_paths,
            };
            return match bench(&options, json.as_deref()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Chaos { config, out, report } => {
            return match frflow::experiments::chaos_command(&config, &out, report) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Bandwidth { config, out, report } => {
            return match frflow::experiments::bandwidth_command(&config, &out, report) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    match result {
        Ok((summary, out)) => report(&summary, &out),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
