//! The suite report: a text table (printed), a Markdown report with the issue-7 targets, and
//! SVG plots (program time vs pods per engine; ADD latency distributions), all rendered from
//! [`Record`]s. Pure: the runner does the IO.
//!
//! ```
//! use cnet_benches::record::Record;
//! use cnet_benches::report::{text_table, Machine, markdown, RunInfo};
//! let a = Record::from_samples("setup", "concurrency 1", "cnet", "add_latency", "ms", &[1.0]).unwrap();
//! let mut b = Record::from_samples("setup", "concurrency 1", "ref", "add_latency", "ms", &[4.0]).unwrap();
//! b.reference = true;
//! let recs = vec![a, b];
//! assert!(text_table(&recs).contains("0.250x"));
//! let md = markdown(&recs, &Machine::default(), &RunInfo::default());
//! assert!(md.contains("ratios are the result"));
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::record::{Better, Record};

mod plot;
pub use plot::{add_latency_svgs, program_time_svg};

/// Where the report was measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Machine {
    /// Online CPUs (`nproc`).
    pub cores: usize,
    /// `uname -srm`.
    pub kernel: String,
    /// UTC date and time of the run.
    pub date: String,
    /// `/proc/loadavg` at the start and at the end.
    pub load_start: String,
    /// See `load_start`.
    pub load_end: String,
}

/// What ran: profile, each bench program's status and duration, captured output of programs
/// that recorded nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunInfo {
    /// `quick` or `full`.
    pub profile: String,
    /// (program, status text, seconds).
    pub programs: Vec<(String, String, f64)>,
    /// (program, stdout) for programs that wrote no records.
    pub raw: Vec<(String, String)>,
    /// Plot files written next to the report (relative names).
    pub plots: Vec<String>,
}

fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 0.1 {
        format!("{v:.3}")
    } else {
        format!("{v:.4}")
    }
}

/// Ratio of each record's median to its group's (bench, case, metric) reference, if any.
pub fn ratios(records: &[Record]) -> Vec<Option<f64>> {
    let mut refs: BTreeMap<(&str, &str, &str), f64> = BTreeMap::new();
    for r in records.iter().filter(|r| r.reference) {
        refs.insert((&r.bench, &r.case, &r.metric), r.median);
    }
    records
        .iter()
        .map(|r| {
            refs.get(&(r.bench.as_str(), r.case.as_str(), r.metric.as_str()))
                .filter(|d| **d != 0.0)
                .map(|d| r.median / d)
        })
        .collect()
}

fn ratio_text(r: &Record, ratio: Option<f64>) -> String {
    match ratio {
        _ if r.reference => "ref".into(),
        Some(x) => format!("{}x", fmt_num(x)),
        None => String::new(),
    }
}

/// A fixed-width table: bench, case, metric, engine, median, min-max, n, ratio to reference.
pub fn text_table(records: &[Record]) -> String {
    let ratios = ratios(records);
    let rows: Vec<[String; 7]> = records
        .iter()
        .zip(&ratios)
        .map(|(r, q)| {
            [
                format!("{}: {}", r.bench, r.case),
                r.metric.clone(),
                r.engine.clone(),
                format!("{} {}", fmt_num(r.median), r.unit),
                format!("{}-{}", fmt_num(r.min), fmt_num(r.max)),
                r.n.to_string(),
                ratio_text(r, *q),
            ]
        })
        .collect();
    let head = [
        "bench: case",
        "metric",
        "engine",
        "median",
        "min-max",
        "n",
        "ratio",
    ]
    .map(String::from);
    let mut w = [0usize; 7];
    for row in std::iter::once(&head).chain(&rows) {
        for (i, c) in row.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&head).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i >= 3 {
                    format!("{c:>width$}", width = w[i])
                } else {
                    format!("{c:<width$}", width = w[i])
                }
            })
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

/// Which record a target reads: bench, metric, engine, and the cases to try in order (the
/// first one measured is used). No cases: the largest measured case (by the product of its
/// numeric parameters), so a smaller profile still reports something, labelled with its case.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    /// Bench name.
    pub bench: &'static str,
    /// Cases in order of preference.
    pub cases: &'static [&'static str],
    /// Metric.
    pub metric: &'static str,
    /// Engine.
    pub engine: &'static str,
}

/// What a target demands.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// The median is at most `limit` (in the record's unit).
    AtMost(Key, f64),
    /// `num / den` (medians, same case) is at most `limit`.
    RatioAtMost(Key, Key, f64),
    /// `num / den` (medians, same case) is at least `limit`.
    RatioAtLeast(Key, Key, f64),
}

/// One target from issue 7.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// What it says, in words.
    pub name: &'static str,
    /// How it is checked.
    pub check: Check,
}

