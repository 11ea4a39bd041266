//! The CNI parameters passed in environment variables, parsed and validated by the spec's rules.

use crate::error::{CniError, ErrorCode};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// The operation in `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// Add a container to the network.
    Add,
    /// Remove a container from the network (idempotent, best effort).
    Del,
    /// Check a container's networking.
    Check,
    /// Report supported versions.
    Version,
    /// Remove resources of attachments not in `cni.dev/valid-attachments`.
    Gc,
    /// Report whether the plugin can service ADD.
    Status,
}

impl Command {
    /// The name as in `CNI_COMMAND`.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
            Command::Gc => "GC",
            Command::Status => "STATUS",
        }
    }

    /// Whether the command concerns one attachment (`CNI_CONTAINERID` + `CNI_IFNAME` required).
    pub fn is_attachment(self) -> bool {
        matches!(self, Command::Add | Command::Del | Command::Check)
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Command {
    type Err = CniError;

    fn from_str(s: &str) -> Result<Command, CniError> {
        Ok(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "GC" => Command::Gc,
            "STATUS" => Command::Status,
            other => {
                return Err(CniError::invalid_env(format!(
                    "CNI_COMMAND: unknown command {other:?}"
                )));
            }
        })
    }
}

/// Validate a container id: not empty, starts with an ASCII alphanumeric character, then any of
/// `[a-zA-Z0-9_.-]`. Error code 4 naming `CNI_CONTAINERID`.
pub fn validate_container_id(id: &str) -> Result<(), CniError> {
    let mut chars = id.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(
            CniError::invalid_env("CNI_CONTAINERID: invalid characters in container id")
                .with_details(id.to_string()),
        )
    }
}

/// Validate an interface name as the kernel does: not empty, at most 15 bytes, not `.` or `..`,
/// no `/`, `:` or whitespace. Error code 4 naming `CNI_IFNAME`.
pub fn validate_ifname(name: &str) -> Result<(), CniError> {
    let bad = |why: &str| {
        Err(
            CniError::invalid_env(format!("CNI_IFNAME: interface name {why}"))
                .with_details(name.to_string()),
        )
    };
    if name.is_empty() {
        return bad("is empty");
    }
    if name.len() > 15 {
        return bad("is longer than 15 characters");
    }
    if name == "." || name == ".." {
        return bad("is . or ..");
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return bad("contains / or : or whitespace");
    }
    Ok(())
}

/// Validate a network name (the config's `name`): same character rules as a container id.
/// Error code 7.
pub fn validate_network_name(name: &str) -> Result<(), CniError> {
    if name.is_empty() {
        return Err(CniError::invalid_config("missing network name"));
    }
    validate_container_id(name).map_err(|_| {
        CniError::invalid_config("invalid characters found in network name")
            .with_details(name.to_string())
    })
}

/// `CNI_ARGS`: `KEY=VALUE` pairs separated by `;`, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    pairs: Vec<(String, String)>,
}

impl CniArgs {
    /// Parse `K=V;K2=V2`. Every pair must contain exactly one `=`; an empty string has no pairs.
    /// Error code 4 naming `CNI_ARGS`.
    pub fn parse(s: &str) -> Result<CniArgs, CniError> {
        if s.is_empty() {
            return Ok(CniArgs::default());
        }
        let mut pairs = Vec::new();
        for pair in s.split(';') {
            let mut it = pair.split('=');
            match (it.next(), it.next(), it.next()) {
                (Some(k), Some(v), None) if !k.is_empty() => {
                    pairs.push((k.to_string(), v.to_string()))
                }
                _ => {
                    return Err(CniError::invalid_env(format!(
                        "CNI_ARGS: invalid pair {pair:?}"
                    )));
                }
            }
        }
        Ok(CniArgs { pairs })
    }

    /// The value of the last pair with this key (keys are case sensitive).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// All pairs, in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// Whether `IgnoreUnknown` is `1` or `true` (any case).
    pub fn ignore_unknown(&self) -> bool {
        self.get("IgnoreUnknown")
            .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
    }

    /// Error (code 4) when a key outside `known` (and `IgnoreUnknown`) is present, unless
    /// `IgnoreUnknown` is set — the rule reference plugins apply.
    pub fn check_known(&self, known: &[&str]) -> Result<(), CniError> {
        if self.ignore_unknown() {
            return Ok(());
        }
        let unknown: Vec<String> = self
            .pairs
            .iter()
            .filter(|(k, _)| k != "IgnoreUnknown" && !known.contains(&k.as_str()))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(CniError::invalid_env(format!(
                "CNI_ARGS: unknown args {unknown:?}"
            )))
        }
    }
}

