//! cnet's own Calico scenarios (examples/scenarios/calico-policy.json, expectations from the
//! Calico policy reference, cited in each record's notes) pass with the evaluator oracle.

use cnet_examples::runner::{EvaluatorOracle, RunOptions, run_records};
use cnet_examples::scenario::{RecordInput, read_records};
use std::path::PathBuf;

#[test]
fn calico_scenarios_pass_with_the_evaluator() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios/calico-policy.json");
    let records = read_records(&path).expect("scenario file parses");
    assert!(records.iter().all(|r| matches!(r, RecordInput::Ok(_))));
    let report = run_records(&records, &mut EvaluatorOracle, &RunOptions::default());
    let text = report.render(true);
    let (passed, failed, skipped) = report.totals();
    assert_eq!((failed, skipped), (0, 0), "{text}");
    assert!(passed >= 20, "{text}");
}

/// The Calico records whose rules use only the plain peer/port form run against the kernel
/// (virtual node, Engine-programmed nftables, real connections) with the same results; the
/// others use extended matches the compiler refuses (fail closed, reported as errors), so
/// they are left out here and listed in the report.
#[test]
fn calico_scenarios_with_plain_rules_pass_in_the_kernel() {
    cnet_testsupport::require_priv!();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios/calico-policy.json");
    let records: Vec<RecordInput> = read_records(&path)
        .expect("scenario file parses")
        .into_iter()
        .filter(|r| match r {
            RecordInput::Ok(rec) => {
                ["calico-001", "calico-005", "calico-006"].contains(&rec.id.as_str())
            }
            _ => false,
        })
        .collect();
    assert_eq!(records.len(), 3);
    for mode in [
        cnet_examples::lab::LabMode::Bridge,
        cnet_examples::lab::LabMode::Transparent,
    ] {
        let report =
            cnet_examples::lab::run_records_parallel(&records, mode, &RunOptions::default());
        let text = report.render(true);
        let (passed, failed, _) = report.totals();
        assert_eq!(failed, 0, "{mode:?}:\n{text}");
        assert_eq!(passed, 11, "{mode:?}:\n{text}");
    }
}
