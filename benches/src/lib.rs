//! Side-by-side measurements of cnet against its peers: shared helpers for the bench programs.

/// True when the program was started by `cargo bench` (which passes `--bench`); false under
/// `cargo test`, where a bench runs a tiny smoke pass instead of the measurement.
pub fn measuring() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Median of a sample (sorted in place); `None` when empty.
pub fn median(samples: &mut [f64]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    let n = samples.len();
    Some(if n % 2 == 1 {
        samples[n / 2]
    } else {
        (samples[n / 2 - 1] + samples[n / 2]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn median_odd_even_empty() {
        assert_eq!(super::median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(super::median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(super::median(&mut []), None);
    }
}