/// The result of checking a target.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Case the values came from ("" when not measured).
    pub case: String,
    /// Measured value as text.
    pub measured: String,
    /// Met, or missed and by how much, or not measured and why.
    pub verdict: String,
    /// `Some(true)` met, `Some(false)` missed, `None` not measured.
    pub met: Option<bool>,
}

const SETUP_CASES: &[&str] = &["concurrency 1"];
const BIG_POLICY: &[&str] = &["10000 pods x 1000 policies"];
const DATAPLANE: &[&str] = &["tcp throughput"];

/// The targets of issue 7, read from the records the suite's benches write.
pub fn targets() -> Vec<Target> {
    let k = |bench, cases, metric, engine| Key {
        bench,
        cases,
        metric,
        engine,
    };
    let setup = |metric, engine| k("setup", SETUP_CASES, metric, engine);
    let refb = |metric| setup(metric, "ref bridge+host-local");
    vec![
        Target {
            name: "ADD <= 0.3x reference bridge (cnet bridge)",
            check: Check::RatioAtMost(
                setup("add_latency", "cnet bridge"),
                refb("add_latency"),
                0.3,
            ),
        },
        Target {
            name: "ADD <= 0.3x reference bridge (cnet transparent)",
            check: Check::RatioAtMost(
                setup("add_latency", "cnet transparent"),
                refb("add_latency"),
                0.3,
            ),
        },
        Target {
            name: "DEL <= 0.2x reference bridge (cnet bridge)",
            check: Check::RatioAtMost(
                setup("del_latency", "cnet bridge"),
                refb("del_latency"),
                0.2,
            ),
        },
        Target {
            name: "DEL <= 0.2x reference bridge (cnet transparent)",
            check: Check::RatioAtMost(
                setup("del_latency", "cnet transparent"),
                refb("del_latency"),
                0.2,
            ),
        },
        Target {
            name: "full program at 10k pods x 1k policies <= 150 ms",
            check: Check::AtMost(
                k("policy", &BIG_POLICY[..1], "full_program", "cnet nft"),
                150.0,
            ),
        },
        Target {
            name: "full program >= 100x faster than iptables per-pair (a)",
            check: Check::RatioAtLeast(
                k("policy", &[], "full_program", "iptables per-pair"),
                k("policy", &[], "full_program", "cnet nft"),
                100.0,
            ),
        },
        Target {
            name: "one-pod update <= 1 ms (10k x 1k)",
            check: Check::AtMost(k("policy", &BIG_POLICY[..1], "pod_add", "cnet nft"), 1.0),
        },
        Target {
            name: "throughput with the large ruleset >= 95% of no policy",
            check: Check::RatioAtLeast(
                k("dataplane", DATAPLANE, "throughput", "cnet nft"),
                k("dataplane", DATAPLANE, "throughput", "no policy"),
                0.95,
            ),
        },
    ]
}

/// The cases to try for a key, in order.
fn candidate_cases<'a>(key: &'a Key, records: &'a [Record]) -> Vec<&'a str> {
    if !key.cases.is_empty() {
        return key.cases.to_vec();
    }
    let mut found: Vec<(f64, &str)> = records
        .iter()
        .filter(|r| r.bench == key.bench && r.metric == key.metric && r.engine == key.engine)
        .map(|r| (r.params.values().product::<f64>(), r.case.as_str()))
        .collect();
    found.sort_by(|a, b| b.0.total_cmp(&a.0));
    found.into_iter().map(|(_, c)| c).collect()
}

fn find<'a>(records: &'a [Record], key: &Key, case: &str) -> Option<&'a Record> {
    records.iter().find(|r| {
        r.bench == key.bench && r.metric == key.metric && r.engine == key.engine && r.case == case
    })
}

