//! Phase timings for profiling: with `CNET_TRACE=1` in the environment the plugin prints one
//! line per phase to stderr (`cnet-trace ADD lock 0.12ms`), and a total when the clock is dropped. Off by
//! default; stdout (the CNI result) is never touched.

use std::time::Instant;

/// A phase clock (a no-op unless `CNET_TRACE=1`).
#[derive(Debug)]
pub struct Trace {
    cmd: &'static str,
    start: Instant,
    last: Instant,
    on: bool,
}

impl Trace {
    /// Start timing command `cmd` (reads `CNET_TRACE` once).
    pub fn new(cmd: &'static str) -> Trace {
        let now = Instant::now();
        Trace {
            cmd,
            start: now,
            last: now,
            on: std::env::var_os("CNET_TRACE").is_some_and(|v| v == "1"),
        }
    }

    /// A clock that never prints.
    pub fn off() -> Trace {
        let now = Instant::now();
        Trace {
            cmd: "",
            start: now,
            last: now,
            on: false,
        }
    }

    /// End the current phase, named `phase`.
    pub fn phase(&mut self, phase: &str) {
        if self.on {
            let now = Instant::now();
            eprintln!(
                "cnet-trace {} {phase} {:.3}ms",
                self.cmd,
                (now - self.last).as_secs_f64() * 1e3
            );
            self.last = now;
        }
    }

    /// Print a measured part of the current phase (e.g. a wait inside it) under `name`,
    /// without ending the phase.
    pub fn part(&self, name: &str, took: std::time::Duration) {
        if self.on {
            eprintln!(
                "cnet-trace {} {name} {:.3}ms",
                self.cmd,
                took.as_secs_f64() * 1e3
            );
        }
    }
}

impl Drop for Trace {
    fn drop(&mut self) {
        if self.on {
            eprintln!(
                "cnet-trace {} total {:.3}ms",
                self.cmd,
                self.start.elapsed().as_secs_f64() * 1e3
            );
        }
    }
}
