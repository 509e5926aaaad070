//! One typed error for the whole crate.
//!
//! Bad input names the field, the value and what is allowed; numerical failures name the step
//! and the particle, so a user can find the cause without a debugger.

/// Every way an frflow call can fail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration or API value is outside what the method allows.
    #[error("invalid value for `{field}`: {value} ({allowed})")]
    Invalid {
        /// The config key or API field, e.g. `kernel.epsilon`.
        field: String,
        /// The offending value as the user wrote it.
        value: String,
        /// What would have been accepted.
        allowed: String,
    },
    /// The TOML text could not be parsed or has unknown keys.
    #[error("config {path}: {message}")]
    Config {
        /// The file (or `<string>` for in-memory text).
        path: String,
        /// The parser's message, which names the key and line.
        message: String,
    },
    /// A data file is missing, unreadable or has the wrong shape.
    #[error("data file {path}: {message}")]
    Data {
        /// The file that was read.
        path: String,
        /// What was wrong with it.
        message: String,
    },
    /// An explicit Euler step would make a weight non-positive (h·a_i ≥ 1).
    #[error(
        "Euler step {step} would make weight {particle} non-positive: h·a_i = {h_times_rate:.6} ≥ 1 \
         (h = {h:e}); use a smaller h, h = \"auto\", or the exponential stepper"
    )]
    Positivity {
        /// The 0-based index of the step that failed (the state after `step` steps was valid).
        step: u64,
        /// The particle whose weight would become non-positive.
        particle: usize,
        /// The offending product h·a_i.
        h_times_rate: f64,
        /// The step size.
        h: f64,
    },
    /// A weight or rate became NaN or infinite.
    #[error(
        "step {step}: {quantity} of particle {particle} is not finite ({value}); inputs that cause this: an \
         extreme kernel.epsilon or sigma, an initial std or reference mean far from the domain's scale, or chi2 \
         with a far reference"
    )]
    NonFinite {
        /// The 0-based index of the step that produced it.
        step: u64,
        /// The particle concerned.
        particle: usize,
        /// Which quantity (`rate`, `log-weight`).
        quantity: &'static str,
        /// The value found.
        value: f64,
    },
    /// A GPU could not be found, created or used.
    #[error("GPU: {message}")]
    Gpu {
        /// What failed, ending with the underlying error's own message where there is one.
        message: String,
        /// The wgpu error behind it (a validation, out-of-memory or polling error, a failed
        /// device request or buffer map), where there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },
    /// The problem does not fit in the device's memory or limits.
    #[error("{what} needs {needed} bytes but the device allows {limit}; the largest N that fits is {max_n}")]
    TooLarge {
        /// Which buffer or binding.
        what: String,
        /// Bytes required.
        needed: u64,
        /// The device limit in bytes.
        limit: u64,
        /// The largest particle count that would fit.
        max_n: u64,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint does not belong to this run or is damaged.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint directory.
        path: String,
        /// What was wrong.
        message: String,
    },
    /// An output directory is in use by another process, or holds another run.
    #[error("output directory {path}: {message}")]
    Output {
        /// The directory.
        path: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// A run of a sweep failed: which point of the sweep, and why.
    #[error("sweep point {point}: {source}")]
    SweepPoint {
        /// The point, e.g. `variant A, N = 64, replicate 0`.
        point: String,
        /// What went wrong there.
        #[source]
        source: Box<Error>,
    },
    /// A diagnostic came out NaN or infinite, or the mass drifted from 1.
    #[error("step {step}: {quantity} {cause} (value {value:e})")]
    NonFiniteResult {
        /// The step whose diagnostics contain it.
        step: u64,
        /// Which quantity (e.g. `f_energy`, `variance_0`).
        quantity: String,
        /// The value found.
        value: f64,
        /// What is wrong and its likely cause.
        cause: String,
    },
}

/// A number printed in more than 24 characters (f64's `Display` writes 1e300 as 301 digits) in
/// exponent notation; anything else unchanged.
fn shorten_number(text: String) -> String {
    match text.parse::<f64>() {
        Ok(v) if text.len() > 24 => format!("{v:e}"),
        _ => text,
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// [`Error::Invalid`] for `field` unless `value` is a finite number > 0.
pub(crate) fn check_positive(field: impl Into<String>, value: f64) -> Result<()> {
    if value.is_finite() && value > 0.0 { Ok(()) } else { Err(Error::invalid(field, value, "a finite number > 0")) }
}

/// [`Error::Invalid`] naming the first NaN or infinite entry of `values`, as `field[i]`.
pub(crate) fn check_all_finite(field: &str, values: &[f64]) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(Error::invalid(format!("{field}[{i}]"), values[i], "finite numbers only")),
        None => Ok(()),
    }
}

impl Error {
    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(field: impl Into<String>, value: impl std::fmt::Display, allowed: impl Into<String>) -> Self {
        Error::Invalid { field: field.into(), value: shorten_number(value.to_string()), allowed: allowed.into() }
    }

    /// An [`Error::Gpu`] with no underlying error.
    pub fn gpu(message: impl Into<String>) -> Self {
        Error::Gpu { message: message.into(), source: None }
    }

    /// An [`Error::Gpu`] for `what` failing because of `source`: the message reads
    /// `{what}: {source}`, and [`std::error::Error::source`] returns `source`.
    pub fn gpu_from(what: impl std::fmt::Display, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Gpu { message: format!("{what}: {source}"), source: Some(Box::new(source)) }
    }

    /// Shorthand for [`Error::Io`].
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().display().to_string(), source }
    }
}
