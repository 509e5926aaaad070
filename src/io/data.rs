//! Data sets: .npy and CSV readers, generators (being written).
