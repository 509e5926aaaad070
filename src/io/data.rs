//! Data sets: `.npy` and CSV readers into [`Points`], and seeded generators for the energies'
//! data (MMD targets, NPMLE observations, the two-layer network's regression problem).
//!
//! The readers never panic, whatever the bytes: a missing file, an unsupported dtype, a wrong
//! shape, a non-numeric or non-finite value all give [`Error::Data`] naming the file and the
//! problem (with the row and column where there is one). Rows and columns are counted from 1.
//!
//! The generators draw with ChaCha8 and [`standard_normal`], so a seed gives bit-identical data
//! on every machine.

use crate::error::{Error, Result};
use crate::model::Points;
use crate::particles::{Component, standard_normal};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;

/// The largest number of rows a generator draws (a guard against a mistyped `m`).
pub const MAX_GENERATED_ROWS: usize = 1 << 24;

/// Largest `.npy` header accepted, in bytes (numpy writes a few dozen).
const MAX_NPY_HEADER: usize = 1 << 16;

fn data_error(path: &Path, message: impl Into<String>) -> Error {
    Error::Data { path: path.display().to_string(), message: message.into() }
}

/// Opens a data file, which must be a regular file (a device such as `/dev/zero` or a FIFO would
/// be read forever or block).
fn open_data(path: &Path) -> Result<std::fs::File> {
    crate::io::guard::open_regular(path).map_err(|e| match e {
        Error::Io { source, .. } => data_error(path, format!("cannot read: {source}")),
        e => e,
    })
}

/// Loads a numeric table from a `.npy` or `.csv` (also `.txt`) file, chosen by the extension.
///
/// `columns`: the number of columns the caller needs, or `None` to accept any. See
/// [`load_npy`] and [`load_csv`] for what each format accepts.
pub fn load_points(path: &Path, columns: Option<usize>) -> Result<Points> {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("npy") => load_npy(path, columns),
        Some("csv") | Some("txt") => load_csv(path, columns),
        _ => Err(data_error(path, "unknown format: expected a .npy or a .csv file")),
    }
}

/// Checks the shape against the requested columns and every value for finiteness.
fn finish(path: &Path, rows: usize, cols: usize, values: Vec<f64>, columns: Option<usize>) -> Result<Points> {
    if rows == 0 {
        return Err(data_error(path, "the table has no rows"));
    }
    if cols == 0 {
        return Err(data_error(path, "the table has no columns"));
    }
    if let Some(want) = columns
        && want != cols
    {
        return Err(data_error(path, format!("the table has {cols} columns, expected {want}")));
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(data_error(
            path,
            format!("non-finite value {} at row {}, column {}", values[i], i / cols + 1, i % cols + 1),
        ));
    }
    if let Some(i) = values.iter().position(|v| v.abs() > MAX_DATA_ABS) {
        return Err(data_error(
            path,
            format!(
                "value {:e} at row {}, column {} is beyond ±{MAX_DATA_ABS:e}: kernels and distances of such values \
                 overflow (rescale the data)",
                values[i],
                i / cols + 1,
                i % cols + 1
            ),
        ));
    }
    Ok(Points { dim: cols, values })
}

/// The largest magnitude of a data value: squared distances of larger ones overflow f64.
pub const MAX_DATA_ABS: f64 = 1e100;

/// What a validated `.npy` header says.
struct NpyHeader {
    /// Bytes per value: 4 or 8.
    item_size: usize,
    fortran: bool,
    shape: Vec<u64>,
    /// Offset of the first data byte.
    data_offset: usize,
}

/// A strict parser for the header dictionary numpy writes for a plain array, e.g.
/// `{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }`.
///
/// It runs before npyz sees the bytes, so that only small, flat, well-formed headers with a
/// floating-point dtype and an in-range shape reach the general parser.
struct HeaderParser<'a> {
    s: &'a [u8],
    i: usize,
}

enum HeaderValue {
    Str(String),
    Bool(bool),
    Shape(Vec<u64>),
}

