//! Reading YAML/JSON documents with positions: parse errors and validation
//! errors both come back as `file:line:column`.
//!
//! Deserialisation goes through `serde-saphyr`, which reports where a syntax
//! or type error sits. Validation runs on the typed value and names a field by
//! its path (`nodes[2].address`); [`locate`] walks the YAML events once more
//! to turn that path into a line and column (both in [`crate::diagnostic`],
//! re-exported here, so that [`crate::error`] names a diagnostic without
//! importing this module, which returns its errors).

use std::path::Path;

use serde::de::DeserializeOwned;

use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle};

use crate::error::Error;

pub use crate::diagnostic::{Diagnostic, Level, Position, locate};

/// Parse `text` (YAML or JSON, which is YAML) into `T`; `file` names it in errors.
///
/// YAML 1.2 booleans only (`true`/`false`; `yes`/`no`/`on`/`off` are not
/// booleans). The error names the file, line, column and the field's path,
/// each once.
pub fn parse<T: DeserializeOwned>(file: &str, text: &str) -> Result<T, Error> {
    let options = serde_saphyr::options! { strict_booleans: true };
    let mut field = String::new();
    serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            field = e.path().to_string();
            e.into_inner()
        })
    })
    .map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line() as usize, l.column() as usize))
            .unwrap_or((0, 0));
        let mut message = first_line(&e.to_string());
        if message.contains("offset component") {
            message.push_str(
                " (a time needs its offset: 2026-05-21T12:00:00Z, or 2026-05-21T14:00:00+02:00)",
            );
        }
        if let Some(f) = folded_scalars(text)
            .into_iter()
            .find(|f| (f.line..=f.end_line).contains(&line))
        {
            message.push_str(&format!(" ({})", f.explain()));
        }
        Error::Parse {
            file: file.to_string(),
            line,
            column,
            field: tidy_path(&field),
            message,
        }
    })
}

/// A plain (unquoted) value written over more than one line. YAML folds the
/// lines into one value; in a configuration file that is nearly always a
/// line indented too far, swallowed by the value above it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folded {
    /// Where the value starts (1-based).
    pub line: usize,
    /// Its column (1-based).
    pub column: usize,
    /// The last line it took.
    pub end_line: usize,
    /// The value as YAML read it.
    pub value: String,
}

impl Folded {
    /// What happened, and what to do.
    pub fn explain(&self) -> String {
        let lines = if self.end_line == self.line + 1 {
            format!("line {} was read as part of it", self.end_line)
        } else {
            format!(
                "lines {}-{} were read as part of it",
                self.line + 1,
                self.end_line
            )
        };
        format!(
            "the value read is \"{}\": {lines}; indent a key of its own like the key above it, or quote the value if it really spans lines",
            self.value
        )
    }

    /// As a warning on `path`, located.
    pub fn warning(&self, path: &str) -> Diagnostic {
        let mut d = Diagnostic::warning(path, self.explain());
        d.position = Some(Position {
            line: self.line,
            column: self.column,
        });
        d
    }
}

/// Every plain value of `text` that spans lines (see [`Folded`]); none when
/// the text does not parse.
pub fn folded_scalars(text: &str) -> Vec<Folded> {
    let mut found = Vec::new();
    for item in Parser::new_from_str(text) {
        let Ok((event, span)) = item else {
            break;
        };
        if let Event::Scalar(value, ScalarStyle::Plain, ..) = &event {
            let (start, end) = (span.start.line(), span.end.line());
            if end > start {
                found.push(Folded {
                    line: start,
                    column: span.start.col() + 1,
                    end_line: end,
                    value: value.to_string(),
                });
            }
        }
    }
    found
}

/// Read and parse a file.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<(T, String), Error> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|cause| Error::Io {
        file: file.clone(),
        cause,
    })?;
    let value = parse(&file, &text)?;
    Ok((value, text))
}

