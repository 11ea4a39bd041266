//! The crate's error type: every failure names what failed and on what input.

use std::fmt;

/// The kind of a validation failure, mirroring the Kubernetes API server's `field.Error` types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// A required field is missing or empty.
    Required,
    /// The value is not valid for the field.
    Invalid,
    /// The value is not one of the supported values.
    NotSupported,
    /// The field or combination of fields is not allowed.
    Forbidden,
}

/// One validation failure, pointing at the field like the API server does
/// (`spec.ingress[0].ports[1].endPort: must be >= port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field path, e.g. `spec.ingress[0].ports[1].endPort`.
    pub path: String,
    /// The kind of failure.
    pub kind: FieldErrorKind,
    /// The offending value as written (empty when there is none).
    pub value: String,
    /// What is wrong, in words.
    pub detail: String,
}

impl FieldError {
    pub(crate) fn new(
        path: impl Into<String>,
        kind: FieldErrorKind,
        value: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        FieldError {
            path: path.into(),
            kind,
            value: value.into(),
            detail: detail.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "{}: {}", self.path, self.detail)
        } else {
            write!(f, "{}: {} (got {:?})", self.path, self.detail, self.value)
        }
    }
}

/// A list of field errors, displayed one per `; `.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldErrors(pub Vec<FieldError>);

impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// The input format of a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// YAML (one or more documents).
    Yaml,
    /// JSON.
    Json,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Yaml => "YAML",
            Format::Json => "JSON",
        })
    }
}

/// Where in the input an error was found (1-based), when the parser knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {} column {}", self.line, self.column)
    }
}

fn loc(l: &Option<Location>) -> String {
    l.map(|l| format!(" at {l}")).unwrap_or_default()
}

/// Everything that can go wrong in cnet-policy's pure core.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The text is not well-formed YAML/JSON, or a value has the wrong type.
    #[error("{format} document {document}{}: {message}", loc(.location))]
    Syntax {
        /// Input format.
        format: Format,
        /// 0-based index of the document (YAML multi-document stream or List item).
        document: usize,
        /// Where, when known.
        location: Option<Location>,
        /// The parser's message.
        message: String,
    },
    /// The document is an API object this entry point does not accept.
    #[error("document {document}: unsupported object {api_version}/{kind}: {reason}")]
    UnsupportedKind {
        /// 0-based index of the document.
        document: usize,
        /// The object's `apiVersion`.
        api_version: String,
        /// The object's `kind`.
        kind: String,
        /// Why it is not accepted.
        reason: String,
    },
    /// The object is well-formed but the Kubernetes API server would reject it.
    #[error("{object} is invalid: {errors}")]
    Invalid {
        /// `NetworkPolicy ns/name`.
        object: String,
        /// Every failure found, in field order.
        errors: FieldErrors,
    },
    /// A `projectcalico.org/v3` object is invalid (field path and reason; selector errors
    /// carry the column).
    #[error("{object} is invalid: {field}: {message}")]
    Calico {
        /// `GlobalNetworkPolicy name`, `NetworkPolicy ns/name`, ...
        object: String,
        /// Field path, e.g. `spec.ingress[0].source.selector`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A conversion from another representation (e.g. k8s-openapi types) failed.
    #[error("conversion of {object}: {message}")]
    Conversion {
        /// What was converted.
        object: String,
        /// What went wrong.
        message: String,
    },
}

/// Result alias for this crate.
pub type Result<T, E = PolicyError> = std::result::Result<T, E>;
