//! cnet-cni: the CNI 1.1 spec layer shared by the `cnet` and `cnet-ipam` plugins.
//!
//! - [`Env`]: `CNI_*` environment variables, validated by the spec's rules (code 4 on error);
//! - [`NetConf`]: the request configuration (unknown keys preserved);
//! - [`CniResult`]: results in every version from 0.1.0 to 1.1.0, and `prevResult` parsing;
//! - [`CniError`]: the spec's error codes and error JSON;
//! - [`Plugin`] and [`run`]: dispatch on `CNI_COMMAND` (ADD, DEL, CHECK, VERSION, GC, STATUS);
//! - [`delegate`]: executing an IPAM plugin from `CNI_PATH`;
//! - [`ipam::IpamPlugin`]: the `cnet-ipam` plugin (host-local compatible, plus GC and STATUS);
//! - [`cnet::CnetPlugin`]: the `cnet` plugin (IPAM + cnet-route + policy, node state per network).
//!
//! ```
//! use cnet_cni::{CniError, CniResult, GcAttachment, Plugin, Request, run_with};
//!
//! struct Noop;
//! impl Plugin for Noop {
//!     fn add(&mut self, _: &Request) -> Result<CniResult, CniError> { Ok(CniResult::default()) }
//!     fn del(&mut self, _: &Request) -> Result<(), CniError> { Ok(()) }
//!     fn check(&mut self, _: &Request) -> Result<(), CniError> { Ok(()) }
//!     fn gc(&mut self, _: &Request, _: &[GcAttachment]) -> Result<(), CniError> { Ok(()) }
//!     fn status(&mut self, _: &Request) -> Result<(), CniError> { Ok(()) }
//! }
//!
//! let env = |k: &str| (k == "CNI_COMMAND").then(|| "VERSION".to_string());
//! let out = run_with(&mut Noop, env, br#"{"cniVersion":"1.1.0"}"#.to_vec());
//! assert_eq!(out.exit_code, 0);
//! assert!(out.stdout.contains("supportedVersions"));
//! ```

#![warn(missing_docs)]

pub mod cnet;
pub mod config;
pub mod delegate;
pub mod env;
pub mod error;
pub mod ipam;
pub mod plugin;
pub mod result;
pub mod version;

pub use config::{
    Args, CniConventionArgs, Dns, GcAttachment, Label, NetConf, PortMapping, RuntimeConfig,
    parse_requested_ip,
};
pub use env::{CniArgs, Command, Env, validate_container_id, validate_ifname};
pub use error::{CniError, ErrorCode};
pub use plugin::{CODE_INTERNAL, Outcome, Plugin, Request, run, run_with};
pub use result::{CniResult, Interface, IpConfig, Route};
pub use version::{ALL_VERSIONS, Version, VersionInfo, negotiate};
