//! Diagnostics: what `renewd check` prints, one per line, as `FILE:LINE:COL: error: message`.

use std::fmt;
use std::path::{Path, PathBuf};

/// At most this many diagnostics are shown per file; one line sums up the rest. A file with thousands of
/// unknown keys is one mistake (a wrong file, a bad paste), and its first errors say which.
pub(crate) const MAX_DIAGS_PER_FILE: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem found in a configuration file (or a file it points to).
///
/// Messages never contain secret material: only paths, key names and the YAML text around the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based; `None` when the problem is about the file as a whole (unreadable, missing key).
    pub line: Option<usize>,
    /// 1-based, in characters.
    pub col: Option<usize>,
    pub severity: Severity,
    pub message: String,
    /// For the line that stands for the errors left out of a file with too many (see
    /// [`Diagnostic::summary`]): how many errors it stands for. 0 for every other diagnostic.
    pub omitted: usize,
}

impl Diagnostic {
    pub fn error(file: &Path, pos: Option<Pos>, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, file, pos, message)
    }

    pub fn warning(file: &Path, pos: Option<Pos>, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, file, pos, message)
    }

    fn new(severity: Severity, file: &Path, pos: Option<Pos>, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.to_path_buf(),
            line: pos.map(|p| p.line),
            col: pos.map(|p| p.col),
            severity,
            message: message.into(),
            omitted: 0,
        }
    }

    /// The one line that replaces the diagnostics of `file` beyond the first few: "… and N more errors
    /// in this file". An error when any error was left out, else a warning.
    pub(crate) fn summary(file: &Path, errors: usize, warnings: usize) -> Self {
        let plural =
            |n: usize, what: &str| format!("{n} more {what}{}", if n == 1 { "" } else { "s" });
        let (severity, what) = match (errors, warnings) {
            (0, w) => (Severity::Warning, plural(w, "warning")),
            (e, 0) => (Severity::Error, plural(e, "error")),
            (e, w) => (
                Severity::Error,
                format!("{} and {}", plural(e, "error"), plural(w, "warning")),
            ),
        };
        let mut d = Self::new(
            severity,
            file,
            None,
            format!("… and {what} in this file (fix the ones above first)"),
        );
        d.omitted = errors;
        d
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        match (self.line, self.col) {
            (Some(l), Some(c)) => write!(f, ":{l}:{c}")?,
            (Some(l), None) => write!(f, ":{l}")?,
            _ => {}
        }
        write!(f, ": {}: {}", self.severity, self.message)
    }
}

impl std::error::Error for Diagnostic {}

/// Every problem found while loading (errors, and the warnings found alongside them).
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors(pub Vec<Diagnostic>);

impl ConfigErrors {
    /// Only the errors (not the warnings that came with them).
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.is_error())
    }

    /// How many errors were found, those left out of the list (files with too many) included.
    pub fn error_count(&self) -> usize {
        self.errors().map(|d| d.omitted.max(1)).sum()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl From<Diagnostic> for ConfigErrors {
    fn from(d: Diagnostic) -> Self {
        ConfigErrors(vec![d])
    }
}

/// A 1-based line and column in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// Collects diagnostics for one file.
pub(crate) struct Diags<'a> {
    pub file: &'a Path,
    pub out: &'a mut Vec<Diagnostic>,
}

impl Diags<'_> {
    pub fn err(&mut self, pos: impl Into<Option<Pos>>, msg: impl Into<String>) {
        self.out.push(Diagnostic::error(self.file, pos.into(), msg));
    }

    pub fn warn(&mut self, pos: impl Into<Option<Pos>>, msg: impl Into<String>) {
        self.out
            .push(Diagnostic::warning(self.file, pos.into(), msg));
    }

    /// Errors collected so far (warnings not counted).
    pub fn error_count(&self) -> usize {
        self.out.iter().filter(|d| d.is_error()).count()
    }

    pub fn push(&mut self, d: Diagnostic) {
        self.out.push(d);
    }
}
