//! frflow: kernelized Fisher–Rao gradient flows for entropic mean-field optimisation.
#![warn(missing_docs)]

pub mod engine;
pub mod error;
pub mod flow;
pub mod model;
pub mod particles;
pub mod stepper;

pub use error::{Error, Result};