impl HeaderParser<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip_ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn string(&mut self) -> std::result::Result<String, String> {
        self.skip_ws();
        let quote = match self.s.get(self.i) {
            Some(&q @ (b'\'' | b'"')) => q,
            _ => return Err(format!("expected a quoted string at byte {}", self.i)),
        };
        self.i += 1;
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i] != quote {
            if self.s[self.i] == b'\\' || !self.s[self.i].is_ascii() {
                return Err("unsupported character in a header string".into());
            }
            self.i += 1;
        }
        if self.i >= self.s.len() {
            return Err("unterminated string in the header".into());
        }
        let text = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
        self.i += 1;
        Ok(text)
    }

    fn value(&mut self) -> std::result::Result<HeaderValue, String> {
        self.skip_ws();
        match self.s.get(self.i) {
            Some(b'\'' | b'"') => Ok(HeaderValue::Str(self.string()?)),
            Some(b'T') if self.s[self.i..].starts_with(b"True") => {
                self.i += 4;
                Ok(HeaderValue::Bool(true))
            }
            Some(b'F') if self.s[self.i..].starts_with(b"False") => {
                self.i += 5;
                Ok(HeaderValue::Bool(false))
            }
            Some(&open @ (b'(' | b'[')) => {
                let close = if open == b'(' { b')' } else { b']' };
                self.i += 1;
                let mut dims = Vec::new();
                loop {
                    if self.eat(close) {
                        return Ok(HeaderValue::Shape(dims));
                    }
                    if dims.len() >= 8 {
                        return Err("the shape has too many dimensions".into());
                    }
                    self.skip_ws();
                    let start = self.i;
                    while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
                        self.i += 1;
                    }
                    let digits = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
                    let dim: u64 = digits.parse().map_err(|_| "the shape must be a tuple of non-negative integers")?;
                    dims.push(dim);
                    if !self.eat(b',') {
                        if self.eat(close) {
                            return Ok(HeaderValue::Shape(dims));
                        }
                        return Err("malformed shape tuple".into());
                    }
                }
            }
            _ => Err(format!("unsupported value in the header at byte {}", self.i)),
        }
    }

    fn dict(&mut self) -> std::result::Result<(String, bool, Vec<u64>), String> {
        if !self.eat(b'{') {
            return Err("the header is not a dictionary".into());
        }
        let (mut descr, mut fortran, mut shape) = (None, None, None);
        loop {
            if self.eat(b'}') {
                break;
            }
            let key = self.string()?;
            if !self.eat(b':') {
                return Err(format!("expected ':' after '{key}'"));
            }
            let value = self.value()?;
            let duplicate = match (key.as_str(), value) {
                ("descr", HeaderValue::Str(s)) => descr.replace(s).is_some(),
                ("fortran_order", HeaderValue::Bool(b)) => fortran.replace(b).is_some(),
                ("shape", HeaderValue::Shape(v)) => shape.replace(v).is_some(),
                ("descr" | "fortran_order" | "shape", _) => return Err(format!("'{key}' has the wrong type")),
                _ => return Err(format!("unexpected header key '{key}'")),
            };
            if duplicate {
                return Err(format!("duplicate header key '{key}'"));
            }
            if !self.eat(b',') {
                if self.eat(b'}') {
                    break;
                }
                return Err("malformed header dictionary".into());
            }
        }
        self.skip_ws();
        if self.i != self.s.len() {
            return Err("unexpected text after the header dictionary".into());
        }
        match (descr, fortran, shape) {
            (Some(d), Some(f), Some(s)) => Ok((d, f, s)),
            _ => Err("the header lacks one of 'descr', 'fortran_order', 'shape'".into()),
        }
    }
}

