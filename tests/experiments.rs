//! The chaos and bandwidth sweeps (`frflow chaos`, `frflow bandwidth`) on SPEC §7 T2, the reference
//! systems of SPEC §4, resumability, and the sweep files' errors.

use frflow::Error;
use frflow::config::Config;
use frflow::engine::Engine;
use frflow::engine::cells::Cutoff;
use frflow::engine::cpu::CpuEngine;
use frflow::experiments::bandwidth::Minimiser;
use frflow::experiments::reference::{GaussianCase, ReferenceSystem, run_coupled};
use frflow::experiments::{BandwidthSpec, ChaosSpec, SweepOptions, run_bandwidth, run_chaos};
use std::path::{Path, PathBuf};

/// A fresh output directory under Cargo's per-test scratch space.
fn out_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("experiments-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn options(out: &Path, report: bool) -> SweepOptions {
    SweepOptions { out: out.to_path_buf(), report, progress: false }
}

/// SPEC §7 T2 as a `[problem]` table: σ = 1, ε = 0.5, π = N(0, 1), μ₀ = N(0.8, 1.5²), variant B,
/// F = λ/2 |x − 1.5|², T = 2, Euler with h = 0.05.
fn t2_problem(lambda: f64) -> String {
    format!(
        r#"
[problem]
seed = 1
engine = "cpu"
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
[[problem.energy]]
kind = "potential"
potential = "quadratic"
strength = {lambda:?}
center = 1.5
[problem.particles]
n = 64
init = {{ kind = "gaussian", mean = 0.8, std = 1.5 }}
[problem.time]
scheme = "euler"
h = 0.05
final_time = 2.0
"#
    )
}

