//! CNI errors: the spec's well-known codes and the error JSON a plugin prints on stdout.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A CNI error code. Codes 0–99 are reserved by the spec; 100 and above are plugin specific.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 1: incompatible CNI version.
    IncompatibleVersion,
    /// 2: unsupported field in network configuration (the message names key and value).
    UnsupportedField,
    /// 3: container unknown or does not exist.
    UnknownContainer,
    /// 4: invalid necessary environment variables (the message names them).
    InvalidEnvironment,
    /// 5: I/O failure.
    IoFailure,
    /// 6: failed to decode content.
    DecodingFailure,
    /// 7: invalid network config.
    InvalidNetworkConfig,
    /// 11: try again later (a transient condition).
    TryAgainLater,
    /// 50: the plugin is not available (cannot service ADD requests).
    NotAvailable,
    /// 51: the plugin is not available, and existing containers may have limited connectivity.
    NotAvailableLimitedConnectivity,
    /// Any other code (plugin specific codes are 100 and above).
    Other(u32),
}

impl ErrorCode {
    /// The numeric code as printed in the error JSON.
    pub fn as_u32(self) -> u32 {
        match self {
            ErrorCode::IncompatibleVersion => 1,
            ErrorCode::UnsupportedField => 2,
            ErrorCode::UnknownContainer => 3,
            ErrorCode::InvalidEnvironment => 4,
            ErrorCode::IoFailure => 5,
            ErrorCode::DecodingFailure => 6,
            ErrorCode::InvalidNetworkConfig => 7,
            ErrorCode::TryAgainLater => 11,
            ErrorCode::NotAvailable => 50,
            ErrorCode::NotAvailableLimitedConnectivity => 51,
            ErrorCode::Other(c) => c,
        }
    }

    /// The code for a number (well-known codes map to their variant).
    pub fn from_u32(code: u32) -> ErrorCode {
        match code {
            1 => ErrorCode::IncompatibleVersion,
            2 => ErrorCode::UnsupportedField,
            3 => ErrorCode::UnknownContainer,
            4 => ErrorCode::InvalidEnvironment,
            5 => ErrorCode::IoFailure,
            6 => ErrorCode::DecodingFailure,
            7 => ErrorCode::InvalidNetworkConfig,
            11 => ErrorCode::TryAgainLater,
            50 => ErrorCode::NotAvailable,
            51 => ErrorCode::NotAvailableLimitedConnectivity,
            c => ErrorCode::Other(c),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_u32())
    }
}

/// A CNI error: code, short message and optional longer details. This is the one error type
/// of the crate; [`CniError::to_json`] renders the spec's error structure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CNI error {code}: {msg}{}", if .details.is_empty() { String::new() } else { format!(" ({})", .details) })]
pub struct CniError {
    /// The spec code.
    pub code: ErrorCode,
    /// A short message characterising the error.
    pub msg: String,
    /// A longer description (may be empty).
    pub details: String,
}

#[derive(Serialize, Deserialize)]
struct ErrorJson {
    #[serde(
        rename = "cniVersion",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    cni_version: String,
    code: u32,
    #[serde(default)]
    msg: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    details: String,
}

impl CniError {
    /// An error with a code and message, no details.
    pub fn new(code: ErrorCode, msg: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// Attach details.
    pub fn with_details(mut self, details: impl Into<String>) -> CniError {
        self.details = details.into();
        self
    }

    /// Code 4, naming the invalid variable(s) in the message.
    pub fn invalid_env(msg: impl Into<String>) -> CniError {
        CniError::new(ErrorCode::InvalidEnvironment, msg)
    }

    /// Code 6.
    pub fn decode(msg: impl Into<String>) -> CniError {
        CniError::new(ErrorCode::DecodingFailure, msg)
    }

    /// Code 7.
    pub fn invalid_config(msg: impl Into<String>) -> CniError {
        CniError::new(ErrorCode::InvalidNetworkConfig, msg)
    }

    /// Code 5.
    pub fn io(msg: impl Into<String>) -> CniError {
        CniError::new(ErrorCode::IoFailure, msg)
    }

    /// The error structure as JSON: `{"cniVersion", "code", "msg", "details"}` (details and
    /// cniVersion omitted when empty).
    pub fn to_json(&self, cni_version: &str) -> serde_json::Value {
        serde_json::to_value(ErrorJson {
            cni_version: cni_version.to_string(),
            code: self.code.as_u32(),
            msg: self.msg.clone(),
            details: self.details.clone(),
        })
        .unwrap_or(serde_json::Value::Null)
    }

    /// The error structure as printed on stdout: 4-space indented, keys in the spec's order.
    pub fn to_json_string(&self, cni_version: &str) -> String {
        crate::result::pretty(&ErrorJson {
            cni_version: cni_version.to_string(),
            code: self.code.as_u32(),
            msg: self.msg.clone(),
            details: self.details.clone(),
        })
    }

    /// Parse an error structure printed by another plugin (e.g. a delegate).
    pub fn from_json(bytes: &[u8]) -> Option<CniError> {
        let e: ErrorJson = serde_json::from_slice(bytes).ok()?;
        Some(CniError {
            code: ErrorCode::from_u32(e.code),
            msg: e.msg,
            details: e.details,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_match_the_spec_table() {
        let table = [
            (ErrorCode::IncompatibleVersion, 1),
            (ErrorCode::UnsupportedField, 2),
            (ErrorCode::UnknownContainer, 3),
            (ErrorCode::InvalidEnvironment, 4),
            (ErrorCode::IoFailure, 5),
            (ErrorCode::DecodingFailure, 6),
            (ErrorCode::InvalidNetworkConfig, 7),
            (ErrorCode::TryAgainLater, 11),
            (ErrorCode::NotAvailable, 50),
            (ErrorCode::NotAvailableLimitedConnectivity, 51),
            (ErrorCode::Other(101), 101),
        ];
        for (code, n) in table {
            assert_eq!(code.as_u32(), n);
            assert_eq!(ErrorCode::from_u32(n), code);
        }
    }

    #[test]
    fn error_json_has_the_spec_keys() {
        let e = CniError::invalid_config("Invalid Configuration")
            .with_details("Network 192.168.0.0/31 too small to allocate from.");
        let v = e.to_json("1.1.0");
        assert_eq!(v["cniVersion"], "1.1.0");
        assert_eq!(v["code"], 7);
        assert_eq!(v["msg"], "Invalid Configuration");
        assert_eq!(
            v["details"],
            "Network 192.168.0.0/31 too small to allocate from."
        );
        let back = CniError::from_json(v.to_string().as_bytes());
        assert_eq!(back, Some(e));
    }

    #[test]
    fn empty_details_are_omitted() {
        let v = CniError::io("disk").to_json("");
        assert!(v.get("details").is_none());
        assert!(v.get("cniVersion").is_none());
        assert_eq!(v["code"], 5);
    }
}