fn parse_npy_header(bytes: &[u8]) -> std::result::Result<NpyHeader, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (the magic string \\x93NUMPY is missing)".into());
    }
    let (len, start) = match (bytes[6], bytes[7]) {
        (1, 0) => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        (2 | 3, 0) if bytes.len() >= 12 => {
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        (major, minor) => return Err(format!("unsupported .npy version {major}.{minor}")),
    };
    if len > MAX_NPY_HEADER || start + len > bytes.len() {
        return Err(format!("the header length {len} does not fit the file ({} bytes)", bytes.len()));
    }
    let (descr, fortran, shape) = HeaderParser { s: &bytes[start..start + len], i: 0 }.dict()?;
    let item_size = match descr.as_str() {
        "<f8" | ">f8" => 8,
        "<f4" | ">f4" => 4,
        other => return Err(format!("dtype '{other}' is not supported: save the array as float64 or float32")),
    };
    if shape.len() > 2 {
        return Err(format!("a {}-D array: expected a 1-D or 2-D array", shape.len()));
    }
    if shape.is_empty() {
        return Err("a 0-D (scalar) array: expected a 1-D or 2-D array".into());
    }
    Ok(NpyHeader { item_size, fortran, shape, data_offset: start + len })
}

/// Loads a `.npy` array of float64 or float32 (either byte order).
///
/// A 1-D array of M values is an M × 1 table; a 2-D array of shape (M, k) is M rows of k
/// columns. C order is the norm; a Fortran-ordered 2-D array is transposed on reading. The data
/// must fill the file exactly.
pub fn load_npy(path: &Path, columns: Option<usize>) -> Result<Points> {
    use std::io::Read;
    let file = open_data(path)?;
    let len = file.metadata().map_err(|e| data_error(path, format!("cannot read: {e}")))?.len();
    // The header first: the shape must match the file's size before the data is read.
    let mut head = Vec::new();
    (&file)
        .take(MAX_NPY_HEADER as u64 + 16)
        .read_to_end(&mut head)
        .map_err(|e| data_error(path, format!("cannot read: {e}")))?;
    let header = parse_npy_header(&head).map_err(|m| data_error(path, m))?;
    let needed = header.shape.iter().try_fold(header.item_size as u64, |a, &b| a.checked_mul(b));
    if needed.and_then(|n| n.checked_add(header.data_offset as u64)) != Some(len) {
        let shape: Vec<String> = header.shape.iter().map(u64::to_string).collect();
        return Err(data_error(
            path,
            format!(
                "shape ({}) of {}-byte values does not match the file's {len} bytes ({} after the header)",
                shape.join(", "),
                header.item_size,
                len.saturating_sub(header.data_offset as u64)
            ),
        ));
    }
    let mut bytes = head;
    (&file).take(len + 1).read_to_end(&mut bytes).map_err(|e| data_error(path, format!("cannot read: {e}")))?;
    let rows = header.shape[0];
    let cols = header.shape.get(1).copied().unwrap_or(1);
    let data_len = bytes.len() - header.data_offset;
    let needed = rows.checked_mul(cols).and_then(|n| n.checked_mul(header.item_size as u64));
    if needed != Some(data_len as u64) {
        let shape: Vec<String> = header.shape.iter().map(u64::to_string).collect();
        return Err(data_error(
            path,
            format!(
                "shape ({}) of {}-byte values does not match the {data_len} data bytes in the file",
                shape.join(", "),
                header.item_size
            ),
        ));
    }
    // Both now fit in memory: their product is at most the file size.
    let (rows, cols) = (rows as usize, cols as usize);
    let npy = npyz::NpyFile::new(&bytes[..]).map_err(|e| data_error(path, format!("bad .npy header: {e}")))?;
    if npy.shape() != header.shape.as_slice() {
        return Err(data_error(path, "the .npy header could not be read consistently"));
    }
    let read = |e: std::io::Error| data_error(path, format!("cannot read the data: {e}"));
    let mut values: Vec<f64> = if header.item_size == 8 {
        npy.into_vec::<f64>().map_err(read)?
    } else {
        npy.into_vec::<f32>().map_err(read)?.into_iter().map(f64::from).collect()
    };
    if values.len() != rows * cols {
        return Err(data_error(path, format!("read {} values, the shape says {}", values.len(), rows * cols)));
    }
    if header.fortran && cols > 1 {
        let mut c_order = vec![0.0; values.len()];
        for r in 0..rows {
            for c in 0..cols {
                c_order[r * cols + c] = values[c * rows + r];
            }
        }
        values = c_order;
    }
    finish(path, rows, cols, values, columns)
}