/// The headline check of SPEC §4: on T2 (variant B, d = 1, T = 2) the coupled weight distance
/// (1/N) Σ |W_i − W̄_i| to the exact reference system falls like N^{−1/2}, and W₂(μᴺ_T, μ_T) to
/// the exact Gaussian μ_T decreases with N.
#[test]
fn chaos_t2_weight_coupling_falls_like_inverse_square_root_of_n() {
    let text = t2_problem(0.0)
        + r#"
[sweep]
n = [64, 128, 256, 512, 1024, 2048, 4096]
replicates = 16
reference = "closed-form"
seed = 100
"#;
    let spec = ChaosSpec::from_str(&text, "t2-chaos", Path::new(".")).unwrap();
    let out = out_dir("chaos-t2");
    let o = run_chaos(&spec, &options(&out, true)).unwrap();
    assert_eq!((o.computed, o.reused), (7 * 16, 0));
    assert!(o.runs.iter().all(|r| r.reference == "closed-form" && r.w2_target == "gaussian"));
    assert!(o.runs.iter().all(|r| (r.time - 2.0).abs() < 1e-12 && r.steps == 40), "T = 2 in 40 steps of 0.05");
    let fit = o.summary.fits[0].coupling.expect("seven N values");
    println!("coupling slope {} ; W2 slope {}", fit.describe(), o.summary.fits[0].w2.unwrap().describe());
    for c in &o.summary.cells {
        println!(
            "N = {:5}: coupling {:.4e} ± {:.1e}, W2 {:.4e} ± {:.1e}",
            c.n, c.coupling.mean, c.coupling.se, c.w2.mean, c.w2.se
        );
    }
    assert!((-0.6..=-0.4).contains(&fit.slope), "coupling slope {}", fit.describe());
    let w2: Vec<f64> = o.summary.cells.iter().map(|c| c.w2.mean).collect();
    assert!(w2.windows(2).all(|p| p[1] < p[0]), "W2 must decrease with N: {w2:?}");
    let w2_fit = o.summary.fits[0].w2.unwrap();
    assert!(w2_fit.ci_high < 0.0, "W2 slope {}", w2_fit.describe());
    // The outputs a README links to.
    for f in frflow::experiments::chaos::CHAOS_FILES.iter().chain(&["report.html", "sweep.toml"]) {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let report = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(report.contains("<svg") && report.contains("coupling slope") && report.contains(&fit.describe()));
}

/// SPEC §7 T4 on T2 with λ > 0: the stationary variance of variant A is biased by −ε² in the
/// mean-field limit (GaussianFlow::stationary: 1/C − ε² against the Gibbs variance 1/C), and the
/// particle system at large N shows that bias with fitted order ≈ 2.
#[test]
fn bandwidth_t2_variant_a_variance_error_is_order_epsilon_squared() {
    let text = t2_problem(2.0).replace("variant = \"B\"", "variant = \"A\"").replace(
        "scheme = \"euler\"\nh = 0.05\nfinal_time = 2.0",
        "scheme = \"exponential\"\nh = 0.2\nfinal_time = 40.0",
    ) + r#"
[sweep]
epsilon = [0.1, 0.141, 0.2, 0.283, 0.4]
n = [2048]
replicates = 2
seed = 7
"#;
    let spec = BandwidthSpec::from_str(&text, "t2-bandwidth", Path::new(".")).unwrap();
    let out = out_dir("bandwidth-t2");
    let o = run_bandwidth(&spec, &options(&out, true)).unwrap();
    let s = &o.summary;
    // μ* = N(1, 1/3): precision 1/τ² + λ/σ = 3, mean (λb/σ)/3 = 1.
    assert!((s.target_mean[0] - 1.0).abs() < 1e-14 && (s.target_variance[0] - 1.0 / 3.0).abs() < 1e-14);
    let fit = s.fits[0].var_error.expect("five ε values");
    println!("variance-error order {}", fit.describe());
    assert!((1.7..=2.3).contains(&fit.slope), "order {}", fit.describe());
    // Each cell against the mean-field stationary variance of A at that ε.
    for c in &s.cells {
        let mut config = spec.base.config.clone();
        config.kernel.epsilon = c.epsilon;
        let g = GaussianCase::detect(&config.build(Path::new(".")).unwrap()).unwrap();
        let (_, v_eps) = g.stationary().unwrap();
        let expected = v_eps - 1.0 / 3.0;
        println!(
            "ε = {:.3}: variance error {:.5e} ± {:.1e}, mean field {expected:.5e}",
            c.epsilon, c.var_error.mean, c.var_error.se
        );
        assert!(
            (c.var_error.mean - expected).abs() < 0.05 * expected.abs(),
            "ε = {}: {:?} vs {expected}",
            c.epsilon,
            c.var_error
        );
    }
    assert!(out.join("bandwidth_variance.svg").is_file() && out.join("report.html").is_file());
}

/// `examples/bandwidth_t2_small_eps.toml` (the ε → 0 sweep with cutoff kernels) at reduced sizes:
/// it parses, its runs use cells (the explicit tolerance), and the stationary variance error of
/// variant A follows the mean-field −ε² within 10% (N ε ≥ 100 here, so the self-interaction is
/// small; the full example does the same at N = 65536 and ε down to 0.003).
#[test]
fn the_small_epsilon_bandwidth_example_runs_with_cutoff_kernels() {
    let mut text = std::fs::read_to_string("examples/bandwidth_t2_small_eps.toml").unwrap();
    for (from, to) in
        [("n = [65536]", "n = [1024]"), ("epsilon = [0.003, 0.006, 0.0125]", "epsilon = [0.1, 0.14, 0.2]")]
    {
        assert_eq!(text.matches(from).count(), 1, "`{from}` in the example");
        text = text.replace(from, to);
    }
    let spec = BandwidthSpec::from_str(&text, "small-eps", Path::new(".")).unwrap();
    assert!(matches!(spec.base.config.clone().build(Path::new(".")).unwrap().model.cutoff, Cutoff::Tolerance { .. }));
    let out = out_dir("bandwidth-small-eps");
    let o = run_bandwidth(&spec, &options(&out, false)).unwrap();
    for c in &o.summary.cells {
        let expected = -c.epsilon * c.epsilon;
        println!("ε = {}: variance error {:.4e}, mean field {expected:.4e}", c.epsilon, c.var_error.mean);
        assert!((c.var_error.mean - expected).abs() < 0.1 * expected.abs(), "ε = {}: {:?}", c.epsilon, c.var_error);
    }
}

/// SPEC §4: a reference system driven by a large independent interacting system approaches the
/// exact one as N_ref grows. Both run on the same time grid (fixed h), so the gap between the
/// simulated w̄ and the closed-form rates stepped the same way is the large system's fluctuation
/// alone, O(N_ref^{−1/2}).
#[test]
fn simulated_reference_converges_to_the_closed_form_one() {
    let run_text = t2_problem(0.0).replace("[problem]\n", "").replace("[problem.", "[").replace("[[problem.", "[[");
    let config = Config::from_str(&run_text, "t2").unwrap();
    let mut small = config.clone();
    small.particles.n = 256;
    let problem = small.build(Path::new(".")).unwrap();
    let g = GaussianCase::detect(&problem).unwrap();
    let model = problem.model.clone();
    let new_engine = |p: &frflow::particles::Particles| -> frflow::Result<Box<dyn Engine>> {
        Ok(Box::new(CpuEngine::new(model.clone(), p.clone())?))
    };
    let coupled = |reference: &ReferenceSystem| {
        let mut engine = CpuEngine::new(problem.model.clone(), problem.particles.clone()).unwrap();
        run_coupled(&mut engine, reference, &problem, 2.0, new_engine, &mut |_| {}).unwrap()
    };
    let weights = |lw: &[f64]| -> Vec<f64> { lw.iter().map(|l| l.exp()).collect() };
    let stepped = weights(&coupled(&ReferenceSystem::Stepped(g)).reference_log_weights);
    let exact = weights(&coupled(&ReferenceSystem::Gaussian(g)).reference_log_weights);
    let l1 = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f64>();
    // Stepping error of the closed-form rates with h = 0.05: small next to everything below.
    let stepping = l1(&stepped, &exact);
    const REPS: u64 = 8;
    let mut gaps = Vec::new();
    for n_ref in [128, 512, 2048] {
        let mut gap = 0.0;
        for rep in 0..REPS {
            let mut big = config.clone();
            big.seed = 5000 + rep;
            big.particles.n = n_ref;
            let big = big.build(Path::new(".")).unwrap().particles;
            let sim = coupled(&ReferenceSystem::Simulated(big));
            assert_eq!(sim.steps, 40);
            gap += l1(&weights(&sim.reference_log_weights), &stepped) / REPS as f64;
        }
        println!("N_ref = {n_ref}: Σ|w̄_sim − w̄_closed-form| = {gap:.4e} (stepping error {stepping:.1e})");
        gaps.push(gap);
    }
    assert!(stepping < 0.5 * gaps[2], "stepping {stepping} vs {gaps:?}");
    assert!(gaps[1] < 0.75 * gaps[0] && gaps[2] < 0.75 * gaps[1], "{gaps:?}");
    // Sixteen times more particles: about a quarter of the gap.
    assert!(gaps[2] < 0.4 * gaps[0], "{gaps:?}");
}

/// A finished sweep is not recomputed; an extended one computes only the new runs; a torn last
/// line (an interrupted append) is rerun; a changed problem invalidates the old results.
#[test]
fn sweeps_resume_and_recompute_nothing_that_is_finished() {
    let text = |ns: &str, sigma: &str| {
        t2_problem(0.0).replace("sigma = 1.0", sigma)
            + &format!("[sweep]\nn = {ns}\nreplicates = 3\nvariants = [\"A\", \"B\"]\nseed = 3\n")
    };
    let out = out_dir("resume");
    let lines = || std::fs::read_to_string(out.join("results.jsonl")).unwrap().lines().count();
    let first = run_chaos(
        &ChaosSpec::from_str(&text("[32, 64]", "sigma = 1.0"), "a", Path::new(".")).unwrap(),
        &options(&out, true),
    )
    .unwrap();
    assert_eq!((first.computed, first.reused, lines()), (12, 0, 12));
    let again = run_chaos(
        &ChaosSpec::from_str(&text("[32, 64]", "sigma = 1.0"), "a", Path::new(".")).unwrap(),
        &options(&out, false),
    )
    .unwrap();
    assert_eq!((again.computed, again.reused, lines()), (0, 12, 12));
    assert_eq!(again.runs, first.runs);
    assert_eq!(serde_json::to_string(&again.summary).unwrap(), serde_json::to_string(&first.summary).unwrap());
    // A torn line, as a crash in the middle of an append leaves it, and one more N.
    let mut f = std::fs::OpenOptions::new().append(true).open(out.join("results.jsonl")).unwrap();
    std::io::Write::write_all(&mut f, b"{\"fingerprint\":\"").unwrap();
    let more = run_chaos(
        &ChaosSpec::from_str(&text("[32, 64, 16]", "sigma = 1.0"), "a", Path::new(".")).unwrap(),
        &options(&out, false),
    )
    .unwrap();
    assert_eq!((more.computed, more.reused), (6, 12));
    assert!(more.runs.iter().all(|r| r.n != 16 || r.coupling.is_finite()));
    // A different σ is a different problem: nothing is reused.
    let other = run_chaos(
        &ChaosSpec::from_str(&text("[32]", "sigma = 0.5"), "b", Path::new(".")).unwrap(),
        &options(&out, false),
    )
    .unwrap();
    assert_eq!((other.computed, other.reused), (6, 0));

    // The same for a bandwidth sweep.
    let bw = t2_problem(2.0).replace("\"euler\"", "\"exponential\"")
        + "[sweep]\nepsilon = [0.3, 0.2, 0.4]\nn = [32, 64]\nreplicates = 1\nvariants = [\"A\", \"B\"]\n";
    let out = out_dir("resume-bandwidth");
    let spec = BandwidthSpec::from_str(&bw, "bw", Path::new(".")).unwrap();
    let a = run_bandwidth(&spec, &options(&out, true)).unwrap();
    let b = run_bandwidth(&spec, &options(&out, true)).unwrap();
    assert_eq!((a.computed, a.reused, b.computed, b.reused), (12, 0, 0, 12));
    assert_eq!(a.runs, b.runs);
    for f in ["bandwidth_runs.csv", "bandwidth_summary.csv", "bandwidth.json", "bandwidth_heatmap_A.svg", "report.html"]
    {
        assert!(out.join(f).is_file(), "{f} missing");
    }
}

/// Where μ_t has no closed form the reference system is simulated, and W₂ in d = 2 is measured
/// against the large system's cloud (exact OT at these sizes). The problem comes from a file.
#[test]
fn chaos_on_the_torus_in_two_dimensions_uses_a_simulated_reference() {
    let dir = out_dir("torus-problem");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("run.toml"),
        r#"
engine = "cpu"
sigma = 0.5
[domain]
kind = "torus"
dim = 2
[reference]
kind = "gibbs"
potential = { kind = "cosine", amplitude = 1.0 }
[kernel]
epsilon = 0.1
variant = "A"
[[energy]]
kind = "interaction"
strength = 0.3
width = 0.2
[particles]
n = 10
[time]
h = 0.05
final_time = 0.5
"#,
    )
    .unwrap();
    let text = "problem_file = \"run.toml\"\n[sweep]\nn = [32, 64]\nreplicates = 2\nn_ref = 400\n";
    std::fs::write(dir.join("sweep.toml"), text).unwrap();
    let spec = ChaosSpec::load(&dir.join("sweep.toml")).unwrap();
    let out = out_dir("torus");
    let o = run_chaos(&spec, &options(&out, true)).unwrap();
    assert!(o.runs.iter().all(|r| r.reference == "simulated" && r.w2_target == "big-system"));
    assert!(o.runs.iter().all(|r| r.coupling > 0.0 && r.coupling < 2.0 && r.w2 > 0.0 && r.w2 < 0.75));
    // The exact oracle has no rates away from its particles: it cannot drive a simulated system.
    let oracle = text.replace("n_ref = 400", "reference = \"simulated\"\nvariants = [\"exact\"]");
    std::fs::write(dir.join("sweep.toml"), oracle).unwrap();
    let err = run_chaos(&ChaosSpec::load(&dir.join("sweep.toml")).unwrap(), &options(&out_dir("torus-exact"), false));
    assert!(matches!(err, Err(Error::Invalid { ref field, .. }) if field == "sweep.reference"), "{err:?}");
}

