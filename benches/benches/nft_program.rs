//! Bench `nft_program` (not written yet).
fn main() {}
