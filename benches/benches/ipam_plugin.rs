//! Bench `ipam_plugin` (not written yet).
fn main() {}