/// Sweep files reject unknown keys, missing final times, bad bandwidths and problems without a
/// known minimiser, naming the key.
#[test]
fn sweep_files_are_checked() {
    let dir = Path::new(".");
    let base = t2_problem(0.0);
    let err = ChaosSpec::from_str(&(base.clone() + "[sweep]\nn = [8]\nreplicate = 3\n"), "x", dir).unwrap_err();
    assert!(matches!(&err, Error::Config { message, .. } if message.contains("replicate")), "{err}");
    let err = ChaosSpec::from_str(&(base.replace("final_time = 2.0", "steps = 10") + "[sweep]\nn = [8]\n"), "x", dir)
        .unwrap_err();
    assert!(matches!(&err, Error::Invalid { field, .. } if field == "sweep.final_time"), "{err}");
    let err = ChaosSpec::from_str(&(base.clone() + "[sweep]\nn = [8, 0]\n"), "x", dir).unwrap_err();
    assert!(matches!(&err, Error::Invalid { field, .. } if field == "sweep.n"), "{err}");
    let err = ChaosSpec::from_str(&(format!("problem_file = \"p.toml\"\n{base}") + "[sweep]\nn = [8]\n"), "x", dir)
        .unwrap_err();
    assert!(matches!(&err, Error::Invalid { field, .. } if field == "problem_file"), "{err}");
    let err = ChaosSpec::from_str("[sweep]\nn = [8]\n", "x", dir).unwrap_err();
    assert!(matches!(&err, Error::Invalid { field, .. } if field == "problem"), "{err}");
    let err = ChaosSpec::from_str(&(base.clone() + "[sweep]\nn = [8]\nfinal_time = nan\n"), "x", dir).unwrap_err();
    assert!(matches!(&err, Error::Invalid { field, .. } if field == "sweep.final_time"), "{err}");
    let err = BandwidthSpec::from_str(&(base.clone() + "[sweep]\nepsilon = [0.1, -0.2]\n"), "x", dir).unwrap_err();
    assert!(matches!(&err, Error::Invalid { field, .. } if field == "sweep.epsilon"), "{err}");
    let interacting = base.replace(
        "kind = \"potential\"\npotential = \"quadratic\"\nstrength = 0.0\ncenter = 1.5",
        "kind = \"interaction\"\nstrength = 1.0\nwidth = 0.5",
    );
    assert_ne!(interacting, base);
    let err = BandwidthSpec::from_str(&(interacting + "[sweep]\nepsilon = [0.1]\n"), "x", dir).unwrap_err();
    assert!(matches!(&err, Error::Invalid { field, .. } if field == "problem"), "{err}");
}

