//! Shared pieces of the conformance tests: where the shared scenario files are, and the check
//! that a kernel run passed every probe it could run.
#![allow(dead_code)]

use cnet_examples::runner::Report;
use std::path::PathBuf;

/// A file of `../shared/conformance/` (the `shared` folder beside the repository).
pub fn shared_file(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/conformance")
        .join(name);
    assert!(
        p.is_file(),
        "conformance scenarios not found at {}: the `shared` folder must sit beside the repository",
        p.display()
    );
    p
}

/// Assert that a kernel run failed nothing, ran at least `min_passed` probes and skipped only
/// SCTP probes (this kernel has no SCTP); returns (passed, skipped).
pub fn assert_passed_skipping_only_sctp(
    report: &Report,
    label: &str,
    min_passed: usize,
) -> (usize, usize) {
    let text = report.render(true);
    let (passed, failed, skipped) = report.totals();
    assert_eq!(failed, 0, "{label}:\n{text}");
    assert!(
        passed >= min_passed,
        "{label}: only {passed} probes ran:\n{text}"
    );
    for r in &report.records {
        for n in &r.notes {
            assert!(
                !n.starts_with("probe skipped") || n.contains("SCTP"),
                "{label}: unexpected skip in {}: {n}",
                r.id
            );
        }
    }
    (passed, skipped)
}
