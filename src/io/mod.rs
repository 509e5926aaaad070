//! Reading and writing data files and outputs.

pub mod data;
pub mod guard;
pub mod output;
