use super::*;
use crate::record::Record;

fn rec(bench: &str, case: &str, engine: &str, metric: &str, v: &[f64]) -> Record {
    Record::from_samples(bench, case, engine, metric, "ms", v).unwrap()
}

/// A small fixed result set: setup latencies (with samples), policy programming at two
/// scales, dataplane throughput.
fn fixture() -> Vec<Record> {
    let mut v = Vec::new();
    let mut r = rec(
        "setup",
        "concurrency 1",
        "ref bridge+host-local",
        "add_latency",
        &[40.0, 50.0, 60.0],
    );
    r.reference = true;
    r.samples = vec![40.0, 50.0, 60.0];
    v.push(r);
    let mut r = rec(
        "setup",
        "concurrency 1",
        "cnet bridge",
        "add_latency",
        &[9.0, 10.0, 11.0],
    );
    r.samples = vec![9.0, 10.0, 11.0];
    v.push(r);
    let mut r = rec(
        "setup",
        "concurrency 1",
        "ref bridge+host-local",
        "del_latency",
        &[20.0],
    );
    r.reference = true;
    v.push(r);
    v.push(rec(
        "setup",
        "concurrency 1",
        "cnet bridge",
        "del_latency",
        &[5.0],
    ));
    for (pods, cnet, pair) in [(100.0, 2.0, 50.0), (1000.0, 8.0, 4000.0)] {
        let case = format!("{pods} pods x 10 policies");
        let case = case.replace(".0", "");
        for (e, t) in [("cnet nft", cnet), ("iptables per-pair", pair)] {
            let mut r = rec("policy", &case, e, "full_program", &[t]);
            r.params.insert("pods".into(), pods);
            r.params.insert("policies".into(), 10.0);
            r.reference = e != "cnet nft";
            v.push(r);
        }
    }
    let mut r = rec(
        "dataplane",
        "tcp throughput",
        "no policy",
        "throughput",
        &[10.0],
    );
    r.reference = true;
    r.unit = "Gbit/s".into();
    v.push(r);
    let mut r = rec(
        "dataplane",
        "tcp throughput",
        "cnet nft",
        "throughput",
        &[9.0],
    );
    r.unit = "Gbit/s".into();
    v.push(r);
    v
}

#[test]
fn ratios_against_the_group_reference() {
    let v = fixture();
    let q = ratios(&v);
    assert_eq!(q[1], Some(0.2));
    assert_eq!(q[3], Some(0.25));
    let t = text_table(&v);
    assert!(t.contains("0.200x"), "{t}");
    assert!(t.contains("ref"));
    assert!(t.lines().count() == v.len() + 1);
}

#[test]
fn targets_met_missed_and_unmeasured() {
    let v = fixture();
    let by_name = |n: &str| {
        let t = targets()
            .into_iter()
            .find(|t| t.name.starts_with(n))
            .unwrap();
        evaluate(&t, &v)
    };
    let add = by_name("ADD <= 0.3x reference bridge (cnet bridge)");
    assert_eq!(add.met, Some(true), "{add:?}");
    let del = by_name("DEL <= 0.2x reference bridge (cnet bridge)");
    assert_eq!(del.met, Some(false));
    assert!(del.verdict.contains("missed by 1.2x"), "{del:?}");
    let tp = by_name("throughput");
    assert_eq!(tp.met, Some(false));
    assert!(tp.verdict.contains("5% short"), "{tp:?}");
    // Falls back to the largest scale measured for both, and says which.
    let ratio = by_name("full program >= 100x");
    assert_eq!(ratio.case, "1000 pods x 10 policies");
    assert_eq!(ratio.met, Some(true));
    let abs = by_name("full program at 10k");
    assert_eq!(abs.met, None);
    assert!(abs.verdict.starts_with("not measured"));
    let tr = by_name("ADD <= 0.3x reference bridge (cnet transparent)");
    assert_eq!(tr.met, None);
}

#[test]
fn markdown_report_content() {
    let v = fixture();
    let m = Machine {
        cores: 2,
        kernel: "Linux 6.18 x86_64".into(),
        date: "2026-11-30 00:00 UTC".into(),
        load_start: "1.0 1.0 1.0".into(),
        load_end: "2.0 2.0 2.0".into(),
    };
    let run = RunInfo {
        profile: "quick".into(),
        programs: vec![("route".into(), "ok".into(), 1.5)],
        raw: vec![("nft_program".into(), "some output".into())],
        plots: vec!["program_time.svg".into()],
    };
    let md = markdown(&v, &m, &run);
    for want in [
        "2 cores, Linux 6.18 x86_64",
        "ratios are the result",
        "| DEL <= 0.2x reference bridge (cnet bridge) | concurrency 1 | 0.250x (5.000 / 20.0 ms) | missed by 1.2x (goal <= 0.200x) |",
        "### setup",
        "### policy",
        "| tcp throughput | throughput | cnet nft | 9.000 Gbit/s | 9.000-9.000 | 1 | 0.900x |",
        "![program_time.svg](program_time.svg)",
        "| route | ok | 1.5 |",
        "some output",
        "not measured",
    ] {
        assert!(md.contains(want), "missing {want:?} in\n{md}");
    }
}

#[test]
fn svg_plots_render() {
    let v = fixture();
    let svg = program_time_svg(&v).unwrap().unwrap();
    assert!(svg.starts_with("<svg") || svg.contains("<svg"));
    assert!(svg.contains("cnet nft, 10 policies"));
    assert!(svg.contains("iptables per-pair, 10 policies"));
    assert!(svg.contains("<polyline") || svg.contains("<path"));
    let cdfs = add_latency_svgs(&v).unwrap();
    assert_eq!(cdfs.len(), 1);
    assert_eq!(cdfs[0].0, "concurrency 1");
    assert!(cdfs[0].1.contains("cnet bridge (median 10.000 ms)"));
    assert!(program_time_svg(&v[..2]).unwrap().is_none());
}
