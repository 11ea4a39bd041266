//! CNI specification versions, the VERSION answer and version negotiation.

use crate::error::{CniError, ErrorCode};
use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// A CNI specification version this crate knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// 0.1.0 (result: `ip4`/`ip6` objects).
    V0_1_0,
    /// 0.2.0 (result: `ip4`/`ip6` objects).
    V0_2_0,
    /// 0.3.0 (result: `ips` with `version`).
    V0_3_0,
    /// 0.3.1.
    V0_3_1,
    /// 0.4.0 (adds CHECK).
    V0_4_0,
    /// 1.0.0 (`ips` without `version`).
    V1_0_0,
    /// 1.1.0 (adds GC and STATUS).
    V1_1_0,
}

/// Every version this crate speaks, oldest first.
pub const ALL_VERSIONS: [Version; 7] = [
    Version::V0_1_0,
    Version::V0_2_0,
    Version::V0_3_0,
    Version::V0_3_1,
    Version::V0_4_0,
    Version::V1_0_0,
    Version::V1_1_0,
];

impl Version {
    /// The newest version (what results default to).
    pub const LATEST: Version = Version::V1_1_0;

    /// The version string, e.g. `"0.3.1"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V0_1_0 => "0.1.0",
            Version::V0_2_0 => "0.2.0",
            Version::V0_3_0 => "0.3.0",
            Version::V0_3_1 => "0.3.1",
            Version::V0_4_0 => "0.4.0",
            Version::V1_0_0 => "1.0.0",
            Version::V1_1_0 => "1.1.0",
        }
    }

    /// Whether results in this version use the legacy `ip4`/`ip6` shape (0.1.0, 0.2.0).
    pub fn is_legacy_result(self) -> bool {
        self <= Version::V0_2_0
    }

    /// Whether results in this version carry `"version": "4"|"6"` in each IP (0.3.x, 0.4.0).
    pub fn ips_have_version(self) -> bool {
        (Version::V0_3_0..=Version::V0_4_0).contains(&self)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Version {
    type Err = CniError;

    fn from_str(s: &str) -> Result<Version, CniError> {
        ALL_VERSIONS
            .iter()
            .copied()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                CniError::new(ErrorCode::IncompatibleVersion, "incompatible CNI versions")
                    .with_details(format!(
                        "config is {s:?}, plugin supports {:?}",
                        ALL_VERSIONS.iter().map(|v| v.as_str()).collect::<Vec<_>>()
                    ))
            })
    }
}

/// Check a config's `cniVersion` against the versions a plugin supports. An empty version means
/// 0.1.0, as in libcni. Unknown or unsupported versions give error code 1.
pub fn negotiate(config_version: &str, supported: &[Version]) -> Result<Version, CniError> {
    let wanted = if config_version.is_empty() {
        "0.1.0"
    } else {
        config_version
    };
    let names: Vec<&str> = supported.iter().map(|v| v.as_str()).collect();
    let incompatible = || {
        CniError::new(ErrorCode::IncompatibleVersion, "incompatible CNI versions")
            .with_details(format!("config is {wanted:?}, plugin supports {names:?}"))
    };
    let v: Version = wanted.parse().map_err(|_| incompatible())?;
    if supported.contains(&v) {
        Ok(v)
    } else {
        Err(incompatible())
    }
}

/// The answer to `VERSION`: `{"cniVersion", "supportedVersions"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionInfo {
    /// The version given on input (or the newest supported one when none or an unknown one was given).
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    /// Every version the plugin supports.
    #[serde(rename = "supportedVersions")]
    pub supported_versions: Vec<String>,
}

impl VersionInfo {
    /// Build the VERSION answer for the stdin a runtime sent (a JSON object with `cniVersion`;
    /// anything else falls back to the newest supported version).
    pub fn answer(stdin: &[u8], supported: &[Version]) -> VersionInfo {
        let asked = serde_json::from_slice::<serde_json::Value>(stdin)
            .ok()
            .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_string))
            .filter(|s| !s.is_empty());
        let newest = supported.iter().max().copied().unwrap_or(Version::LATEST);
        VersionInfo {
            cni_version: asked.unwrap_or_else(|| newest.as_str().to_string()),
            supported_versions: supported.iter().map(|v| v.as_str().to_string()).collect(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_order() {
        for v in ALL_VERSIONS {
            assert_eq!(v.as_str().parse::<Version>(), Ok(v));
        }
        assert!(Version::V0_3_1 < Version::V0_4_0);
        assert!(Version::V0_4_0 < Version::V1_0_0);
        assert_eq!(
            "0.5.0".parse::<Version>().map_err(|e| e.code),
            Err(ErrorCode::IncompatibleVersion)
        );
    }

    #[test]
    fn result_shapes_per_version() {
        assert!(Version::V0_2_0.is_legacy_result());
        assert!(!Version::V0_3_0.is_legacy_result());
        assert!(Version::V0_3_1.ips_have_version());
        assert!(Version::V0_4_0.ips_have_version());
        assert!(!Version::V1_0_0.ips_have_version());
        assert!(!Version::V0_2_0.ips_have_version());
    }

    #[test]
    fn negotiation_rejects_unknown_and_unsupported_with_code_1() {
        assert_eq!(negotiate("1.1.0", &ALL_VERSIONS), Ok(Version::V1_1_0));
        assert_eq!(negotiate("", &ALL_VERSIONS), Ok(Version::V0_1_0));
        let e = negotiate("9.9.9", &ALL_VERSIONS).unwrap_err();
        assert_eq!(e.code, ErrorCode::IncompatibleVersion);
        assert!(e.details.contains("9.9.9"));
        let e = negotiate("0.2.0", &[Version::V1_0_0, Version::V1_1_0]).unwrap_err();
        assert_eq!(e.code, ErrorCode::IncompatibleVersion);
    }

    #[test]
    fn version_answer_echoes_input() {
        let a = VersionInfo::answer(br#"{"cniVersion":"0.4.0"}"#, &ALL_VERSIONS);
        assert_eq!(a.cni_version, "0.4.0");
        assert_eq!(a.supported_versions.len(), 7);
        assert_eq!(a.supported_versions[6], "1.1.0");
        let b = VersionInfo::answer(b"", &ALL_VERSIONS);
        assert_eq!(b.cni_version, "1.1.0");
    }
}
