//! Every invalid config value is reported as `Error::Invalid` naming the dotted key and the value;
//! unknown keys and type errors as `Error::Config` with toml's message; the examples build.

use frflow::Error;
use frflow::config::{Config, EngineChoice, Problem};
use frflow::energy::Npmle;
use frflow::model::{Energy, Reference, Variant};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A valid config on the 2-D torus that every test edits in one place.
const BASE: &str = r#"
seed = 5
engine = "cpu"
sigma = 0.5
divergence = "kl"

[domain]
kind = "torus"
dim = 2
side = 1.0

[reference]
kind = "uniform"

[kernel]
epsilon = 0.1
variant = "C"

[[energy]]
kind = "potential"
potential = "quadratic"
strength = 1.0
center = [0.5, 0.5]

[particles]
n = 32
init = { kind = "uniform" }

[time]
scheme = "euler"
h = 0.01
steps = 20

[output]
every = 5
"#;

/// A valid config on R^1 with a Gaussian reference.
const GAUSS: &str = r#"
sigma = 1.0
[domain]
kind = "euclidean"
dim = 1
[reference]
kind = "gaussian"
mean = 0.0
std = 1.0
[kernel]
epsilon = 0.5
variant = "B"
[particles]
n = 16
init = { kind = "gaussian", mean = 0.8, std = 1.5 }
[time]
h = 0.05
final_time = 1.0
"#;

fn edit(base: &str, from: &str, to: &str) -> String {
    assert!(base.contains(from), "the base config lacks {from:?}");
    base.replacen(from, to, 1)
}

fn build_in(text: &str, dir: &Path) -> frflow::Result<Problem> {
    Config::from_str(text, "test.toml")?.build(dir)
}

fn build(text: &str) -> frflow::Result<Problem> {
    build_in(text, Path::new("."))
}

/// Asserts an `Error::Invalid` for `field` whose message shows `value`; returns the message.
#[track_caller]
fn invalid(result: frflow::Result<Problem>, field: &str, value: &str) -> String {
    match result {
        Err(e @ Error::Invalid { .. }) => {
            let msg = e.to_string();
            let Error::Invalid { field: f, .. } = &e else { unreachable!() };
            assert_eq!(f, field, "wrong field in: {msg}");
            assert!(msg.to_lowercase().contains(&value.to_lowercase()), "message does not show {value:?}: {msg}");
            msg
        }
        Err(e) => panic!("expected Invalid for {field}, got {e:?}"),
        Ok(_) => panic!("expected Invalid for {field}, got Ok"),
    }
}

/// Asserts an `Error::Config` whose message mentions every one of `words`.
#[track_caller]
fn config_error(result: frflow::Result<Problem>, words: &[&str]) {
    match result {
        Err(Error::Config { path, message }) => {
            assert_eq!(path, "test.toml");
            for w in words {
                assert!(message.contains(w), "message lacks {w:?}: {message}");
            }
        }
        Err(e) => panic!("expected Error::Config, got {e:?}"),
        Ok(_) => panic!("expected Error::Config, got Ok"),
    }
}

