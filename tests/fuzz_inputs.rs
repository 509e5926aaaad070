//! Fuzzing the input boundaries: mutated configs through `Config::from_str` + `build`, and
//! arbitrary bytes through the `.npy` and CSV loaders. Whatever the input, the answer is `Ok` or
//! `Err`, never a panic; and whatever loads is a consistent, finite table.
//!
//! The configs keep N ≤ 64 and the generated data small, so that `build` stays cheap; number
//! edits use edge values (0, −1, 1e308, nan, inf, i64::MAX, …) that the caps reject before any
//! allocation, plus small random numbers.

use frflow::config::Config;
use frflow::io::data::{load_csv, load_npy, load_points};
use proptest::prelude::*;
use proptest::sample::Index;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Valid starting points covering every table, energy kind and data source.
const BASES: [&str; 6] = [
    r#"
seed = 3
engine = "cpu"
sigma = 0.5
divergence = "kl"
[domain]
kind = "torus"
dim = 2
side = 1.0
[reference]
kind = "gibbs"
potential = { kind = "cosine", amplitude = 1.0, frequency = 2 }
[kernel]
epsilon = 0.1
variant = "C"
[[energy]]
kind = "interaction"
strength = 0.5
width = 0.2
[particles]
n = 32
init = { kind = "uniform" }
[time]
scheme = "exponential"
h = "auto"
safety = 0.5
h_max = 0.1
final_time = 2.0
[output]
every = 5
snapshot_every = 10
checkpoint_every = 20
plot = false
"#,
    r#"
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
variant = "D"
quadrature = { order = 5, samples = 64, seed = 9 }
[[energy]]
kind = "potential"
potential = "quadratic"
strength = 2.0
center = [1.5]
[particles]
n = 48
init = { kind = "gaussian", mean = -1.0, std = 1.3 }
[time]
h = 0.05
steps = 10
tolerance = 1e-6
"#,
    r#"
seed = 17
sigma = 0.1
divergence = "chi2"
[domain]
kind = "euclidean"
dim = 2
[reference]
kind = "gaussian"
mean = [0.0, 0.5]
std = 2.0
[kernel]
epsilon = 0.3
variant = "B"
[[energy]]
kind = "mmd"
width = 0.5
sample = { generate = "mixture", m = 40, seed = 4, noise = 0.1, components = [{ weight = 1.0, mean = [-1.0, 0.0], std = 0.2 }, { weight = 2.0, mean = 1.0, std = 0.3 }] }
[[energy]]
kind = "potential"
potential = "double-well"
height = 0.5
scale = 1.0
[particles]
n = 64
init = { kind = "mixture", components = [{ weight = 1.0, mean = [0.0, 0.0], std = 1.0 }, { mean = 2.0, std = 0.5 }] }
[time]
h = "auto"
final_time = 1.0
"#,
    r#"
sigma = 0.0
[domain]
kind = "euclidean"
dim = 1
[reference]
kind = "gibbs"
potential = { kind = "quadratic", strength = 1.0 }
[kernel]
epsilon = 0.2
variant = "A"
[[energy]]
kind = "npmle"
noise = 0.5
observations = { generate = "mixture", m = 30, noise = 0.5, components = [{ mean = -2.0, std = 0.0 }, { mean = 2.0, std = 0.0 }] }
[particles]
n = 40
init = { kind = "uniform", low = -4.0, high = 4.0 }
[time]
h = 1.0
steps = 5
[output]
every = 1
"#,
    r#"
sigma = 0.05
[domain]
kind = "euclidean"
dim = 3
[reference]
kind = "gaussian"
mean = 0.0
std = 2.0
[kernel]
epsilon = 0.4
variant = "D'"
[[energy]]
kind = "two-layer-net"
penalty = 0.01
data = { generate = "bumps", m = 50, noise = 0.05, seed = 2 }
[particles]
n = 24
init = { kind = "gaussian", mean = 0.0, std = 1.0 }
[time]
scheme = "euler"
h = 0.01
steps = 3
"#,
    r#"
sigma = 0.3
[domain]
kind = "torus"
dim = 2
side = 2.0
[kernel]
epsilon = 0.2
variant = "exact"
[[energy]]
kind = "mmd"
width = 0.3
sample = { file = "fuzz_sample.csv" }
[[energy]]
kind = "npmle"
noise = 0.4
observations = { file = "fuzz_obs.npy" }
[particles]
n = 16
init = { kind = "gaussian", mean = [1.0, 1.0], std = 0.3 }
[time]
steps = 4
"#,
];

