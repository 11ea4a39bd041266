//! Dispatch: the [`Plugin`] trait and [`run`], which reads the environment and stdin, calls the
//! plugin for `CNI_COMMAND`, prints the result or the error JSON and returns the exit code.

use crate::config::{GcAttachment, NetConf};
use crate::env::{Command, Env};
use crate::error::{CniError, ErrorCode};
use crate::result::CniResult;
use crate::version::{ALL_VERSIONS, Version, VersionInfo};
use std::io::{Read, Write};

/// One invocation, parsed and validated.
#[derive(Debug, Clone)]
pub struct Request {
    /// The validated environment.
    pub env: Env,
    /// The decoded network configuration.
    pub config: NetConf,
    /// The negotiated protocol version (results are printed in it).
    pub version: Version,
    /// The raw stdin, as a delegated plugin must receive it.
    pub stdin: Vec<u8>,
}

impl Request {
    /// The attachment's owner, `(CNI_CONTAINERID, CNI_IFNAME)`.
    pub fn owner(&self) -> (&str, &str) {
        (&self.env.container_id, &self.env.ifname)
    }
}

/// A CNI plugin. [`run`] validates the environment and the config (name, version, the minimum
/// version of CHECK/GC/STATUS) before calling a method.
pub trait Plugin {
    /// The versions this plugin speaks (default: all of [`ALL_VERSIONS`]).
    fn supported_versions(&self) -> &[Version] {
        &ALL_VERSIONS
    }
    /// ADD: return the result; it is printed in the request's version.
    fn add(&mut self, req: &Request) -> Result<CniResult, CniError>;
    /// DEL: must succeed when what it would remove is already gone.
    fn del(&mut self, req: &Request) -> Result<(), CniError>;
    /// CHECK (0.4.0 and later).
    fn check(&mut self, req: &Request) -> Result<(), CniError>;
    /// GC (1.1.0 and later): `valid` lists the attachments to keep (an absent key is an empty
    /// list, as libcni omits an empty one).
    fn gc(&mut self, req: &Request, valid: &[GcAttachment]) -> Result<(), CniError>;
    /// STATUS (1.1.0 and later): `Err` with code 50/51 when ADD cannot be serviced.
    fn status(&mut self, req: &Request) -> Result<(), CniError>;
}

/// The outcome of one dispatch: what to print on stdout and the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Text for stdout (empty for DEL/CHECK/GC/STATUS success).
    pub stdout: String,
    /// Process exit code: 0 on success, 1 on error.
    pub exit_code: i32,
}

fn version_of(stdin: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_string))
        .filter(|s| s.parse::<Version>().is_ok())
        .unwrap_or_else(|| Version::LATEST.as_str().to_string())
}

/// The error a caught panic becomes.
fn panicked(panic: &(dyn std::any::Any + Send)) -> CniError {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    CniError::new(ErrorCode::Other(CODE_INTERNAL), "internal error (a bug)").with_details(what)
}

fn error_outcome(e: &CniError, stdin: &[u8]) -> Outcome {
    Outcome {
        stdout: e.to_json_string(&version_of(stdin)),
        exit_code: 1,
    }
}

fn require(version: Version, min: Version, cmd: Command) -> Result<(), CniError> {
    if version < min {
        return Err(CniError::new(
            ErrorCode::IncompatibleVersion,
            format!("config version does not allow {cmd}"),
        )
        .with_details(format!(
            "{cmd} needs cniVersion {min} or later, config is {version}"
        )));
    }
    Ok(())
}

fn dispatch<P: Plugin + ?Sized>(
    plugin: &mut P,
    env: Env,
    stdin: Vec<u8>,
) -> Result<String, CniError> {
    if env.command == Command::Version {
        let info = VersionInfo::answer(&stdin, plugin.supported_versions());
        return serde_json::to_string(&info)
            .map_err(|e| CniError::io(format!("encoding VERSION: {e}")));
    }
    let config = NetConf::parse(&stdin)?;
    let version = config.version(plugin.supported_versions())?;
    let cmd = env.command;
    let req = Request {
        env,
        config,
        version,
        stdin,
    };
    match cmd {
        Command::Add => {
            let result = plugin.add(&req)?;
            result.to_json_string(version)
        }
        Command::Del => plugin.del(&req).map(|()| String::new()),
        Command::Check => {
            require(version, Version::V0_4_0, cmd)?;
            plugin.check(&req).map(|()| String::new())
        }
        Command::Gc => {
            require(version, Version::V1_1_0, cmd)?;
            let valid = req.config.valid_attachments.clone().unwrap_or_default();
            plugin.gc(&req, &valid).map(|()| String::new())
        }
        Command::Status => {
            require(version, Version::V1_1_0, cmd)?;
            plugin.status(&req).map(|()| String::new())
        }
        Command::Version => Ok(String::new()),
    }
}