/// Loads comma-separated numbers, one row per line.
///
/// Whitespace around fields is ignored, as are blank lines and lines starting with `#`. The
/// first row is a header, and skipped, when none of its fields is a number; after that every
/// field must be a finite number and every row must have the same number of fields.
pub fn load_csv(path: &Path, columns: Option<usize>) -> Result<Points> {
    let file = open_data(path)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .from_reader(std::io::BufReader::new(file));
    let mut values = Vec::new();
    let mut cols: Option<usize> = None;
    let mut rows = 0usize;
    let mut first = true;
    for record in reader.byte_records() {
        let record = record.map_err(|e| data_error(path, format!("cannot read: {e}")))?;
        let line = record.position().map_or(0, |p| p.line());
        let field_text = |k: usize, raw: &[u8]| -> String {
            let raw = if first && k == 0 { raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw) } else { raw };
            String::from_utf8_lossy(raw).into_owned()
        };
        if record.is_empty() || (record.len() == 1 && record[0].is_empty()) {
            continue;
        }
        let texts: Vec<String> = record.iter().enumerate().map(|(k, f)| field_text(k, f)).collect();
        let parsed: Vec<Option<f64>> = texts.iter().map(|t| t.parse::<f64>().ok()).collect();
        if first {
            first = false;
            if parsed.iter().all(Option::is_none) {
                continue; // a header line
            }
        }
        let want = *cols.get_or_insert(texts.len());
        if texts.len() != want {
            return Err(data_error(path, format!("line {line} has {} fields, earlier rows have {want}", texts.len())));
        }
        for (k, (t, v)) in texts.iter().zip(parsed).enumerate() {
            match v {
                Some(v) if v.is_finite() => values.push(v),
                Some(v) => {
                    return Err(data_error(path, format!("non-finite value {v} at line {line}, column {}", k + 1)));
                }
                None => {
                    let shown: String = t.chars().take(40).collect();
                    return Err(data_error(path, format!("line {line}, column {}: '{shown}' is not a number", k + 1)));
                }
            }
        }
        rows += 1;
    }
    finish(path, rows, cols.unwrap_or(0), values, columns)
}

fn check_rows(m: usize) -> Result<()> {
    if m == 0 || m > MAX_GENERATED_ROWS {
        return Err(Error::invalid("m", m, format!("an integer from 1 to {MAX_GENERATED_ROWS}")));
    }
    Ok(())
}

fn check_noise(noise: f64) -> Result<()> {
    if !(noise.is_finite() && noise >= 0.0) {
        return Err(Error::invalid("noise", noise, "a finite number ≥ 0"));
    }
    Ok(())
}

