//! Conformance scenario runner (not written yet).
fn main() {}
