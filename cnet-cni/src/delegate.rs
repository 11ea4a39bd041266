//! Delegation: execute another plugin (typically IPAM) found in `CNI_PATH` with the same
//! environment and stdin, as the spec's section 4 describes, and read its result or error.

use crate::env::{Command, Env};
use crate::error::CniError;
use crate::result::CniResult;
use crate::version::Version;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

/// Find the executable `plugin_type` in the `CNI_PATH` directories, first match wins.
/// Code 7 for a name that is not a plain file name; code 5 when no directory holds it.
pub fn find_plugin(plugin_type: &str, path: &[PathBuf]) -> Result<PathBuf, CniError> {
    find_plugin_name_ok(plugin_type)?;
    path.iter()
        .map(|dir| dir.join(plugin_type))
        .find(|p| is_executable(p))
        .ok_or_else(|| {
            CniError::io(format!(
                "failed to find plugin {plugin_type:?} in path {:?}",
                path.iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
            ))
        })
}

/// Check that a plugin type is a plain file name (not empty, no `/`, not `.` or `..`); code 7.
pub fn find_plugin_name_ok(plugin_type: &str) -> Result<(), CniError> {
    if plugin_type.is_empty()
        || plugin_type.contains('/')
        || plugin_type == "."
        || plugin_type == ".."
    {
        return Err(CniError::invalid_config(format!(
            "invalid plugin type {plugin_type:?}"
        )));
    }
    Ok(())
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Run `plugin` for `command` with `env`'s CNI variables and `stdin` (the request config).
/// Returns the raw stdout on success; the delegate's own error (its code preserved) when it
/// prints the error JSON, or code 5 when it fails without one.
pub fn exec_plugin(
    plugin: &Path,
    command: Command,
    env: &Env,
    stdin: &[u8],
) -> Result<Vec<u8>, CniError> {
    let mut cmd = Process::new(plugin);
    cmd.env("CNI_COMMAND", command.as_str())
        .env("CNI_CONTAINERID", &env.container_id)
        .env("CNI_IFNAME", &env.ifname)
        .env(
            "CNI_ARGS",
            env.args
                .pairs()
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(";"),
        )
        .env(
            "CNI_PATH",
            env.path
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(":"),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match &env.netns {
        Some(ns) => cmd.env("CNI_NETNS", ns),
        None => cmd.env_remove("CNI_NETNS"),
    };
    let what = plugin.display().to_string();
    let mut child = cmd
        .spawn()
        .map_err(|e| CniError::io(format!("exec delegate {what}: {e}")))?;
    if let Some(mut input) = child.stdin.take() {
        input
            .write_all(stdin)
            .map_err(|e| CniError::io(format!("write stdin of delegate {what}: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| CniError::io(format!("wait for delegate {what}: {e}")))?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    Err(CniError::from_json(&out.stdout).unwrap_or_else(|| {
        CniError::io(format!("delegate {what} failed ({})", out.status)).with_details(format!(
            "stdout: {} stderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }))
}

/// Delegate ADD to the plugin named `plugin_type` and parse its result (any supported
/// version; `version` is the request's, used when the result has no `cniVersion`).
pub fn delegate_add(
    plugin_type: &str,
    env: &Env,
    stdin: &[u8],
    version: Version,
) -> Result<CniResult, CniError> {
    let plugin = find_plugin(plugin_type, &env.path)?;
    let out = exec_plugin(&plugin, Command::Add, env, stdin)?;
    CniResult::parse_bytes(&out, version)
}

/// Delegate a command without a result (DEL, CHECK, GC, STATUS).
pub fn delegate(
    plugin_type: &str,
    command: Command,
    env: &Env,
    stdin: &[u8],
) -> Result<(), CniError> {
    let plugin = find_plugin(plugin_type, &env.path)?;
    exec_plugin(&plugin, command, env, stdin).map(|_| ())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn plugin_names_must_be_plain() {
        for bad in ["", "../x", "/bin/sh", ".", ".."] {
            assert_eq!(
                find_plugin(bad, &[PathBuf::from("/usr/lib/cni")])
                    .unwrap_err()
                    .code,
                ErrorCode::InvalidNetworkConfig
            );
        }
    }

    #[test]
    fn missing_plugin_is_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = find_plugin("nope", &[dir.path().to_path_buf()]).unwrap_err();
        assert_eq!(e.code, ErrorCode::IoFailure);
        assert!(e.msg.contains("nope"));
    }
}
