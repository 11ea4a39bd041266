//! Bench `route` (not written yet).
fn main() {}