/// Draws m points from a Gaussian mixture, plus optional additive Gaussian noise.
///
/// Row k: pick component j with probability weight_j / Σ weights (one uniform draw), then
/// x = mean_j + std_j ξ, then, if `noise` > 0, z = x + noise · η, with ξ, η standard normal
/// vectors (drawn coordinate by coordinate, ξ before η). The dimension is that of the means.
///
/// Use it for MMD targets (ν = the drawn sample, `noise` = 0) and for NPMLE observations
/// (components with `std` = 0 are atoms of the true prior, `noise` the observation noise s).
///
/// Errors ([`Error::Invalid`], with fields relative to the caller's key): no components, means
/// of different or zero lengths, a weight that is not finite and > 0, a std or noise that is not
/// finite and ≥ 0, m outside 1..=[`MAX_GENERATED_ROWS`], or draws that overflow to ±∞.
pub fn gaussian_mixture_sample(components: &[Component], m: usize, noise: f64, seed: u64) -> Result<Points> {
    if components.is_empty() {
        return Err(Error::invalid("components", "[]", "at least one component"));
    }
    let dim = components[0].mean.len();
    for (i, c) in components.iter().enumerate() {
        crate::error::check_positive(format!("components[{i}].weight"), c.weight)?;
        if !(c.std.is_finite() && c.std >= 0.0) {
            return Err(Error::invalid(format!("components[{i}].std"), c.std, "a finite number ≥ 0"));
        }
        if c.mean.is_empty() || c.mean.len() != dim || c.mean.iter().any(|v| !v.is_finite()) {
            return Err(Error::invalid(
                format!("components[{i}].mean"),
                format!("{:?}", c.mean),
                format!("a non-empty list of finite numbers, of the same length ({dim}) in every component"),
            ));
        }
    }
    check_rows(m)?;
    check_noise(noise)?;
    let total: f64 = components.iter().map(|c| c.weight).sum();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut values = Vec::with_capacity(m * dim);
    for _ in 0..m {
        let mut u = rng.random::<f64>() * total;
        let mut pick = &components[components.len() - 1];
        for c in components {
            if u < c.weight {
                pick = c;
                break;
            }
            u -= c.weight;
        }
        let start = values.len();
        values.extend(pick.mean.iter().map(|mu| mu + pick.std * standard_normal(&mut rng)));
        if noise > 0.0 {
            for v in &mut values[start..] {
                *v += noise * standard_normal(&mut rng);
            }
        }
    }
    if let Some(v) = values.iter().find(|v| !v.is_finite()) {
        return Err(Error::invalid("components", v, "means and stds whose draws stay finite"));
    }
    Ok(Points { dim, values })
}

/// Centres c_j of the bumps in [`bumps_regression`].
pub const BUMP_CENTRES: [f64; 3] = [-2.0, 0.0, 2.0];
/// Variances v_j of the bumps.
pub const BUMP_VARIANCES: [f64; 3] = [0.5, 1.0, 0.5];
/// Signs of the bumps.
pub const BUMP_SIGNS: [f64; 3] = [1.0, -1.0, 1.0];

/// The noiseless regression function of [`bumps_regression`]:
/// y(z) = Σ_j sign_j · exp(−(z − c_j)² / (2 v_j)).
pub fn bumps_function(z: f64) -> f64 {
    (0..3).map(|j| BUMP_SIGNS[j] * (-(z - BUMP_CENTRES[j]).powi(2) / (2.0 * BUMP_VARIANCES[j])).exp()).sum()
}

