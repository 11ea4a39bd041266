//! Machine-readable results: every bench program appends one JSON object per line
//! ([`Record`]) to the file named by `CNET_BENCH_OUT` when that variable is set, and prints a
//! human table as before. The suite runner (`cnet-bench`, driven by `./scripts/bench`) reads the
//! lines back and writes the report.
//!
//! ```
//! use cnet_benches::record::Recorder;
//! let mut rec = Recorder::new("example");
//! rec.samples("1k pods", "cnet", "add_latency", "ms", &[1.0, 2.0, 3.0]);
//! rec.samples("1k pods", "reference", "add_latency", "ms", &[4.0, 6.0]).reference();
//! let r = &rec.records()[0];
//! assert_eq!((r.median, r.min, r.max, r.n), (2.0, 1.0, 3.0, 3));
//! rec.print_table();
//! ```

use std::collections::BTreeMap;
use std::io::Write;

use serde::{Deserialize, Serialize};

/// Environment variable naming the JSON-lines file results are appended to.
pub const OUT_ENV: &str = "CNET_BENCH_OUT";

/// Which direction of a metric is better (used for ratios and targets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    /// Times, memory, rule counts.
    #[default]
    Lower,
    /// Rates, throughput.
    Higher,
}

/// One measured quantity of one implementation in one case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Bench program (`route`, `setup`, `policy`, …).
    pub bench: String,
    /// What was measured under which conditions (`concurrency 4`, `10000 pods x 1000 policies`).
    pub case: String,
    /// The implementation or engine (`cnet bridge`, `ref bridge+host-local`, `iptables per-pair`).
    pub engine: String,
    /// The quantity (`add_latency`, `full_program`, `throughput`).
    pub metric: String,
    /// Its unit (`ms`, `pods/s`, `Gbit/s`).
    pub unit: String,
    /// Median of the samples.
    pub median: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
    /// Number of samples.
    pub n: usize,
    /// Which direction is better.
    #[serde(default)]
    pub better: Better,
    /// This engine is the one others in the same bench, case and metric are compared with.
    #[serde(default)]
    pub reference: bool,
    /// Numeric parameters of the case (`pods`, `policies`, `concurrency`) for plots.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, f64>,
    /// Raw samples, kept where a plot needs the distribution.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<f64>,
    /// Free-text note (why a value is missing, what it includes).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

impl Record {
    /// Summarise samples; `None` when there are none or any is not finite.
    pub fn from_samples(
        bench: &str,
        case: &str,
        engine: &str,
        metric: &str,
        unit: &str,
        samples: &[f64],
    ) -> Option<Record> {
        if samples.is_empty() || samples.iter().any(|s| !s.is_finite()) {
            return None;
        }
        let mut sorted = samples.to_vec();
        let median = crate::median(&mut sorted)?;
        Some(Record {
            bench: bench.into(),
            case: case.into(),
            engine: engine.into(),
            metric: metric.into(),
            unit: unit.into(),
            median,
            min: sorted[0],
            max: sorted[sorted.len() - 1],
            n: sorted.len(),
            better: Better::Lower,
            reference: false,
            params: BTreeMap::new(),
            samples: Vec::new(),
            note: String::new(),
        })
    }

    /// The record as one JSON line (no trailing newline).
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Parse JSON lines written by [`Recorder`]s; lines that are not records are skipped.
pub fn parse_lines(text: &str) -> Vec<Record> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Collects the records of one bench program, appends each to `CNET_BENCH_OUT` as it is
/// added, and prints them as a table.
#[derive(Debug)]
pub struct Recorder {
    bench: String,
    records: Vec<Record>,
}

/// A handle on the record just added, to refine it before it is written.
#[derive(Debug)]
pub struct Entry<'a> {
    rec: Option<&'a mut Record>,
    written: bool,
}