/// The tabulated minimiser (any potential in d = 1) agrees with the closed form where both apply:
/// a Gibbs π with a quadratic potential is the Gaussian N(0, 1).
#[test]
fn tabulated_minimiser_matches_the_gaussian_one() {
    let run = |reference: &str| {
        let text = format!(
            "sigma = 1.0\n[domain]\nkind = \"euclidean\"\ndim = 1\n[reference]\n{reference}\n[kernel]\nepsilon = 0.1\n\
             variant = \"A\"\n[[energy]]\nkind = \"potential\"\npotential = \"quadratic\"\nstrength = 2.0\ncenter = 1.5\n\
             [particles]\nn = 400\ninit = {{ kind = \"gaussian\", mean = 0.8, std = 1.5 }}\n[time]\nsteps = 1\n"
        );
        let problem = Config::from_str(&text, "m").unwrap().build(Path::new(".")).unwrap();
        let m = Minimiser::of(&problem.model).unwrap();
        let w = vec![1.0; 400];
        (m.moments(1), m.w2(1, &problem.particles.positions, &w).unwrap().unwrap(), m)
    };
    let (gauss, w2_gauss, m) = run("kind = \"gaussian\"\nmean = 0.0\nstd = 1.0");
    assert!(matches!(m, Minimiser::Gaussian { .. }));
    let (grid, w2_grid, m) = run("kind = \"gibbs\"\npotential = { kind = \"quadratic\", strength = 1.0 }");
    assert!(matches!(m, Minimiser::Grid { .. }));
    assert!((gauss.0[0] - 1.0).abs() < 1e-14 && (gauss.1[0] - 1.0 / 3.0).abs() < 1e-14);
    assert!((grid.0[0] - 1.0).abs() < 1e-9 && (grid.1[0] - 1.0 / 3.0).abs() < 1e-7, "{grid:?}");
    assert!((w2_gauss - w2_grid).abs() < 1e-4, "{w2_gauss} vs {w2_grid}");
}

