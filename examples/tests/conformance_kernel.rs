//! The shared Kubernetes e2e conformance file against the kernel: a virtual node per record,
//! pods attached with cnet-route, policies programmed by the cnet-policy engine, real
//! connections. Every runnable probe must pass, in both routing modes; the only skipped
//! probes are SCTP (no SCTP in this kernel).
#![allow(clippy::unwrap_used)]

use cnet_examples::lab::{LabMode, run_records_parallel};
use cnet_examples::runner::RunOptions;
use cnet_examples::scenario::read_records;
use cnet_testsupport::require_priv;
use std::path::Path;

fn run(mode: LabMode) {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/k8s-netpol-e2e.json");
    let records = read_records(&path).unwrap();
    let report = run_records_parallel(&records, mode, &RunOptions::default());
    let text = report.render(true);
    let (passed, failed, skipped) = report.totals();
    assert_eq!(failed, 0, "{mode:?}:\n{text}");
    assert!(passed >= 400, "{mode:?}: only {passed} probes ran:\n{text}");
    for r in &report.records {
        for n in &r.notes {
            assert!(
                !n.starts_with("probe skipped") || n.contains("SCTP"),
                "{mode:?}: unexpected skip in {}: {n}",
                r.id
            );
        }
    }
    println!("{mode:?}: {passed} passed, {skipped} skipped (SCTP)");
}

#[test]
fn k8s_e2e_transparent_mode() {
    require_priv!();
    run(LabMode::Transparent);
}

#[test]
fn k8s_e2e_bridge_mode() {
    require_priv!();
    run(LabMode::Bridge);
}
