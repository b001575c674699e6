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
        Error::Parse {
            file: file.to_string(),
            line,
            column,
            field: tidy_path(&field),
            message: first_line(&e.to_string()),
        }
    })
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