fn temp_dir(name: &str) -> PathBuf {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let k = COUNT.fetch_add(1, Ordering::SeqCst);
    let d = std::env::temp_dir().join(format!("frflow-config-errors-{}-{k}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn base_configs_are_valid() {
    let p = build(BASE).unwrap();
    assert_eq!((p.particles.len(), p.engine, p.seed), (32, EngineChoice::Cpu, 5));
    let p = build(GAUSS).unwrap();
    assert_eq!(p.model.reference, Reference::Gaussian { mean: vec![0.0], std: 1.0 });
}

#[test]
fn epsilon_zero_or_negative_is_rejected() {
    invalid(build(&edit(BASE, "epsilon = 0.1", "epsilon = -0.25")), "kernel.epsilon", "-0.25");
    invalid(build(&edit(BASE, "epsilon = 0.1", "epsilon = 0.0")), "kernel.epsilon", "0");
}

#[test]
fn epsilon_wider_than_the_torus_is_rejected() {
    invalid(build(&edit(BASE, "epsilon = 0.1", "epsilon = 1.5")), "kernel.epsilon", "1.5");
}

#[test]
fn negative_sigma_is_rejected() {
    invalid(build(&edit(BASE, "sigma = 0.5", "sigma = -0.75")), "sigma", "-0.75");
}

#[test]
fn dimension_zero_is_rejected() {
    invalid(build(&edit(BASE, "dim = 2", "dim = 0")), "domain.dim", "0");
}

#[test]
fn dimension_above_eight_is_rejected() {
    invalid(build(&edit(BASE, "dim = 2", "dim = 9")), "domain.dim", "9");
}

#[test]
fn negative_dimension_is_rejected() {
    invalid(build(&edit(BASE, "dim = 2", "dim = -3")), "domain.dim", "-3");
}

#[test]
fn zero_particles_are_rejected() {
    invalid(build(&edit(BASE, "n = 32", "n = 0")), "particles.n", "0");
}

#[test]
fn absurd_particle_counts_are_rejected_before_allocating() {
    invalid(build(&edit(BASE, "n = 32", "n = 9223372036854775807")), "particles.n", "9223372036854775807");
    invalid(build(&edit(BASE, "n = 32", "n = -5")), "particles.n", "-5");
}

#[test]
fn zero_or_negative_step_is_rejected() {
    invalid(build(&edit(BASE, "h = 0.01", "h = -0.125")), "time.h", "-0.125");
    invalid(build(&edit(BASE, "h = 0.01", "h = 0")), "time.h", "0");
}

#[test]
fn nan_is_rejected_with_its_key() {
    invalid(build(&edit(BASE, "epsilon = 0.1", "epsilon = nan")), "kernel.epsilon", "nan");
}

#[test]
fn inf_is_rejected_with_its_key() {
    invalid(build(&edit(BASE, "sigma = 0.5", "sigma = inf")), "sigma", "inf");
    invalid(build(&edit(BASE, "h = 0.01", "h = -inf")), "time.h", "-inf");
}

#[test]
fn inf_inside_a_list_is_rejected_with_its_index() {
    invalid(build(&edit(BASE, "center = [0.5, 0.5]", "center = [0.5, inf]")), "energy[0].center[1]", "inf");
}

#[test]
fn nan_inside_an_inline_table_is_rejected_with_its_path() {
    let text = edit(GAUSS, "std = 1.5 }", "std = nan }");
    invalid(build(&text), "particles.init.std", "nan");
}

#[test]
fn center_list_of_the_wrong_length_is_rejected() {
    invalid(build(&edit(BASE, "center = [0.5, 0.5]", "center = [0.5, 0.5, 0.5]")), "energy[0].center", "0.5");
}

#[test]
fn reference_mean_list_of_the_wrong_length_is_rejected() {
    invalid(build(&edit(GAUSS, "mean = 0.0\n", "mean = [0.0, 1.0]\n")), "reference.mean", "1.0");
}

#[test]
fn initial_mean_list_of_the_wrong_length_is_rejected() {
    invalid(build(&edit(GAUSS, "mean = 0.8", "mean = [0.8, 0.25]")), "particles.init.mean", "0.25");
}

#[test]
fn missing_data_file_is_rejected_with_its_key() {
    let text = edit(
        BASE,
        "[particles]",
        "[[energy]]\nkind = \"mmd\"\nwidth = 0.2\nsample = { file = \"no_such_sample.npy\" }\n[particles]",
    );
    let msg = invalid(build_in(&text, &temp_dir("missing")), "energy[1].sample.file", "no_such_sample.npy");
    assert!(msg.contains("cannot read"), "{msg}");
}

#[test]
fn data_file_with_the_wrong_number_of_columns_is_rejected() {
    let dir = temp_dir("columns");
    std::fs::write(dir.join("obs.csv"), "z0,z1,z2\n0.1,0.2,0.3\n0.4,0.5,0.6\n").unwrap();
    let text = edit(
        BASE,
        "[particles]",
        "[[energy]]\nkind = \"npmle\"\nnoise = 0.1\nobservations = { file = \"obs.csv\" }\n[particles]",
    );
    let msg = invalid(build_in(&text, &dir), "energy[1].observations.file", "obs.csv");
    assert!(msg.contains("3 columns, expected 2"), "{msg}");
    // The same file with two columns builds, and relative paths resolve against base_dir.
    std::fs::write(dir.join("obs.csv"), "z0,z1\n0.1,0.2\n0.4,0.5\n").unwrap();
    let p = build_in(&text, &dir).unwrap();
    let Energy::Npmle(Npmle { observations, .. }) = &p.model.energy[1] else { panic!("not an NPMLE term") };
    assert_eq!(observations.values, vec![0.1, 0.2, 0.4, 0.5]);
}

#[test]
fn data_file_with_a_bad_cell_names_the_line_and_column() {
    let dir = temp_dir("cell");
    std::fs::write(dir.join("y.csv"), "1,2\n3,x4\n").unwrap();
    let text = edit(
        BASE,
        "[particles]",
        "[[energy]]\nkind = \"mmd\"\nwidth = 0.2\nsample = { file = \"y.csv\" }\n[particles]",
    );
    let msg = invalid(build_in(&text, &dir), "energy[1].sample.file", "y.csv");
    assert!(msg.contains("line 2, column 2"), "{msg}");
}

#[test]
fn chi2_with_a_gibbs_reference_is_rejected() {
    let text = edit(
        &edit(BASE, "divergence = \"kl\"", "divergence = \"chi2\""),
        "kind = \"uniform\"\n",
        "kind = \"gibbs\"\npotential = { kind = \"cosine\", amplitude = 1.0 }\n",
    );
    let msg = invalid(build(&text), "divergence", "chi2");
    assert!(msg.contains("Gibbs"), "{msg}");
}

#[test]
fn exact_variant_builds_because_sampled_particles_have_a_density() {
    let p = build(&edit(GAUSS, "variant = \"B\"", "variant = \"exact\"")).unwrap();
    assert_eq!(p.model.variant, Variant::Exact);
    let density = p.particles.log_initial_density.expect("sampled particles carry log μ₀");
    assert!(density.iter().all(|v| v.is_finite()));
}

#[test]
fn uniform_reference_on_euclidean_space_is_rejected() {
    let text = edit(GAUSS, "kind = \"gaussian\"\nmean = 0.0\nstd = 1.0", "kind = \"uniform\"");
    invalid(build(&text), "reference.kind", "uniform");
}

#[test]
fn torus_side_on_euclidean_space_is_rejected() {
    invalid(build(&edit(GAUSS, "dim = 1", "dim = 1\nside = 2.5")), "domain.side", "2.5");
}

#[test]
fn interaction_wider_than_the_torus_is_rejected() {
    let text =
        edit(BASE, "[particles]", "[[energy]]\nkind = \"interaction\"\nstrength = 1.0\nwidth = 3.5\n[particles]");
    invalid(build(&text), "energy[1].width", "3.5");
}

#[test]
fn run_without_an_end_is_rejected() {
    invalid(build(&edit(BASE, "steps = 20", "")), "time", "no steps");
}

#[test]
fn zero_output_cadence_is_rejected() {
    invalid(build(&edit(BASE, "every = 5", "every = 0")), "output.every", "0");
    invalid(build(&edit(BASE, "every = 5", "every = 5\nsnapshot_every = -2")), "output.snapshot_every", "-2");
}

#[test]
fn auto_step_safety_outside_zero_one_is_rejected() {
    invalid(build(&edit(BASE, "h = 0.01", "h = \"auto\"\nsafety = 1.5")), "time.safety", "1.5");
}

#[test]
fn cosine_potential_on_euclidean_space_is_rejected() {
    let text = edit(
        GAUSS,
        "[particles]",
        "[[energy]]\nkind = \"potential\"\npotential = \"cosine\"\namplitude = 1.0\n[particles]",
    );
    invalid(build(&text), "energy[0].kind", "cosine");
}

#[test]
fn uniform_initial_on_euclidean_space_needs_a_box() {
    let text = edit(GAUSS, "init = { kind = \"gaussian\", mean = 0.8, std = 1.5 }", "init = { kind = \"uniform\" }");
    invalid(build(&text), "particles.init.low", "missing");
    let text = edit(
        GAUSS,
        "init = { kind = \"gaussian\", mean = 0.8, std = 1.5 }",
        "init = { kind = \"uniform\", low = 2.0, high = -1.0 }",
    );
    invalid(build(&text), "particles.init.low/high", "[2, -1]");
}

#[test]
fn two_layer_network_needs_three_dimensions() {
    let text = edit(
        BASE,
        "[particles]",
        "[[energy]]\nkind = \"two-layer-net\"\ndata = { generate = \"bumps\", m = 20 }\n[particles]",
    );
    invalid(build(&text), "domain.dim", "2");
}

#[test]
fn generated_mixture_with_a_negative_std_names_the_component() {
    let text = edit(
        BASE,
        "[particles]",
        "[[energy]]\nkind = \"mmd\"\nwidth = 0.2\nsample = { generate = \"mixture\", m = 10, components = [{ mean = 0.5, std = -0.3 }] }\n[particles]",
    );
    invalid(build(&text), "energy[1].sample.components[0].std", "-0.3");
}

#[test]
fn data_source_with_both_file_and_generate_is_rejected() {
    let text = edit(
        BASE,
        "[particles]",
        "[[energy]]\nkind = \"mmd\"\nwidth = 0.2\nsample = { file = \"a.npy\", generate = \"mixture\" }\n[particles]",
    );
    invalid(build(&text), "energy[1].sample", "a.npy");
}

#[test]
fn quadrature_order_zero_is_rejected() {
    invalid(
        build(&edit(BASE, "variant = \"C\"", "variant = \"D\"\nquadrature = { order = 0 }")),
        "kernel.quadrature.order",
        "0",
    );
}

#[test]
fn unknown_keys_are_rejected_at_every_level() {
    config_error(build(&edit(BASE, "seed = 5", "seed = 5\nsead = 6")), &["unknown field `sead`", "line 3"]);
    config_error(build(&edit(BASE, "epsilon = 0.1", "epsilon = 0.1\nepsilom = 0.2")), &["unknown field `epsilom`"]);
    config_error(build(&edit(BASE, "strength = 1.0", "strength = 1.0\nwidth = 1.0")), &["unknown field `width`"]);
    config_error(
        build(&edit(BASE, "{ kind = \"uniform\" }", "{ kind = \"uniform\", lo = 0 }")),
        &["unknown field `lo`"],
    );
    config_error(
        build(&edit(BASE, "kind = \"uniform\"\n", "kind = \"uniform\"\nstd = 1.0\n")),
        &["unknown field `std`"],
    );
    config_error(build(&edit(BASE, "[output]", "[outputs]")), &["unknown field `outputs`"]);
    config_error(build(&edit(BASE, "every = 5", "every = 5\n[output.extra]\nx = 1")), &["unknown field `extra`"]);
}

#[test]
fn unknown_variant_names_are_rejected_with_the_allowed_ones() {
    config_error(build(&edit(BASE, "variant = \"C\"", "variant = \"E\"")), &["unknown variant `E`", "D'"]);
    config_error(build(&edit(BASE, "kind = \"torus\"", "kind = \"sphere\"")), &["sphere", "euclidean"]);
}

#[test]
fn variant_aliases_are_accepted() {
    for (alias, v) in
        [("measure", Variant::Measure), ("blob", Variant::Blob), ("smoothed-target", Variant::SmoothedTarget)]
    {
        let p = build(&edit(BASE, "variant = \"C\"", &format!("variant = \"{alias}\""))).unwrap();
        assert_eq!(p.model.variant, v);
    }
}

#[test]
fn type_errors_come_from_toml_with_the_line() {
    config_error(build(&edit(BASE, "n = 32", "n = \"many\"")), &["line 26", "expected i64"]);
    config_error(build(&edit(BASE, "h = 0.01", "h = \"fast\"")), &["\"fast\"", "auto"]);
    config_error(build(&edit(BASE, "sigma = 0.5", "sigma = [0.5]")), &["sigma"]);
    config_error(build("this is not toml"), &["line 1"]);
}

#[test]
fn missing_required_keys_come_from_toml() {
    config_error(build(&edit(BASE, "epsilon = 0.1\n", "")), &["missing field `epsilon`"]);
}

#[test]
fn example_configs_parse_and_build() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.extension().is_some_and(|e| e == "toml") {
            // Sweep configs (frflow chaos / bandwidth) wrap a run config; they have their own loaders.
            if name.starts_with("chaos_") {
                frflow::experiments::chaos::ChaosSpec::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
            } else if name.starts_with("bandwidth_") {
                frflow::experiments::bandwidth::BandwidthSpec::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
            } else {
                let problem = Problem::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert!(!problem.particles.is_empty());
            }
            seen.push(name);
        }
    }
    for name in ["gibbs_torus.toml", "gaussian_t2.toml"] {
        assert!(seen.iter().any(|s| s == name), "examples/{name} is missing (found {seen:?})");
    }
}

#[test]
fn missing_config_file_names_the_path() {
    let path = temp_dir("nofile").join("nope.toml");
    let err = Config::load(&path).unwrap_err();
    assert!(matches!(err, Error::Io { .. }));
    assert!(err.to_string().contains("nope.toml"));
}

#[test]
fn readme_full_config_example_builds() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = doc.find("### A full example").expect("the README's full config example");
    let start = section + doc[section..].find("```toml\n").expect("a toml block") + "```toml\n".len();
    let end = start + doc[start..].find("```").unwrap();
    let p = build(&doc[start..end]).unwrap_or_else(|e| panic!("README full config example: {e}"));
    assert_eq!((p.particles.len(), p.model.energy.len()), (4096, 3));
    assert_eq!(p.model.variant, Variant::Smoothed);
}