/// Check one target against the records.
pub fn evaluate(t: &Target, records: &[Record]) -> Outcome {
    let missing = |what: String| Outcome {
        case: String::new(),
        measured: "-".into(),
        verdict: format!("not measured ({what})"),
        met: None,
    };
    match &t.check {
        Check::AtMost(key, limit) => {
            let Some((case, r)) = candidate_cases(key, records)
                .into_iter()
                .find_map(|c| find(records, key, c).map(|r| (c, r)))
            else {
                return missing(format!(
                    "no {} of {} in {:?}",
                    key.metric, key.engine, key.cases
                ));
            };
            let met = r.median <= *limit;
            Outcome {
                case: case.into(),
                measured: format!("{} {}", fmt_num(r.median), r.unit),
                verdict: if met {
                    format!("met (goal <= {} {})", fmt_num(*limit), r.unit)
                } else {
                    format!(
                        "missed by {:.1}x (goal <= {} {})",
                        r.median / limit,
                        fmt_num(*limit),
                        r.unit
                    )
                },
                met: Some(met),
            }
        }
        Check::RatioAtMost(num, den, limit) | Check::RatioAtLeast(num, den, limit) => {
            let at_most = matches!(t.check, Check::RatioAtMost(..));
            let Some((case, a, b)) = candidate_cases(num, records)
                .into_iter()
                .find_map(|c| Some((c, find(records, num, c)?, find(records, den, c)?)))
            else {
                return missing(format!(
                    "need {} of {} and {} in one of {:?}",
                    num.metric, num.engine, den.engine, num.cases
                ));
            };
            if b.median == 0.0 {
                return missing("reference is zero".into());
            }
            let q = a.median / b.median;
            let met = if at_most { q <= *limit } else { q >= *limit };
            let goal = format!("{} {}x", if at_most { "<=" } else { ">=" }, fmt_num(*limit));
            let verdict = if met {
                format!("met (goal {goal})")
            } else if at_most {
                format!("missed by {:.1}x (goal {goal})", q / limit)
            } else {
                format!(
                    "missed: {:.0}% short (goal {goal})",
                    100.0 * (1.0 - q / limit)
                )
            };
            Outcome {
                case: case.into(),
                measured: format!(
                    "{}x ({} / {} {})",
                    fmt_num(q),
                    fmt_num(a.median),
                    fmt_num(b.median),
                    a.unit
                ),
                verdict,
                met: Some(met),
            }
        }
    }
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The Markdown report.
pub fn markdown(records: &[Record], m: &Machine, run: &RunInfo) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# cnet benchmark report\n");
    let _ = writeln!(
        o,
        "- date: {}\n- profile: {}\n- machine: {} cores, {}\n- load average (1/5/15 min) at start: {}; at end: {}\n",
        m.date,
        if run.profile.is_empty() {
            "?"
        } else {
            &run.profile
        },
        m.cores,
        m.kernel,
        m.load_start,
        m.load_end
    );
    let _ = writeln!(
        o,
        "> Absolute times on a shared machine are noisy (see the load average): every \
         implementation is measured in the same run, interleaved where it can be, and the \
         **ratios are the result**. Medians are shown with min-max and the number of samples.\n"
    );
    let _ = writeln!(o, "## Targets (issue 7)\n");
    let _ = writeln!(
        o,
        "| target | case | measured | result |\n|---|---|---|---|"
    );
    for t in targets() {
        let out = evaluate(&t, records);
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} |",
            md_cell(t.name),
            md_cell(&out.case),
            md_cell(&out.measured),
            md_cell(&out.verdict)
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "## Results\n");
    let ratios = ratios(records);
    let mut benches: Vec<&str> = Vec::new();
    for r in records {
        if !benches.contains(&r.bench.as_str()) {
            benches.push(&r.bench);
        }
    }
    for b in benches {
        let _ = writeln!(o, "### {b}\n");
        let _ = writeln!(
            o,
            "| case | metric | engine | median | min-max | n | ratio to ref |\n|---|---|---|---:|---:|---:|---:|"
        );
        let mut notes = Vec::new();
        for (r, q) in records.iter().zip(&ratios).filter(|(r, _)| r.bench == b) {
            let arrow = match r.better {
                Better::Lower => "",
                Better::Higher => " (higher is better)",
            };
            let _ = writeln!(
                o,
                "| {} | {}{} | {} | {} {} | {}-{} | {} | {} |",
                md_cell(&r.case),
                md_cell(&r.metric),
                arrow,
                md_cell(&r.engine),
                fmt_num(r.median),
                md_cell(&r.unit),
                fmt_num(r.min),
                fmt_num(r.max),
                r.n,
                ratio_text(r, *q)
            );
            if !r.note.is_empty() {
                notes.push(format!("- {} / {}: {}", r.case, r.engine, r.note));
            }
        }
        notes.dedup();
        if !notes.is_empty() {
            let _ = writeln!(o, "\n{}", notes.join("\n"));
        }
        let _ = writeln!(o);
    }
    if !run.plots.is_empty() {
        let _ = writeln!(o, "## Plots\n");
        for p in &run.plots {
            let _ = writeln!(o, "![{p}]({p})\n");
        }
    }
    if !run.programs.is_empty() {
        let _ = writeln!(
            o,
            "## Bench programs\n\n| program | status | seconds |\n|---|---|---:|"
        );
        for (p, s, secs) in &run.programs {
            let _ = writeln!(o, "| {} | {} | {:.1} |", md_cell(p), md_cell(s), secs);
        }
        let _ = writeln!(o);
    }
    if !run.raw.is_empty() {
        let _ = writeln!(
            o,
            "## Output of programs that record no machine-readable results\n"
        );
        for (p, text) in &run.raw {
            let _ = writeln!(o, "### {p}\n\n```text\n{}\n```\n", text.trim_end());
        }
    }
    o
}

#[cfg(test)]
mod tests;
