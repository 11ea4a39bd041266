//! `cnet-bench`: runs the bench programs of `benches/` one after another with `--bench`
//! (through `cargo bench`, so each is built in the release-like bench profile), collects their
//! JSON-lines results, prints one table, and writes `report.md`, `results.jsonl`, SVG plots and
//! each program's output to the report directory (default `<target>/bench-report`).
//!
//! ```text
//! cnet-bench [--quick | --full] [--out DIR] [--only NAME,NAME] [--report-only]
//! ```
//! `./scripts/bench` is the documented way to call it (it installs what the benches need).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use cnet_benches::record::{self, Record};
use cnet_benches::report::{self, Machine, RunInfo};

/// Preferred order; programs declared in benches/Cargo.toml but not listed run after these.
const ORDER: &[&str] = &[
    "ipam",
    "ipam_plugin",
    "route",
    "setup_concurrency",
    "cni_plugin",
    "nft_program",
    "policy_eval",
    "policy_program",
    "policy_baselines",
    "dataplane",
];

struct Args {
    profile: String,
    out: Option<PathBuf>,
    only: Option<Vec<String>>,
    report_only: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        profile: "quick".into(),
        out: None,
        only: None,
        report_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => a.profile = "quick".into(),
            "--full" => a.profile = "full".into(),
            "--report-only" => a.report_only = true,
            "--out" => a.out = Some(it.next().ok_or("--out needs a directory")?.into()),
            "--only" => {
                let v = it.next().ok_or("--only needs NAME[,NAME]")?;
                a.only = Some(v.split(',').map(str::to_string).collect());
            }
            "-h" | "--help" => {
                println!(
                    "cnet-bench [--quick | --full] [--out DIR] [--only NAME,NAME] [--report-only]"
                );
                std::process::exit(0);
            }
            // `cargo run` / `cargo bench` may pass this; ignore it.
            "--bench" => {}
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(a)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The `[[bench]]` names declared in benches/Cargo.toml, in the preferred order.
fn bench_names(manifest: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_bench = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bench = line == "[[bench]]";
            continue;
        }
        if in_bench
            && let Some(v) = line.strip_prefix("name")
            && let Some(v) = v.trim_start().strip_prefix('=')
        {
            names.push(v.trim().trim_matches('"').to_string());
        }
    }
    let mut ordered: Vec<String> = ORDER
        .iter()
        .filter(|n| names.iter().any(|m| m == *n))
        .map(|n| n.to_string())
        .collect();
    for n in names {
        if !ordered.contains(&n) {
            ordered.push(n);
        }
    }
    ordered
}

fn sh(argv: &[&str]) -> String {
    Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Run one bench program, echoing its stdout live; returns (status text, stdout, seconds).
fn run_bench(root: &Path, name: &str, profile: &str, results: &Path) -> (String, String, f64) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let start = Instant::now();
    let child = Command::new(cargo)
        .current_dir(root)
        .args(["bench", "-q", "-p", "cnet-benches", "--bench", name])
        .env(record::OUT_ENV, results)
        .env(cnet_benches::PROFILE_ENV, profile)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return (format!("could not start cargo: {e}"), String::new(), 0.0),
    };
    let mut text = String::new();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            println!("  {line}");
            text.push_str(&line);
            text.push('\n');
        }
    }
    let status = match child.wait() {
        Ok(s) if s.success() => "ok".to_string(),
        Ok(s) => format!("failed ({s})"),
        Err(e) => format!("wait failed: {e}"),
    };
    (status, text, start.elapsed().as_secs_f64())
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("cnet-bench: {e}");
            std::process::exit(2);
        }
    };
    let root = workspace_root();
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| target.join("bench-report"));
    if let Err(e) = std::fs::create_dir_all(out.join("logs")) {
        eprintln!("cnet-bench: cannot create {}: {e}", out.display());
        std::process::exit(1);
    }
    let results = out.join("results.jsonl");
    let mut machine = Machine {
        cores: std::thread::available_parallelism().map_or(0, usize::from),
        kernel: sh(&["uname", "-srm"]),
        date: sh(&["date", "-u", "+%Y-%m-%d %H:%M UTC"]),
        load_start: loadavg(),
        load_end: String::new(),
    };
    let mut run = RunInfo {
        profile: args.profile.clone(),
        ..RunInfo::default()
    };
    if !args.report_only {
        let _ = std::fs::remove_file(&results);
        let manifest = std::fs::read_to_string(root.join("benches/Cargo.toml")).unwrap_or_default();
        let mut names = bench_names(&manifest);
        if let Some(only) = &args.only {
            names.retain(|n| only.contains(n));
        }
        println!(
            "cnet-bench: profile {}, {} programs: {}",
            args.profile,
            names.len(),
            names.join(", ")
        );
        for name in &names {
            let before = count_records(&results);
            println!("== {name} (load {})", loadavg());
            let (status, text, secs) = run_bench(&root, name, &args.profile, &results);
            println!("== {name}: {status} in {secs:.1} s");
            let _ = std::fs::write(out.join("logs").join(format!("{name}.txt")), &text);
            if count_records(&results) == before {
                run.raw.push((name.clone(), text));
            }
            run.programs.push((name.clone(), status, secs));
        }
    }
    machine.load_end = loadavg();
    let records = record::parse_lines(&std::fs::read_to_string(&results).unwrap_or_default());
    write_report(&out, &records, &machine, &mut run);
    println!("\n{}", report::text_table(&records));
    for t in report::targets() {
        let o = report::evaluate(&t, &records);
        println!(
            "target: {} -> {} [{}] {}",
            t.name, o.measured, o.case, o.verdict
        );
    }
    println!(
        "machine: {} cores, {}; load {} -> {}",
        machine.cores, machine.kernel, machine.load_start, machine.load_end
    );
    println!("report: {}", out.join("report.md").display());
    if run.programs.iter().any(|(_, s, _)| s != "ok") {
        std::process::exit(1);
    }
}

fn count_records(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |s| record::parse_lines(&s).len())
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn write_report(out: &Path, records: &[Record], machine: &Machine, run: &mut RunInfo) {
    let mut write = |name: String, body: &str| match std::fs::File::create(out.join(&name))
        .and_then(|mut f| f.write_all(body.as_bytes()))
    {
        Ok(()) => run.plots.push(name),
        Err(e) => eprintln!("cnet-bench: write {name}: {e}"),
    };
    match report::program_time_svg(records) {
        Ok(Some(svg)) => write("program_time_vs_pods.svg".into(), &svg),
        Ok(None) => {}
        Err(e) => eprintln!("cnet-bench: {e}"),
    }
    match report::add_latency_svgs(records) {
        Ok(v) => {
            for (case, svg) in v {
                write(format!("add_latency_{}.svg", slug(&case)), &svg);
            }
        }
        Err(e) => eprintln!("cnet-bench: {e}"),
    }
    let md = report::markdown(records, machine, run);
    if let Err(e) = std::fs::write(out.join("report.md"), md) {
        eprintln!("cnet-bench: write report.md: {e}");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bench_names_in_preferred_order() {
        let manifest = "[package]\nname = \"x\"\n[[bench]]\nname = \"zzz\"\nharness = false\n\
                        [[bench]]\nname = \"route\"\n[[bin]]\nname = \"cnet-bench\"\n\
                        [[bench]]\nname = \"ipam\"\n";
        assert_eq!(super::bench_names(manifest), vec!["ipam", "route", "zzz"]);
    }

    #[test]
    fn slug_is_a_file_name() {
        assert_eq!(super::slug("concurrency 1"), "concurrency_1");
    }
}
