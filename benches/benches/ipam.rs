//! Bench `ipam` (not written yet).
fn main() {}