/// The validated environment of one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    /// `CNI_COMMAND`.
    pub command: Command,
    /// `CNI_CONTAINERID` (empty for VERSION, GC, STATUS when not given).
    pub container_id: String,
    /// `CNI_NETNS`, when given.
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME` (empty when not given for commands that do not need it).
    pub ifname: String,
    /// `CNI_ARGS`.
    pub args: CniArgs,
    /// `CNI_PATH`, split on `:`.
    pub path: Vec<PathBuf>,
}

impl Env {
    /// Read and validate the environment through `get` (e.g. `|k| std::env::var(k).ok()`).
    ///
    /// Required per the spec: ADD and CHECK need `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`;
    /// DEL needs `CNI_CONTAINERID` and `CNI_IFNAME`; GC needs `CNI_PATH`. Every missing
    /// variable is named in one code-4 error; a malformed one gives code 4 naming it.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Env, CniError> {
        let var = |k: &str| get(k).filter(|v| !v.is_empty());
        let command: Command = match var("CNI_COMMAND") {
            Some(c) => c.parse()?,
            None => {
                return Err(CniError::invalid_env(
                    "required env variables [CNI_COMMAND] missing",
                ));
            }
        };
        let required: &[&str] = match command {
            Command::Add | Command::Check => &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
            Command::Del => &["CNI_CONTAINERID", "CNI_IFNAME"],
            Command::Gc => &["CNI_PATH"],
            Command::Version | Command::Status => &[],
        };
        let missing: Vec<&str> = required
            .iter()
            .copied()
            .filter(|k| var(k).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(CniError::invalid_env(format!(
                "required env variables [{}] missing",
                missing.join(",")
            )));
        }
        let container_id = var("CNI_CONTAINERID").unwrap_or_default();
        let ifname = var("CNI_IFNAME").unwrap_or_default();
        if command.is_attachment() {
            validate_container_id(&container_id)?;
            validate_ifname(&ifname)?;
        }
        let args = CniArgs::parse(&var("CNI_ARGS").unwrap_or_default())?;
        let path = var("CNI_PATH")
            .map(|p| {
                p.split(':')
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Env {
            command,
            container_id,
            netns: var("CNI_NETNS").map(PathBuf::from),
            ifname,
            args,
            path,
        })
    }

    /// Read from the process environment.
    pub fn from_process() -> Result<Env, CniError> {
        Env::from_lookup(|k| std::env::var(k).ok())
    }
}

/// Error code 3 for a netns that does not exist.
pub fn unknown_container(netns: &std::path::Path) -> CniError {
    CniError::new(
        ErrorCode::UnknownContainer,
        format!(
            "CNI_NETNS: network namespace {} does not exist",
            netns.display()
        ),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<Env, CniError> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn container_id_rules() {
        for ok in ["a", "0", "abc-DEF_1.2", "f".repeat(64).as_str()] {
            assert!(validate_container_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "_a", ".a", "a/b", "a b", "a:b", "ä", "a\n"] {
            let e = validate_container_id(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidEnvironment, "{bad}");
            assert!(e.msg.contains("CNI_CONTAINERID"));
        }
    }

    #[test]
    fn ifname_rules() {
        for ok in ["eth0", "a", "123456789012345", "net-1.2_x"] {
            assert!(validate_ifname(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1234567890123456",
            ".",
            "..",
            "a/b",
            "a:b",
            "a b",
            "a\tb",
        ] {
            let e = validate_ifname(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidEnvironment, "{bad:?}");
            assert!(e.msg.contains("CNI_IFNAME"));
        }
    }

    #[test]
    fn network_name_rules() {
        assert!(validate_network_name("mynet-1").is_ok());
        assert_eq!(
            validate_network_name("").unwrap_err().code,
            ErrorCode::InvalidNetworkConfig
        );
        assert_eq!(
            validate_network_name("my net").unwrap_err().code,
            ErrorCode::InvalidNetworkConfig
        );
    }

    #[test]
    fn cni_args_parse_and_unknown_keys() {
        let a = CniArgs::parse("IP=10.0.0.5;K8S_POD_NAME=web;IgnoreUnknown=1").unwrap();
        assert_eq!(a.get("IP"), Some("10.0.0.5"));
        assert_eq!(a.get("ip"), None);
        assert!(a.ignore_unknown());
        assert!(a.check_known(&["IP"]).is_ok());
        let b = CniArgs::parse("IP=10.0.0.5;FOO=bar").unwrap();
        let e = b.check_known(&["IP"]).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidEnvironment);
        assert!(e.msg.contains("FOO=bar"));
        assert_eq!(CniArgs::parse("").unwrap().pairs().len(), 0);
        for bad in ["FOO", "A=1;", "A=1=2", "=x", ";"] {
            assert_eq!(
                CniArgs::parse(bad).unwrap_err().code,
                ErrorCode::InvalidEnvironment,
                "{bad}"
            );
        }
    }

    #[test]
    fn add_requires_id_netns_ifname_and_names_all_missing() {
        let e = env(&[("CNI_COMMAND", "ADD")]).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidEnvironment);
        for k in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
            assert!(e.msg.contains(k), "{}", e.msg);
        }
        let ok = env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/var/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/a::/b"),
        ])
        .unwrap();
        assert_eq!(ok.command, Command::Add);
        assert_eq!(ok.path, vec![PathBuf::from("/a"), PathBuf::from("/b")]);
    }

    #[test]
    fn del_does_not_need_netns_gc_needs_path() {
        let d = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
        ])
        .unwrap();
        assert_eq!(d.netns, None);
        let e = env(&[("CNI_COMMAND", "GC")]).unwrap_err();
        assert!(e.msg.contains("CNI_PATH"));
        assert!(env(&[("CNI_COMMAND", "VERSION")]).is_ok());
        assert!(env(&[("CNI_COMMAND", "STATUS")]).is_ok());
    }

    #[test]
    fn bad_values_are_code_4() {
        for (k, v) in [
            ("CNI_COMMAND", "FROB"),
            ("CNI_CONTAINERID", "-bad"),
            ("CNI_IFNAME", "way-too-long-ifname"),
            ("CNI_ARGS", "novalue"),
        ] {
            let mut pairs = vec![
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "c1"),
                ("CNI_NETNS", "/x"),
                ("CNI_IFNAME", "eth0"),
            ];
            pairs.retain(|(pk, _)| *pk != k);
            pairs.push((k, v));
            let e = env(&pairs).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidEnvironment, "{k}");
            assert!(e.msg.contains(k), "{k}: {}", e.msg);
        }
    }
}
