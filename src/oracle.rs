//! Closed-form solutions of SPEC §7 (being written).
