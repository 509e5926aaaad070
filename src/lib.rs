//! frflow: kernelized Fisher–Rao gradient flows for entropic mean-field optimisation.
#![warn(missing_docs)]

pub mod config;
pub mod engine;
pub mod error;
pub mod flow;
pub mod io;
pub mod model;
pub mod oracle;
pub mod particles;
pub mod stepper;

pub use error::{Error, Result};