/// The non-white pixels of a PNG's rows `rows` (decoded RGB or RGBA, 8 bits).
fn ink_in_rows(png: &Path, rows: std::ops::Range<usize>) -> usize {
    let decoder = png::Decoder::new(std::fs::File::open(png).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let channels = info.color_type.samples();
    assert!(channels >= 3, "{:?}", info.color_type);
    rows.flat_map(|y| buf[y * info.line_size..(y + 1) * info.line_size].chunks_exact(channels))
        .filter(|px| px[..3] != [255, 255, 255])
        .count()
}

/// The SVG's `<rect>` elements that lie entirely in rows `rows`.
fn rects_in_rows(svg: &str, rows: std::ops::Range<f64>) -> usize {
    let attr = |el: &str, name: &str| -> Option<f64> {
        let start = el.find(&format!(" {name}=\""))? + name.len() + 3;
        el[start..].split('"').next()?.parse().ok()
    };
    svg.split("<rect")
        .skip(1)
        .filter_map(|el| Some((attr(el, "y")?, attr(el, "height")?)))
        .filter(|(y, h)| rows.contains(y) && rows.contains(&(y + h - 1.0)))
        .count()
}

#[test]
fn sweep_figures_carry_their_labels_in_the_png_and_the_svg() {
    use frflow::experiments::figures::{Heatmap, LogLogPlot, Series, heatmap, loglog};
    let out = out_dir("figure-labels");
    std::fs::create_dir_all(&out).unwrap();
    let plot = |title: &str| LogLogPlot {
        title: title.into(),
        x_label: "N (particles)".into(),
        y_label: "W₂ (mean ± s.e.)".into(),
        series: vec![Series {
            label: "A: slope -0.5".into(),
            points: vec![(64.0, 0.1, 0.01), (256.0, 0.05, 0.004), (1024.0, 0.025, 0.002)],
            fit: Some((-0.5, (0.1f64 * 8.0).ln())),
        }],
        guide: Some((-0.5, "N^(-1/2)".into())),
        x_ticks: vec![64.0, 256.0, 1024.0],
    };
    // The band above the plot frame (top at y = 56) holds the title and nothing else.
    let band = 0..50;
    let (png, svg) = (out.join("titled.png"), out.join("titled.svg"));
    let text = loglog(&plot("W₂(μᴺ_T, μ_T) against N"), &png, &svg).unwrap();
    assert_eq!(std::fs::read_to_string(&svg).unwrap(), text, "the SVG written is the SVG returned");
    assert!(!text.contains("<text"), "one text policy: no SVG-only text");
    let (png_ink, svg_rects) = (ink_in_rows(&png, band.clone()), rects_in_rows(&text, 0.0..50.0));
    assert!(png_ink > 200, "the PNG's title band is blank ({png_ink} pixels)");
    assert!(svg_rects > 20, "the SVG's title band is blank ({svg_rects} rectangles)");
    // Without a title the band is blank in both: the pixels above came from the title.
    let (png0, svg0) = (out.join("untitled.png"), out.join("untitled.svg"));
    let text0 = loglog(&plot(""), &png0, &svg0).unwrap();
    assert_eq!(ink_in_rows(&png0, band.clone()), 0);
    assert_eq!(rects_in_rows(&text0, 0.0..50.0), 0);
    // Axis and tick labels: the rows below the frame (bottom at y = 536) are inked in the PNG.
    assert!(ink_in_rows(&png0, 545..600) > 200);
    // No temporary files are left behind.
    let mut names: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["titled.png", "titled.svg", "untitled.png", "untitled.svg"]);

    // The heat map: title band and the cells' values.
    let map = Heatmap {
        title: "Variant A: W₂(μᴺ, μ*) over (N, ε)".into(),
        x_label: "N (particles)".into(),
        y_label: "ε (kernel bandwidth)".into(),
        value_label: "W₂ (log colour scale)".into(),
        xs: vec![64.0, 256.0],
        ys: vec![0.1, 0.2],
        values: vec![vec![Some(0.1), Some(0.05)], vec![Some(0.2), None]],
        contours: vec![(10.0, "N ε^d = 10".into())],
        dim: 1,
    };
    let (png, svg) = (out.join("map.png"), out.join("map.svg"));
    let text = heatmap(&map, &png, &svg).unwrap();
    assert!(svg.is_file() && !text.contains("<text"));
    assert!(ink_in_rows(&png, band) > 200 && rects_in_rows(&text, 0.0..50.0) > 20);
}
