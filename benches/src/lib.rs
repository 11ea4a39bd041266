//! Side-by-side measurements of cnet against its peers: shared helpers for the bench programs,
//! the results format ([`record`]) and the report the suite runner writes ([`report`]).
//!
//! ```
//! use cnet_benches::{Profile, record::Recorder};
//! // Under `cargo test` (no `--bench`) every bench runs its tiny smoke pass.
//! let pods = cnet_benches::profile().pick(3, 50, 200);
//! let mut rec = Recorder::new("doc");
//! rec.samples("case", "cnet", "add_latency", "ms", &[1.0, 2.0]);
//! assert!(pods > 0 && rec.records().len() == 1);
//! # let _ = Profile::Quick;
//! ```

// Every bench, example and lab binary (they all link this crate) allocates with mimalloc on
// musl, as the shipped binaries do: musl's own malloc returns memory to the kernel at once.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod record;
pub mod report;
pub mod workload;

/// True when the program was started by `cargo bench` (which passes `--bench`); false under
/// `cargo test`, where a bench runs a tiny smoke pass instead of the measurement.
pub fn measuring() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Environment variable choosing how big a measuring run is: `quick` or `full` (the default).
pub const PROFILE_ENV: &str = "CNET_BENCH_PROFILE";

/// How big a bench run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `cargo test`: a tiny pass that only checks the bench still works.
    Smoke,
    /// `--bench` with `CNET_BENCH_PROFILE=quick`: the suite's quick profile (a few minutes in all).
    Quick,
    /// `--bench` otherwise: everything at full size.
    Full,
}

impl Profile {
    /// The value for this profile.
    pub fn pick<T>(self, smoke: T, quick: T, full: T) -> T {
        match self {
            Profile::Smoke => smoke,
            Profile::Quick => quick,
            Profile::Full => full,
        }
    }

    /// Lower-case name (`smoke`, `quick`, `full`).
    pub fn name(self) -> &'static str {
        self.pick("smoke", "quick", "full")
    }
}

/// The profile of this run: [`Profile::Smoke`] unless [`measuring`], then `CNET_BENCH_PROFILE`
/// (`quick`; anything else is full).
pub fn profile() -> Profile {
    if !measuring() {
        return Profile::Smoke;
    }
    match std::env::var(PROFILE_ENV).as_deref() {
        Ok("quick") => Profile::Quick,
        _ => Profile::Full,
    }
}

/// Build (a no-op when fresh) a binary of `cnet-cni` (`cnet`, `cnet-ipam`) in the calling
/// bench's target directory and profile, so a bench never measures a stale binary, and
/// install it (a copy) into `<target>/<profile>/cni-bin/`, where the bench runs it.
///
/// Measured like the reference plugins, which run as installed files: a binary the linker
/// has just written took 0.2–0.4 ms longer per call to start here than a copy of the same
/// bytes (a hard link to the linker's file was as slow as it; after `drop_caches`, when both
/// are read back from disk, the two were equal). Likely the page cache's state of a file
/// written piecemeal; not verified further.
pub fn cni_binary(name: &str) -> Result<std::path::PathBuf, String> {
    let built = build_cni_binary(name)?;
    let dir = built
        .parent()
        .ok_or("unexpected binary location")?
        .join("cni-bin");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let installed = dir.join(name);
    // Copy, then rename over: a process still running the old file keeps it.
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    std::fs::copy(&built, &tmp)
        .and_then(|_| std::fs::rename(&tmp, &installed))
        .map_err(|e| format!("install {}: {e}", installed.display()))?;
    Ok(installed)
}

fn build_cni_binary(name: &str) -> Result<std::path::PathBuf, String> {
    use std::path::Path;
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    // <target>/<profile>/deps/<bench>-<hash>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("unexpected bench location")?;
    let candidate = profile_dir.join(name);
    let target_dir = profile_dir.parent().ok_or("unexpected bench location")?;
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = std::process::Command::new(cargo);
    build
        .args([
            "build",
            "-q",
            "-p",
            "cnet-cni",
            "--bin",
            name,
            "--manifest-path",
        ])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir);
    if release {
        build.arg("--release");
    }
    let status = build.status().map_err(|e| format!("cargo build: {e}"))?;
    if !status.success() || !candidate.exists() {
        return Err(format!("could not build {}", candidate.display()));
    }
    Ok(candidate)
}

/// Median of a sample (sorted in place); `None` when empty.
pub fn median(samples: &mut [f64]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    let n = samples.len();
    Some(if n % 2 == 1 {
        samples[n / 2]
    } else {
        (samples[n / 2 - 1] + samples[n / 2]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn median_odd_even_empty() {
        assert_eq!(super::median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(super::median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(super::median(&mut []), None);
    }
}