/// Keys (known and unknown) that a key edit may substitute.
const KEYS: [&str; 44] = [
    "seed",
    "engine",
    "device",
    "sigma",
    "divergence",
    "domain",
    "kind",
    "dim",
    "side",
    "reference",
    "mean",
    "std",
    "potential",
    "strength",
    "center",
    "height",
    "scale",
    "amplitude",
    "frequency",
    "kernel",
    "epsilon",
    "variant",
    "quadrature",
    "order",
    "samples",
    "energy",
    "width",
    "sample",
    "file",
    "generate",
    "m",
    "components",
    "weight",
    "noise",
    "penalty",
    "data",
    "inputs",
    "targets",
    "observations",
    "particles",
    "n",
    "init",
    "time",
    "bogus_key",
];

/// String values that a string edit may substitute.
const STRINGS: [&str; 30] = [
    "torus",
    "euclidean",
    "uniform",
    "gaussian",
    "gibbs",
    "mixture",
    "bumps",
    "quadratic",
    "double-well",
    "cosine",
    "potential",
    "interaction",
    "mmd",
    "two-layer-net",
    "npmle",
    "A",
    "B",
    "C",
    "D",
    "D'",
    "exact",
    "kl",
    "chi2",
    "euler",
    "exponential",
    "auto",
    "cpu",
    "gpu",
    "fuzz_obs.npy",
    "",
];

/// Edge values for number edits (some are not even numbers).
const EDGES: [&str; 29] = [
    "0",
    "-0",
    "-1",
    "1",
    "2",
    "3",
    "8",
    "9",
    "64",
    "0.5",
    "1e308",
    "-1e308",
    "1e-308",
    "5e-324",
    "nan",
    "-nan",
    "inf",
    "-inf",
    "9223372036854775807",
    "-9223372036854775808",
    "99999999999999999999",
    "4294967296",
    "67108865",
    "\"auto\"",
    "true",
    "[]",
    "[1.0, 2.0, 3.0]",
    "{}",
    "1979-05-27",
];

const CHARS: &[char] = &[
    '=', '[', ']', '{', '}', ',', '"', '\'', '\n', ' ', '.', '-', '+', '#', '0', '1', '9', 'e', 'a', 'z', '_', 'é',
    'σ', '\t', '\\',
];

#[derive(Clone, Debug)]
enum Edit {
    Delete(Index, usize),
    Insert(Index, char),
    Replace(Index, char),
    Number(Index, String),
    /// Replaces a number with one of the same kind: the first string for an integer, the second
    /// for a float, so that most edits get past the type check and reach `build`.
    TypedNumber(Index, String, String),
    Key(Index, &'static str),
    Str(Index, &'static str),
    DeleteLine(Index),
    DuplicateLine(Index),
    SwapLines(Index, Index),
}

fn number_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(&EDGES[..]).prop_map(str::to_string),
        2 => (-100i64..1000).prop_map(|v| v.to_string()),
        1 => (-2.0f64..4.0).prop_map(|v| format!("{v}")),
        1 => any::<f64>().prop_map(|v| format!("{v:e}")),
    ]
}

const INT_EDGES: [&str; 11] =
    ["0", "-1", "1", "2", "9", "64", "4294967296", "67108865", "9223372036854775807", "-9223372036854775808", "33"];

const FLOAT_EDGES: [&str; 14] =
    ["0.0", "-0.0", "-1.0", "1.0", "0.5", "2.5", "1e308", "-1e308", "1e-308", "5e-324", "nan", "inf", "-inf", "1e-9"];

fn int_text() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => proptest::sample::select(&INT_EDGES[..]).prop_map(str::to_string),
        2 => (-3i64..100).prop_map(|v| v.to_string()),
    ]
}

fn float_text() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => proptest::sample::select(&FLOAT_EDGES[..]).prop_map(str::to_string),
        2 => (-2.0f64..4.0).prop_map(|v| format!("{v:?}")),
    ]
}