/// serde-saphyr renders a source snippet after the first line; keep only the
/// message itself (the position is carried separately), minus the
/// "error: line L column C: " prefix and the " at line L, column C" suffix
/// it may add.
fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or(s).trim();
    let mut line = line.strip_prefix("error: ").unwrap_or(line);
    if let Some(rest) = line.strip_prefix("line ")
        && let Some(idx) = rest.find(": ")
        && rest[..idx].contains("column")
    {
        line = &rest[idx + 2..];
    }
    strip_location_suffix(line).to_string()
}

/// A serde path as a field path: `.` (the document) is empty, and a map
/// key (`probeErrors.?`) is named by its map.
fn tidy_path(path: &str) -> String {
    let mut p = path;
    while let Some(rest) = p.strip_suffix(".?").or_else(|| p.strip_suffix('?')) {
        p = rest;
    }
    if p == "." {
        String::new()
    } else {
        p.to_string()
    }
}

/// `msg at line 3, column 7` -> `msg`.
fn strip_location_suffix(s: &str) -> &str {
    let Some(idx) = s.rfind(" at line ") else {
        return s;
    };
    let tail = &s[idx + " at line ".len()..];
    let is_location = tail.split_once(", column ").is_some_and(|(l, c)| {
        !l.is_empty()
            && !c.is_empty()
            && l.bytes().all(|b| b.is_ascii_digit())
            && c.bytes().all(|b| b.is_ascii_digit())
    });
    if is_location { &s[..idx] } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "cluster: lab\nnodes:\n  - name: a\n    address: 10.0.0.1\n  - name: b\n    address: 10.0.0.2\nlb:\n  pool: p\n";

    #[test]
    fn a_value_that_swallowed_the_next_line_is_shown_as_read() {
        // `port` indented too far: YAML folds it into the address.
        let text = "endpoint:\n  address: 10.0.0.1\n    port: 6443\n";
        let folded = folded_scalars(text);
        assert_eq!(folded.len(), 1, "{folded:?}");
        assert_eq!((folded[0].line, folded[0].end_line), (2, 3));
        let e =
            parse::<std::collections::BTreeMap<String, std::collections::BTreeMap<String, u16>>>(
                "t.yaml", text,
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("the value read is \"10.0.0.1 port\""), "{e}");
        assert!(e.contains("line 3 was read as part of it"), "{e}");
        // Quoted values and one-line values are not reported.
        assert!(folded_scalars("a: \"x\n  y\"\nb: c\n").is_empty());
    }

    #[test]
    fn a_time_without_offset_gets_an_example() {
        let e = parse::<std::collections::BTreeMap<String, jiff::Timestamp>>(
            "s.yaml",
            "observedAt: 2026-05-21T12:00:00\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("2026-05-21T12:00:00Z"), "{e}");
    }

    #[test]
    fn locates_nested_fields() {
        assert_eq!(
            locate(DOC, "nodes[1].address"),
            Some(Position { line: 6, column: 5 })
        );
        assert_eq!(
            locate(DOC, "nodes[0]"),
            Some(Position { line: 3, column: 5 })
        );
        assert_eq!(
            locate(DOC, "lb.pool"),
            Some(Position { line: 8, column: 3 })
        );
        assert_eq!(
            locate(DOC, "cluster"),
            Some(Position { line: 1, column: 1 })
        );
        assert_eq!(locate(DOC, "nodes[7].name"), None);
        assert_eq!(locate(DOC, "nope"), None);
    }

    #[test]
    fn parse_errors_carry_position() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct T {
            a: u16,
        }
        let err = parse::<T>("t.yaml", "a: 1\nb: 2\n").unwrap_err();
        let Error::Parse {
            line,
            column,
            message,
            ..
        } = err
        else {
            panic!("wrong error {err:?}")
        };
        assert_eq!((line, column), (2, 1));
        assert!(message.contains("unknown field `b`"), "{message}");
    }
}
