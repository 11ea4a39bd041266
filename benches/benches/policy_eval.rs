//! Bench `policy_eval` (not written yet).
fn main() {}