impl Entry<'_> {
    fn with(mut self, f: impl FnOnce(&mut Record)) -> Self {
        if let Some(r) = self.rec.as_deref_mut() {
            f(r);
        }
        self
    }

    /// Mark this engine as the reference others are compared with.
    pub fn reference(self) -> Self {
        self.with(|r| r.reference = true)
    }

    /// Mark this engine as the reference when `yes`.
    pub fn reference_if(self, yes: bool) -> Self {
        self.with(|r| r.reference |= yes)
    }

    /// Higher is better (rates).
    pub fn higher(self) -> Self {
        self.with(|r| r.better = Better::Higher)
    }

    /// Add a numeric parameter of the case.
    pub fn param(self, key: &str, value: f64) -> Self {
        self.with(|r| {
            r.params.insert(key.into(), value);
        })
    }

    /// Keep the raw samples (for distribution plots).
    pub fn keep_samples(self, samples: &[f64]) -> Self {
        self.with(|r| r.samples = samples.to_vec())
    }

    /// Attach a note.
    pub fn note(self, note: &str) -> Self {
        self.with(|r| r.note = note.into())
    }
}

impl Drop for Entry<'_> {
    fn drop(&mut self) {
        if !self.written
            && let Some(r) = self.rec.as_deref()
        {
            append(r);
            self.written = true;
        }
    }
}

/// Append one record to `CNET_BENCH_OUT` (nothing when unset; a write error is printed, not
/// fatal: the human table is still printed).
pub fn append(r: &Record) {
    let Ok(path) = std::env::var(OUT_ENV) else {
        return;
    };
    let res = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| writeln!(f, "{}", r.to_json_line()));
    if let Err(e) = res {
        eprintln!("record: cannot append to {path}: {e}");
    }
}

impl Recorder {
    /// A recorder for the bench program `bench`.
    pub fn new(bench: &str) -> Recorder {
        Recorder {
            bench: bench.into(),
            records: Vec::new(),
        }
    }

    /// Record a summary of `samples`; refine it through the returned [`Entry`] (written when
    /// the entry is dropped). Empty or non-finite samples record nothing.
    pub fn samples(
        &mut self,
        case: &str,
        engine: &str,
        metric: &str,
        unit: &str,
        samples: &[f64],
    ) -> Entry<'_> {
        match Record::from_samples(&self.bench, case, engine, metric, unit, samples) {
            Some(r) => {
                self.records.push(r);
                Entry {
                    rec: self.records.last_mut(),
                    written: false,
                }
            }
            None => Entry {
                rec: None,
                written: true,
            },
        }
    }

    /// Record a single value (n = 1).
    pub fn value(
        &mut self,
        case: &str,
        engine: &str,
        metric: &str,
        unit: &str,
        value: f64,
    ) -> Entry<'_> {
        self.samples(case, engine, metric, unit, &[value])
    }

    /// Everything recorded so far.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// Print the records as a table with ratios to each group's reference.
    pub fn print_table(&self) {
        print!("{}", crate::report::text_table(&self.records));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_and_round_trip() {
        let r = Record::from_samples("b", "c", "e", "m", "ms", &[5.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!((r.median, r.min, r.max, r.n), (2.5, 1.0, 5.0, 4));
        let line = r.to_json_line();
        assert!(!line.contains('\n'));
        assert_eq!(
            parse_lines(&format!("{line}\nnot json\n\n{line}\n")),
            vec![r.clone(), r]
        );
        assert!(Record::from_samples("b", "c", "e", "m", "ms", &[]).is_none());
        assert!(Record::from_samples("b", "c", "e", "m", "ms", &[f64::NAN]).is_none());
    }

    #[test]
    fn entry_refines_record() {
        let mut rec = Recorder::new("b");
        rec.samples("c", "e", "m", "ms", &[1.0, 2.0])
            .reference()
            .higher()
            .param("pods", 10.0)
            .keep_samples(&[1.0, 2.0])
            .note("n");
        rec.samples("c", "e", "m", "ms", &[]).reference();
        assert_eq!(rec.records().len(), 1);
        let r = &rec.records()[0];
        assert!(r.reference);
        assert_eq!(r.better, Better::Higher);
        assert_eq!(r.params["pods"], 10.0);
        assert_eq!(r.samples, vec![1.0, 2.0]);
        assert_eq!(r.note, "n");
    }
}
