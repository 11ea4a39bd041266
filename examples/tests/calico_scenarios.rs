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

/// Every Calico record (including the extended matches: notPorts, notSelector, notNets,
/// selector with nets, destination conditions) runs against the kernel (virtual node, Engine-programmed nftables, real
/// connections) with the same results as the evaluator, in both routing modes.
#[test]
fn calico_scenarios_pass_in_the_kernel() {
    cnet_testsupport::require_priv!();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios/calico-policy.json");
    let records = read_records(&path).expect("scenario file parses");
    let expected = run_records(&records, &mut EvaluatorOracle, &RunOptions::default())
        .totals()
        .0;
    for mode in [
        cnet_examples::lab::LabMode::Bridge,
        cnet_examples::lab::LabMode::Transparent,
    ] {
        let report =
            cnet_examples::lab::run_records_parallel(&records, mode, &RunOptions::default());
        let text = report.render(true);
        let (passed, failed, skipped) = report.totals();
        // Only probes to hosts outside the cluster are skipped (the lab has none).
        let skipped_external = text.matches("external hosts are not simulated").count();
        assert_eq!(
            (failed, skipped),
            (0, skipped_external),
            "{mode:?}:\n{text}"
        );
        assert_eq!(passed + skipped, expected, "{mode:?}:\n{text}");
        assert!(passed >= expected - 3, "{mode:?}:\n{text}");
    }
}

/// The other scenario files written from the Calico and network-policy-api documents:
/// every selector operator, extended rule fields, hostNetwork pods, ANP/BANP and
/// ClusterNetworkPolicy. Evaluator first, then the kernel in both modes, same verdicts
/// (records with pods on two nodes are skipped by the single-node lab).
const MORE: [&str; 3] = [
    "calico-selectors.json",
    "calico-extended.json",
    "admin-network-policy.json",
];

#[test]
fn more_scenarios_pass_with_the_evaluator() {
    for f in MORE {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("scenarios")
            .join(f);
        let records = read_records(&path).expect("scenario file parses");
        assert!(
            records.iter().all(|r| matches!(r, RecordInput::Ok(_))),
            "{f}"
        );
        let report = run_records(&records, &mut EvaluatorOracle, &RunOptions::default());
        let text = report.render(true);
        let (passed, failed, skipped) = report.totals();
        assert_eq!((failed, skipped), (0, 0), "{f}:\n{text}");
        assert!(passed > 0, "{f}:\n{text}");
    }
}

#[test]
fn more_scenarios_pass_in_the_kernel() {
    cnet_testsupport::require_priv!();
    for f in MORE {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("scenarios")
            .join(f);
        let records = read_records(&path).expect("scenario file parses");
        for mode in [
            cnet_examples::lab::LabMode::Bridge,
            cnet_examples::lab::LabMode::Transparent,
        ] {
            let report =
                cnet_examples::lab::run_records_parallel(&records, mode, &RunOptions::default());
            let text = report.render(true);
            let (passed, failed, skipped) = report.totals();
            // Only multi-node records are skipped (the lab builds one node).
            let multi_node = text
                .matches("the multi-node lab (underlay) is not built")
                .count();
            assert_eq!((failed, skipped), (0, multi_node), "{f} {mode:?}:\n{text}");
            assert!(passed > 0, "{f} {mode:?}:\n{text}");
        }
    }
}
