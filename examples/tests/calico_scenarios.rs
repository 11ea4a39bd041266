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
