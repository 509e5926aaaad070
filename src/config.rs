//! TOML configuration (being written).
