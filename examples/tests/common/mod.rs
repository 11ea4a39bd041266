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

/// Probes for a generated cluster-probe-matrix record: every ordered pair of distinct pods
/// (each a JSON object with `namespace` and `name`) on 80/TCP, 81/UDP and 81/TCP, all
/// expecting `true` (the evaluator's verdict is the oracle, not the expectation).
pub fn all_pairs_probes(pods: &[serde_json::Value]) -> Vec<serde_json::Value> {
    let name = |p: &serde_json::Value| {
        format!(
            "{}/{}",
            p["namespace"].as_str().unwrap_or(""),
            p["name"].as_str().unwrap_or("")
        )
    };
    let mut probes = Vec::new();
    for p in pods {
        for q in pods {
            let (from, to) = (name(p), name(q));
            if from == to {
                continue;
            }
            for (port, proto) in [(80, "TCP"), (81, "UDP"), (81, "TCP")] {
                probes.push(serde_json::json!({"from": from, "to": to, "port": port,
                                               "protocol": proto, "expect": true}));
            }
        }
    }
    probes
}

/// Run `prep` through the evaluator and the kernel lab in `mode` and fail the proptest case
/// unless every probe's outcome agrees (the message names the flow, the evaluator's
/// explanation and `rec`'s policies). Returns (flows, dropped) of the kernel run.
#[allow(clippy::unwrap_used)]
pub fn evaluator_equals_kernel(
    mode: cnet_examples::lab::LabMode,
    prep: &cnet_examples::runner::PreparedRecord,
    rec: &serde_json::Value,
) -> Result<(usize, usize), proptest::test_runner::TestCaseError> {
    use cnet_examples::runner::Oracle;
    let want = cnet_examples::runner::EvaluatorOracle.run(prep).unwrap();
    let got = cnet_examples::lab::KernelOracle::new(mode)
        .run(prep)
        .unwrap();
    let dropped = got
        .iter()
        .filter(|g| g.outcome == cnet_examples::runner::Outcome::Dropped)
        .count();
    for ((p, w), g) in prep.probes.iter().zip(&want).zip(&got) {
        proptest::prop_assert_eq!(
            &w.outcome,
            &g.outcome,
            "{:?}: {} -> {}:{}/{}\n{}\npolicies: {}",
            mode,
            p.from,
            p.to,
            p.port,
            p.protocol,
            w.explanation.clone().unwrap_or_default(),
            serde_json::to_string(&rec[0]["policies"]).unwrap()
        );
    }
    Ok((prep.probes.len(), dropped))
}

/// Run `cases` records from `record` (each a one-record JSON array of a cluster probe matrix)
/// through [`evaluator_equals_kernel`] in `mode`, failing cases persisted to `regressions`.
/// A generated record that does not parse panics; one that `prepare` skips panics when
/// `must_run`, else is passed over. Returns (records run, flows agreed, flows dropped).
#[allow(clippy::unwrap_used)]
pub fn differential(
    mode: cnet_examples::lab::LabMode,
    cases: u32,
    regressions: &'static str,
    record: impl proptest::strategy::Strategy<Value = serde_json::Value>,
    must_run: bool,
) -> (usize, usize, usize) {
    use cnet_examples::runner::{Preparation, RunOptions, prepare};
    use cnet_examples::scenario::{RecordInput, parse_records};
    use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(regressions))),
        ..Config::default()
    });
    let records_run = AtomicUsize::new(0);
    let flows = AtomicUsize::new(0);
    let dropped = AtomicUsize::new(0);
    runner
        .run(&record, |rec| {
            let text = rec.to_string();
            let records = parse_records(&text, "generated").unwrap();
            let RecordInput::Ok(r) = &records[0] else {
                panic!("generated record is malformed: {text}");
            };
            let prep = match prepare(r, &RunOptions::default()) {
                Preparation::Ready(p) => p,
                Preparation::Skipped { reason, .. } if must_run => {
                    panic!("generated record not runnable: {reason}\n{text}")
                }
                Preparation::Skipped { .. } => return Ok(()),
            };
            let (f, n) = evaluator_equals_kernel(mode, &prep, &rec)?;
            records_run.fetch_add(1, Ordering::SeqCst);
            flows.fetch_add(f, Ordering::SeqCst);
            dropped.fetch_add(n, Ordering::SeqCst);
            Ok(())
        })
        .unwrap();
    (
        records_run.load(Ordering::SeqCst),
        flows.load(Ordering::SeqCst),
        dropped.load(Ordering::SeqCst),
    )
}
