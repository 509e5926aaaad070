//! Experiments on the particle systems' limits, as resumable sweeps with tables, fits, plots and
//! an HTML report (`frflow chaos`, `frflow bandwidth`).
//!
//! - [`chaos`]: propagation of chaos (N → ∞, SPEC §4): the interacting system against the
//!   non-interacting reference system of [`mod@reference`].
//! - [`bandwidth`]: the ε → 0 limit (SPEC §7 T4): stationary states against the unkernelized
//!   minimiser μ* ∝ π e^{−U/σ}.
//!
//! Every finished run is appended to `results.jsonl` in the output directory, so an interrupted
//! sweep resumes where it stopped and a finished one is not recomputed ([`sweep::ResultsStore`]).

pub mod bandwidth;
pub mod chaos;
pub mod figures;
pub mod reference;
pub mod report;
pub mod stats;
pub mod sweep;

pub use bandwidth::{BandwidthOutcome, BandwidthSpec, run_bandwidth};
pub use chaos::{ChaosOutcome, ChaosSpec, SweepOptions, run_chaos};

use crate::error::Result;
use std::path::Path;
use std::time::Instant;

/// Runs a sweep into `out`; when it fails before its first result and created `out`, removes
/// `out` again rather than leave a directory that holds nothing but the sweep file.
fn unless_empty<T>(out: &Path, sweep: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    let created = !out.exists();
    let result = sweep(out);
    let results = out.join("results.jsonl");
    if result.is_err() && created && std::fs::metadata(&results).map_or(true, |m| m.len() == 0) {
        let _ = std::fs::remove_dir_all(out);
    }
    result
}

/// `frflow chaos CONFIG [--out DIR] [--report]`: runs (or resumes) the sweep with progress bars
/// and prints the table of means and the fitted slopes.
pub fn chaos_command(config: &Path, out: &Path, report: bool) -> Result<()> {
    let start = Instant::now();
    let spec = ChaosSpec::load(config)?;
    let options = SweepOptions { out: out.to_path_buf(), report, progress: true };
    let outcome = unless_empty(out, |_| run_chaos(&spec, &options))?;
    let s = &outcome.summary;
    println!("{:>8} {:>8} {:>5}  {:>22}  {:>22}", "variant", "N", "reps", "coupling (mean ± se)", "W2 (mean ± se)");
    for c in &s.cells {
        println!(
            "{:>8} {:>8} {:>5}  {:>11.4e} ± {:<8.2e}  {:>11.4e} ± {:<8.2e}",
            c.variant, c.n, c.coupling.count, c.coupling.mean, c.coupling.se, c.w2.mean, c.w2.se
        );
    }
    let fit = |f: &Option<stats::PowerFit>| f.as_ref().map_or_else(|| "–".into(), stats::PowerFit::describe);
    for ((f, r), t) in s.fits.iter().zip(&s.reference).zip(&s.w2_target) {
        println!(
            "variant {}: coupling slope {}, W2 slope {} (95% t intervals; reference {r}, W2 against {t})",
            f.variant,
            fit(&f.coupling),
            fit(&f.w2)
        );
    }
    println!(
        "{} runs computed, {} reused; {:.1} s; outputs in {}",
        outcome.computed,
        outcome.reused,
        start.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}

/// `frflow bandwidth CONFIG [--out DIR] [--report]`: runs (or resumes) the sweep with progress
/// bars and prints the table of errors and the fitted orders in ε.
pub fn bandwidth_command(config: &Path, out: &Path, report: bool) -> Result<()> {
    let start = Instant::now();
    let spec = BandwidthSpec::load(config)?;
    let options = SweepOptions { out: out.to_path_buf(), report, progress: true };
    let outcome = unless_empty(out, |_| run_bandwidth(&spec, &options))?;
    print!("{}", bandwidth::summary_text(&outcome.summary));
    println!(
        "{} runs computed, {} reused; {:.1} s; outputs in {}",
        outcome.computed,
        outcome.reused,
        start.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}
