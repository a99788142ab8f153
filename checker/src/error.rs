//! Errors of reading a history: they name the file, the line and the field.

use std::fmt;
use std::path::PathBuf;

/// A history that cannot be read, with where and why.
#[derive(Debug, thiserror::Error)]
pub struct ReadError {
    /// The file, when reading from one.
    pub file: Option<PathBuf>,
    /// 1-based line number, 0 when the error is not about one line (e.g. I/O).
    pub line: u64,
    /// The field at fault, when one is.
    pub field: Option<&'static str>,
    /// What is wrong.
    pub message: String,
}

impl ReadError {
    /// An error on a line, optionally about one field.
    pub fn at(line: u64, field: Option<&'static str>, message: impl Into<String>) -> Self {
        ReadError {
            file: None,
            line,
            field,
            message: message.into(),
        }
    }

    /// The same error, naming the file it came from.
    pub fn in_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.file = Some(file.into());
        self
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(p) => write!(f, "{}", p.display())?,
            None => f.write_str("<input>")?,
        }
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if let Some(field) = self.field {
            write!(f, ": field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}