/// Value edits that keep the TOML well-formed and mostly well-typed.
fn value_edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<Index>(), int_text(), float_text()).prop_map(|(i, a, b)| Edit::TypedNumber(i, a, b)),
        1 => (any::<Index>(), proptest::sample::select(&STRINGS[..])).prop_map(|(i, s)| Edit::Str(i, s)),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        2 => (any::<Index>(), 1usize..8).prop_map(|(i, n)| Edit::Delete(i, n)),
        2 => (any::<Index>(), proptest::sample::select(CHARS)).prop_map(|(i, c)| Edit::Insert(i, c)),
        2 => (any::<Index>(), proptest::sample::select(CHARS)).prop_map(|(i, c)| Edit::Replace(i, c)),
        6 => (any::<Index>(), number_text()).prop_map(|(i, s)| Edit::Number(i, s)),
        3 => (any::<Index>(), proptest::sample::select(&KEYS[..])).prop_map(|(i, k)| Edit::Key(i, k)),
        3 => (any::<Index>(), proptest::sample::select(&STRINGS[..])).prop_map(|(i, s)| Edit::Str(i, s)),
        1 => any::<Index>().prop_map(Edit::DeleteLine),
        1 => any::<Index>().prop_map(Edit::DuplicateLine),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
    ]
}

/// Spans (start, end) in `chars` of number-like tokens: a digit (or a sign before one) not
/// preceded by a letter, extended over digits, '.', '_', 'e', 'E', '+', '-'.
fn number_spans(chars: &[char]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let starts =
            chars[i].is_ascii_digit() || (chars[i] == '-' && chars.get(i + 1).is_some_and(|c| c.is_ascii_digit()));
        let after_word = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_' || chars[i - 1] == '.');
        if starts && !after_word {
            let mut j = i + 1;
            while j < chars.len() && (chars[j].is_ascii_digit() || "._eE+-".contains(chars[j])) {
                j += 1;
            }
            spans.push((i, j));
            i = j;
        } else {
            i += 1;
        }
    }
    spans
}

/// Spans of bare keys: an identifier followed by optional spaces and '='.
fn key_spans(chars: &[char]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_alphabetic() && (i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')) {
            let mut j = i;
            while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_' || chars[j] == '-') {
                j += 1;
            }
            let mut k = j;
            while k < chars.len() && chars[k] == ' ' {
                k += 1;
            }
            if chars.get(k) == Some(&'=') {
                spans.push((i, j));
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    spans
}

/// Spans of the insides of "…" strings on one line.
fn string_spans(chars: &[char]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut open: Option<usize> = None;
    for (i, c) in chars.iter().enumerate() {
        match (c, open) {
            ('"', None) => open = Some(i + 1),
            ('"', Some(s)) => {
                spans.push((s, i));
                open = None;
            }
            ('\n', _) => open = None,
            _ => {}
        }
    }
    spans
}

fn splice(chars: &mut Vec<char>, (a, b): (usize, usize), with: &str) {
    chars.splice(a..b, with.chars());
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for e in edits {
        let len = chars.len();
        match e {
            Edit::Delete(i, n) if len > 0 => {
                let a = i.index(len);
                chars.drain(a..(a + n).min(len));
            }
            Edit::Insert(i, c) => chars.insert(i.index(len + 1), *c),
            Edit::Replace(i, c) if len > 0 => chars[i.index(len)] = *c,
            Edit::Number(i, s) => {
                let spans = number_spans(&chars);
                if !spans.is_empty() {
                    splice(&mut chars, spans[i.index(spans.len())], s);
                }
            }
            Edit::TypedNumber(i, int, float) => {
                let spans = number_spans(&chars);
                if !spans.is_empty() {
                    let span = spans[i.index(spans.len())];
                    let is_float = chars[span.0..span.1].iter().any(|c| ".eE".contains(*c));
                    splice(&mut chars, span, if is_float { float } else { int });
                }
            }
            Edit::Key(i, k) => {
                let spans = key_spans(&chars);
                if !spans.is_empty() {
                    splice(&mut chars, spans[i.index(spans.len())], k);
                }
            }
            Edit::Str(i, s) => {
                let spans = string_spans(&chars);
                if !spans.is_empty() {
                    splice(&mut chars, spans[i.index(spans.len())], s);
                }
            }
            Edit::DeleteLine(i) | Edit::DuplicateLine(i) | Edit::SwapLines(i, _) => {
                let text: String = chars.iter().collect();
                let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
                let a = i.index(lines.len());
                match e {
                    Edit::DeleteLine(_) => {
                        lines.remove(a);
                    }
                    Edit::DuplicateLine(_) => {
                        let l = lines[a].clone();
                        lines.insert(a, l);
                    }
                    Edit::SwapLines(_, j) => {
                        let b = j.index(lines.len());
                        lines.swap(a, b);
                    }
                    _ => unreachable!(),
                }
                chars = lines.join("\n").chars().collect();
            }
            _ => {}
        }
    }
    chars.into_iter().collect()
}

fn unique_path(tag: &str, ext: &str) -> PathBuf {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let k = COUNT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("frflow-fuzz-{}-{tag}-{k}.{ext}", std::process::id()))
}

