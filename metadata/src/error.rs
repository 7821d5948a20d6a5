//! Errors raised while validating definitions and values.

use std::fmt;

/// A definition change that cannot be accepted, with a message meant for the admin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("invalid name `{name}`: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("{0}")]
    Invalid(String),
    #[error("object `{0}` does not exist")]
    UnknownObject(String),
    #[error("field `{field}` does not exist on object `{object}`")]
    UnknownField { object: String, field: String },
    #[error("{0}")]
    Conflict(String),
}

/// Stable codes of per-field input errors (`extensions.fieldErrors[].code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueCode {
    Required,
    InvalidType,
    TooLong,
    OutOfRange,
    InvalidOption,
    Unique,
    NotFound,
    ReadOnly,
    UnknownField,
    Script,
}

impl IssueCode {
    pub fn as_str(self) -> &'static str {
        match self {
            IssueCode::Required => "REQUIRED",
            IssueCode::InvalidType => "INVALID_TYPE",
            IssueCode::TooLong => "TOO_LONG",
            IssueCode::OutOfRange => "OUT_OF_RANGE",
            IssueCode::InvalidOption => "INVALID_OPTION",
            IssueCode::Unique => "UNIQUE",
            IssueCode::NotFound => "NOT_FOUND",
            IssueCode::ReadOnly => "READ_ONLY",
            IssueCode::UnknownField => "UNKNOWN_FIELD",
            IssueCode::Script => "SCRIPT",
        }
    }
}

impl fmt::Display for IssueCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem with one field of one input record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldIssue {
    /// Position of the record in a batch (0 for single writes).
    pub index: usize,
    /// The field's api name.
    pub field: String,
    pub code: IssueCode,
    pub message: String,
}

impl FieldIssue {
    pub fn new(field: impl Into<String>, code: IssueCode, message: impl Into<String>) -> Self {
        FieldIssue { index: 0, field: field.into(), code, message: message.into() }
    }

    pub fn at(mut self, index: usize) -> Self {
        self.index = index;
        self
    }
}