/// A 1-D regression problem for the mean-field two-layer network (so domain dim 3, x = (a, b, c)).
///
/// Row k: z_k uniform on [−4, 4], then y_k = y(z_k) + noise · ξ_k, with y the noiseless
/// [`bumps_function`] and ξ_k standard normal (drawn only when `noise` > 0). The bumps have centres −2, 0, 2, variances
/// 0.5, 1, 0.5 and signs +, −, +. Returns the inputs (a table with one column) and the targets.
///
/// Errors: m outside 1..=[`MAX_GENERATED_ROWS`] (`m`), noise not finite and ≥ 0 (`noise`).
pub fn bumps_regression(m: usize, noise: f64, seed: u64) -> Result<(Points, Vec<f64>)> {
    check_rows(m)?;
    check_noise(noise)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut inputs = Vec::with_capacity(m);
    let mut targets = Vec::with_capacity(m);
    for _ in 0..m {
        let z = -4.0 + 8.0 * rng.random::<f64>();
        let mut y = bumps_function(z);
        if noise > 0.0 {
            y += noise * standard_normal(&mut rng);
        }
        inputs.push(z);
        targets.push(y);
    }
    Ok((Points { dim: 1, values: inputs }, targets))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn temp(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let k = COUNT.fetch_add(1, Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("frflow-data-unit-{}-{k}-{name}", std::process::id()));
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn npy_bytes(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut h = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
            if fortran { "True" } else { "False" }
        );
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(h.len() as u16).to_le_bytes());
        b.extend_from_slice(h.as_bytes());
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn npy_f64_and_f32_round_trip_in_c_and_fortran_order() {
        let v = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0];
        let le: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        let p = temp("a.npy", &npy_bytes("<f8", false, "(3, 2)", &le));
        let got = load_npy(&p, Some(2)).unwrap();
        assert_eq!(got, Points { dim: 2, values: v.to_vec() });
        let p = temp("b.npy", &npy_bytes("<f8", true, "(3, 2)", &le));
        let got = load_npy(&p, Some(2)).unwrap();
        assert_eq!(got.values, vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        let be: Vec<u8> = v.iter().flat_map(|x| (*x as f32).to_be_bytes()).collect();
        let p = temp("c.npy", &npy_bytes(">f4", false, "(6,)", &be));
        let got = load_points(&p, Some(1)).unwrap();
        assert_eq!(got, Points { dim: 1, values: v.to_vec() });
        let err = load_points(&p, Some(2)).unwrap_err().to_string();
        assert!(err.contains("1 columns, expected 2"), "{err}");
    }

    #[test]
    fn npy_rejects_bad_shapes_and_dtypes_with_the_reason() {
        let p = temp("d.npy", &npy_bytes("<f8", false, "(18446744073709551615, 18446744073709551615)", &[0; 16]));
        assert!(load_npy(&p, None).unwrap_err().to_string().contains("does not match"));
        let p = temp("e.npy", &npy_bytes("<i8", false, "(2,)", &[0; 16]));
        assert!(load_npy(&p, None).unwrap_err().to_string().contains("not supported"));
        let nan: Vec<u8> = [1.0, f64::NAN].iter().flat_map(|x| x.to_le_bytes()).collect();
        let p = temp("f.npy", &npy_bytes("<f8", false, "(2,)", &nan));
        assert!(load_npy(&p, None).unwrap_err().to_string().contains("row 2, column 1"));
    }

    #[test]
    fn csv_skips_a_header_and_names_the_bad_cell() {
        let p = temp("g.csv", b"x,y\n1,2\n# comment\n\n3, 4\n");
        assert_eq!(load_csv(&p, Some(2)).unwrap(), Points { dim: 2, values: vec![1.0, 2.0, 3.0, 4.0] });
        let p = temp("h.csv", b"1,2\n3,abc\n");
        let err = load_csv(&p, Some(2)).unwrap_err().to_string();
        assert!(err.contains("line 2, column 2") && err.contains("abc"), "{err}");
        let p = temp("i.csv", b"1,2\n3\n");
        assert!(load_csv(&p, None).unwrap_err().to_string().contains("line 2 has 1 fields"));
        let p = temp("j.csv", b"1,inf\n");
        assert!(load_csv(&p, None).unwrap_err().to_string().contains("non-finite"));
        let missing = std::env::temp_dir().join("frflow-definitely-missing.csv");
        assert!(matches!(load_points(&missing, None), Err(Error::Data { .. })));
    }

    #[test]
    fn generators_are_seeded_and_shaped() {
        let cs = [
            Component { weight: 1.0, mean: vec![-1.0, 0.0], std: 0.1 },
            Component { weight: 3.0, mean: vec![1.0, 0.0], std: 0.0 },
        ];
        let a = gaussian_mixture_sample(&cs, 1000, 0.0, 7).unwrap();
        assert_eq!(a, gaussian_mixture_sample(&cs, 1000, 0.0, 7).unwrap());
        assert_eq!((a.dim, a.len()), (2, 1000));
        // The atom at (1, 0) has weight 3/4: about 750 ± 3·√(1000·3/16) ≈ 41 rows sit exactly on it.
        let atoms = (0..a.len()).filter(|&k| a.row(k) == [1.0, 0.0]).count();
        assert!((709..=791).contains(&atoms), "{atoms}");
        let (z, y) = bumps_regression(500, 0.0, 3).unwrap();
        assert_eq!((z.dim, z.len(), y.len()), (1, 500, 500));
        assert!(z.values.iter().all(|v| (-4.0..=4.0).contains(v)));
        assert!((bumps_function(0.0) - (-1.0 + 2.0 * (-4.0f64).exp())).abs() < 1e-15);
        assert!(bumps_regression(0, 0.0, 3).is_err());
        assert!(gaussian_mixture_sample(&cs, 10, f64::NAN, 3).is_err());
    }
}