/// A directory with the data files the last base config names.
fn data_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("frflow-fuzz-data-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("fuzz_sample.csv"), "x,y\n0.1,0.2\n1.5,1.9\n0.7,0.3\n").unwrap();
        std::fs::write(dir.join("fuzz_obs.npy"), npy(b"<f8", "(3, 2)", &[0.5, 0.5, 1.0, 1.5, 1.9, 0.1])).unwrap();
        dir
    })
}

/// A little-endian float64 or float32 `.npy` file.
fn npy(descr: &[u8], shape: &str, values: &[f64]) -> Vec<u8> {
    let descr = std::str::from_utf8(descr).unwrap();
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(h.len() as u16).to_le_bytes());
    b.extend_from_slice(h.as_bytes());
    for v in values {
        if descr.ends_with('4') {
            b.extend_from_slice(&(*v as f32).to_le_bytes());
        } else {
            b.extend_from_slice(&v.to_le_bytes());
        }
    }
    b
}

/// Whatever a loader accepts is a consistent table of finite numbers.
fn check_loaded(result: frflow::Result<frflow::model::Points>, columns: Option<usize>) -> Result<(), TestCaseError> {
    match result {
        Ok(p) => {
            prop_assert!(p.dim >= 1);
            prop_assert!(!p.values.is_empty());
            prop_assert_eq!(p.values.len() % p.dim, 0);
            prop_assert!(p.values.iter().all(|v| v.is_finite()));
            if let Some(c) = columns {
                prop_assert_eq!(p.dim, c);
            }
        }
        Err(e) => prop_assert!(matches!(e, frflow::Error::Data { .. }), "not a Data error: {e:?}"),
    }
    Ok(())
}

/// Runs `load` on `bytes` written to a fresh temp file with extension `ext`.
fn load_bytes(
    bytes: &[u8],
    ext: &str,
    columns: Option<usize>,
    load: fn(&Path, Option<usize>) -> frflow::Result<frflow::model::Points>,
) -> Result<(), TestCaseError> {
    let path = unique_path("bytes", ext);
    std::fs::write(&path, bytes).unwrap();
    let result = load(&path, columns);
    let _ = std::fs::remove_file(&path);
    check_loaded(result, columns)
}

fn fuzz_config() -> ProptestConfig {
    ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() }
}

fn fuzz_files() -> ProptestConfig {
    ProptestConfig { cases: 1500, failure_persistence: None, ..ProptestConfig::default() }
}

#[test]
fn every_base_config_builds() {
    for (i, text) in BASES.iter().enumerate() {
        let config = Config::from_str(text, "base").unwrap_or_else(|e| panic!("base {i}: {e}"));
        config.build(data_dir()).unwrap_or_else(|e| panic!("base {i}: {e}"));
    }
}