/// Dispatch one invocation given its environment (through `get`) and stdin bytes: the pure core
/// of [`run`], used by tests. A panic in the plugin is reported as error [`CODE_INTERNAL`]
/// (its message in the details).
pub fn run_with<P: Plugin + ?Sized>(
    plugin: &mut P,
    get: impl Fn(&str) -> Option<String>,
    stdin: Vec<u8>,
) -> Outcome {
    let env = match Env::from_lookup(get) {
        Ok(env) => env,
        Err(e) => return error_outcome(&e, &stdin),
    };
    let for_error = stdin.clone();
    let dispatched = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        dispatch(plugin, env, stdin)
    }));
    match dispatched {
        Ok(Ok(stdout)) => Outcome {
            stdout,
            exit_code: 0,
        },
        Ok(Err(e)) => error_outcome(&e, &for_error),
        Err(panic) => error_outcome(&panicked(panic.as_ref()), &for_error),
    }
}

/// Plugin-specific error code of an invocation that ended in a bug (a panic): the runtime
/// still gets the spec's error JSON. What the invocation had done is left as a killed one
/// leaves it, for DEL or GC to undo.
pub const CODE_INTERNAL: u32 = 199;

/// Run a plugin as a CNI binary: read the process environment and stdin, dispatch, print to
/// stdout, and return the exit code for `std::process::exit`.
pub fn run<P: Plugin + ?Sized>(plugin: &mut P) -> i32 {
    let mut stdin = Vec::new();
    let outcome = if let Err(e) = std::io::stdin().read_to_end(&mut stdin) {
        error_outcome(&CniError::io(format!("error reading from stdin: {e}")), &[])
    } else {
        run_with(plugin, |k| std::env::var(k).ok(), stdin)
    };
    let mut out = std::io::stdout().lock();
    let written = out
        .write_all(outcome.stdout.as_bytes())
        .and_then(|()| out.flush());
    match written {
        Ok(()) => outcome.exit_code,
        Err(_) => 1,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::result::IpConfig;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Recorder {
        calls: Vec<String>,
        fail_status: bool,
        panic_in_del: bool,
    }

    impl Plugin for Recorder {
        fn add(&mut self, req: &Request) -> Result<CniResult, CniError> {
            self.calls
                .push(format!("add {}/{}", req.env.container_id, req.env.ifname));
            Ok(CniResult {
                ips: vec![IpConfig {
                    interface: None,
                    address: "10.0.0.2/24".parse().map_err(|_| CniError::io("x"))?,
                    gateway: None,
                }],
                ..CniResult::default()
            })
        }
        fn del(&mut self, _: &Request) -> Result<(), CniError> {
            self.calls.push("del".into());
            if self.panic_in_del {
                let v: Vec<u8> = Vec::new();
                let _ = v[3];
            }
            Ok(())
        }
        fn check(&mut self, _: &Request) -> Result<(), CniError> {
            self.calls.push("check".into());
            Ok(())
        }
        fn gc(&mut self, _: &Request, valid: &[GcAttachment]) -> Result<(), CniError> {
            self.calls.push(format!("gc {}", valid.len()));
            Ok(())
        }
        fn status(&mut self, _: &Request) -> Result<(), CniError> {
            self.calls.push("status".into());
            if self.fail_status {
                Err(CniError::new(ErrorCode::NotAvailable, "pool exhausted"))
            } else {
                Ok(())
            }
        }
    }

    fn go(p: &mut Recorder, cmd: &str, conf: &str) -> Outcome {
        let mut m: HashMap<&str, &str> = HashMap::new();
        m.insert("CNI_COMMAND", cmd);
        m.insert("CNI_CONTAINERID", "c1");
        m.insert("CNI_NETNS", "/var/run/netns/x");
        m.insert("CNI_IFNAME", "eth0");
        m.insert("CNI_PATH", "/usr/lib/cni");
        run_with(
            p,
            |k| m.get(k).map(|s| s.to_string()),
            conf.as_bytes().to_vec(),
        )
    }

    fn code(o: &Outcome) -> u64 {
        let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
        v["code"].as_u64().unwrap()
    }

    #[test]
    fn add_prints_result_in_requested_version() {
        let mut p = Recorder::default();
        let o = go(&mut p, "ADD", r#"{"cniVersion":"0.3.1","name":"n"}"#);
        assert_eq!(o.exit_code, 0);
        let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
        assert_eq!(v["cniVersion"], "0.3.1");
        assert_eq!(v["ips"][0]["version"], "4");
        assert_eq!(p.calls, vec!["add c1/eth0"]);
    }

    #[test]
    fn a_panic_is_the_spec_error_json() {
        let mut p = Recorder {
            panic_in_del: true,
            ..Recorder::default()
        };
        let o = go(&mut p, "DEL", r#"{"cniVersion":"1.1.0","name":"n"}"#);
        assert_eq!(o.exit_code, 1);
        let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
        assert_eq!(v["cniVersion"], "1.1.0");
        assert_eq!(v["code"], u64::from(CODE_INTERNAL));
        assert!(
            v["details"]
                .as_str()
                .unwrap()
                .contains("index out of bounds")
        );
        assert_eq!(p.calls, vec!["del"]);
    }

    #[test]
    fn version_command_needs_no_config() {
        let mut p = Recorder::default();
        let o = go(&mut p, "VERSION", r#"{"cniVersion":"1.0.0"}"#);
        assert_eq!(o.exit_code, 0);
        let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
        assert_eq!(v["cniVersion"], "1.0.0");
        assert_eq!(v["supportedVersions"].as_array().unwrap().len(), 7);
        assert!(p.calls.is_empty());
    }

    #[test]
    fn unsupported_version_is_code_1_and_plugin_not_called() {
        let mut p = Recorder::default();
        let o = go(&mut p, "ADD", r#"{"cniVersion":"2.0.0","name":"n"}"#);
        assert_eq!((o.exit_code, code(&o)), (1, 1));
        assert!(p.calls.is_empty());
    }

    #[test]
    fn check_gc_status_minimum_versions() {
        let mut p = Recorder::default();
        assert_eq!(
            code(&go(&mut p, "CHECK", r#"{"cniVersion":"0.3.1","name":"n"}"#)),
            1
        );
        assert_eq!(
            go(&mut p, "CHECK", r#"{"cniVersion":"0.4.0","name":"n"}"#).exit_code,
            0
        );
        assert_eq!(
            code(&go(&mut p, "GC", r#"{"cniVersion":"1.0.0","name":"n"}"#)),
            1
        );
        assert_eq!(
            code(&go(
                &mut p,
                "STATUS",
                r#"{"cniVersion":"1.0.0","name":"n"}"#
            )),
            1
        );
        let o = go(
            &mut p,
            "GC",
            r#"{"cniVersion":"1.1.0","name":"n","cni.dev/valid-attachments":[{"containerID":"a","ifname":"b"}]}"#,
        );
        assert_eq!((o.exit_code, o.stdout.as_str()), (0, ""));
        assert_eq!(p.calls, vec!["check", "gc 1"]);
    }

    #[test]
    fn status_error_is_printed_with_its_code() {
        let mut p = Recorder {
            fail_status: true,
            ..Recorder::default()
        };
        let o = go(&mut p, "STATUS", r#"{"cniVersion":"1.1.0","name":"n"}"#);
        assert_eq!((o.exit_code, code(&o)), (1, 50));
        let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
        assert_eq!(v["cniVersion"], "1.1.0");
    }

    #[test]
    fn bad_config_and_env_codes() {
        let mut p = Recorder::default();
        assert_eq!(code(&go(&mut p, "ADD", "not json")), 6);
        assert_eq!(code(&go(&mut p, "ADD", r#"{"cniVersion":"1.0.0"}"#)), 7);
        assert_eq!(
            code(&go(&mut p, "FROB", r#"{"cniVersion":"1.0.0","name":"n"}"#)),
            4
        );
        let o = run_with(&mut p, |_| None, b"{}".to_vec());
        assert_eq!((o.exit_code, code(&o)), (1, 4));
        assert!(p.calls.is_empty());
    }
}
