//! The one `Out` of the cnet-cni black-box tests: how a process (a CNI plugin, a shell
//! command) exited and what it printed, with the CNI-specific readings of stdout. Included by
//! `common`, `cnet_lab` and `podman_lab` with `#[path]`.
#![allow(dead_code, clippy::unwrap_used)]

use serde_json::Value;

/// What a process printed and how it exited.
#[derive(Debug, Clone)]
pub struct Out {
    /// Exit status code (-1 when killed by a signal).
    pub status: i32,
    /// Stdout.
    pub stdout: String,
    /// Stderr.
    pub stderr: String,
}

impl Out {
    /// From a finished process's output.
    pub fn from_output(out: &std::process::Output) -> Out {
        Out {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Whether it exited 0.
    pub fn success(&self) -> bool {
        self.status == 0
    }

    /// Stdout parsed as JSON (Null when empty).
    pub fn json(&self) -> Value {
        if self.stdout.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&self.stdout)
                .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout))
        }
    }

    /// Assert success; the parsed result.
    pub fn ok(&self) -> Value {
        assert_eq!(
            self.status, 0,
            "expected success, got {}: {} {}",
            self.status, self.stdout, self.stderr
        );
        self.json()
    }

    /// Assert failure with the spec's error JSON (non-zero exit, `msg`, `code`); the code.
    pub fn err_code(&self) -> u64 {
        assert_ne!(
            self.status, 0,
            "expected failure, got success: {}",
            self.stdout
        );
        let v = self.json();
        assert!(v["msg"].is_string(), "error JSON without msg: {v}");
        v["code"]
            .as_u64()
            .unwrap_or_else(|| panic!("error JSON without code: {v}"))
    }

    /// As [`Out::err_code`], also asserting the error JSON names its `cniVersion` (as the
    /// spec's error structure for version 1.0 and later does).
    pub fn versioned_err_code(&self) -> u64 {
        let code = self.err_code();
        let v = self.json();
        assert!(
            v["cniVersion"].is_string(),
            "error JSON without cniVersion: {v}"
        );
        code
    }

    /// The addresses of a success result (any version), as strings with prefix.
    pub fn addresses(&self) -> Vec<String> {
        let v = self.ok();
        if let Some(ips) = v["ips"].as_array() {
            ips.iter()
                .map(|i| i["address"].as_str().unwrap().to_string())
                .collect()
        } else {
            ["ip4", "ip6"]
                .iter()
                .filter_map(|k| v[*k]["ip"].as_str().map(str::to_string))
                .collect()
        }
    }
}