proptest! {
    #![proptest_config(fuzz_config())]

    #[test]
    fn configs_with_edited_values_return_ok_or_err_never_panic(
        base in 0..BASES.len(),
        edits in proptest::collection::vec(value_edit(), 1..5),
    ) {
        let text = apply(BASES[base], &edits);
        if let Ok(config) = Config::from_str(&text, "fuzz.toml") {
            match config.build(data_dir()) {
                Ok(p) => {
                    prop_assert!(!p.particles.is_empty());
                    prop_assert!(p.particles.positions.iter().all(|v| v.is_finite()));
                }
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }
    }

    #[test]
    fn mutated_configs_return_ok_or_err_never_panic(
        base in 0..BASES.len(),
        edits in proptest::collection::vec(edit(), 1..6),
    ) {
        let text = apply(BASES[base], &edits);
        // A panic inside fails the case; an Err is a fine answer, and so is Ok.
        if let Ok(config) = Config::from_str(&text, "fuzz.toml") {
            match config.build(data_dir()) {
                Ok(p) => {
                    prop_assert!(!p.particles.is_empty());
                    prop_assert!(p.particles.positions.iter().all(|v| v.is_finite()));
                    prop_assert!(p.run.every >= 1);
                }
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }
    }
}

proptest! {
    #![proptest_config(fuzz_files())]

    #[test]
    fn arbitrary_bytes_never_panic_the_npy_loader(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        columns in proptest::option::of(1usize..4),
    ) {
        load_bytes(&bytes, "npy", columns, load_npy)?;
    }

    #[test]
    fn npy_files_with_a_valid_magic_and_random_header_never_panic(
        version in proptest::sample::select(vec![1u8, 2, 3, 4]),
        header in "[{}()\\[\\]',: 0-9<>|=fiu48TrueFalsdcphon_\n\\\\\"]{0,120}",
        claimed in proptest::option::of(0u32..100_000),
        data in proptest::collection::vec(any::<u8>(), 0..128),
        columns in proptest::option::of(1usize..4),
    ) {
        let mut b = b"\x93NUMPY".to_vec();
        b.push(version);
        b.push(0);
        let len = claimed.unwrap_or(header.len() as u32);
        if version == 1 {
            b.extend_from_slice(&(len as u16).to_le_bytes());
        } else {
            b.extend_from_slice(&len.to_le_bytes());
        }
        b.extend_from_slice(header.as_bytes());
        b.extend_from_slice(&data);
        load_bytes(&b, "npy", columns, load_npy)?;
    }

    #[test]
    fn npy_files_with_plausible_headers_never_panic(
        descr in proptest::sample::select(vec!["<f8", ">f8", "<f4", ">f4", "<i8", "|u1", "<c16", "O", "<f8'", ""]),
        fortran in any::<bool>(),
        shape in proptest::sample::select(vec![
            "()", "(0,)", "(3,)", "(2, 3)", "(3, 2)", "(6, 1)", "(1, 6)", "(2, 3, 1)", "(0, 3)", "(3, 0)",
            "(18446744073709551615, 2)", "(4294967296, 4294967296)", "(99999999999999999999999,)", "(-1, 2)",
            "[2, 3]", "(2,3,)", "(( 2 ), 3)", "(2 3)",
        ]),
        values in proptest::collection::vec(prop_oneof![any::<f64>(), -10.0f64..10.0], 0..12),
        extra in proptest::option::of("[ ,'a-z:0-9]{0,20}"),
        columns in proptest::option::of(1usize..4),
    ) {
        let order = if fortran { "True" } else { "False" };
        let mut h = format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape}, {} }}", extra.unwrap_or_default());
        h.push('\n');
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(h.len() as u16).to_le_bytes());
        b.extend_from_slice(h.as_bytes());
        for v in &values {
            b.extend_from_slice(&v.to_le_bytes());
        }
        load_bytes(&b, "npy", columns, load_npy)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_csv_loader(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        columns in proptest::option::of(1usize..4),
    ) {
        load_bytes(&bytes, "csv", columns, load_csv)?;
    }

    #[test]
    fn csv_like_text_never_panics_and_loads_consistently(
        text in "[0-9.,eE+\\- \n\r\t#\"naifxyNI\u{feff}é]{0,300}",
        columns in proptest::option::of(1usize..4),
    ) {
        load_bytes(text.as_bytes(), "csv", columns, load_csv)?;
        // The extension dispatch agrees with the direct loader.
        load_bytes(text.as_bytes(), "CSV", columns, load_points)?;
    }
}
