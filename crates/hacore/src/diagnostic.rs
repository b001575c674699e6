//! Problems found in a document, and where they sit: [`Diagnostic`],
//! [`Position`], and [`locate`], which turns a field path into a line and
//! column. A module of its own, below both [`crate::error`] (which carries
//! diagnostics) and [`crate::source`] (which returns errors).

use std::fmt;

use serde_saphyr::granit_parser::{Event, Parser};

/// A position in a source file, 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

/// One problem found in a document: where it is, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    /// `error` or `warning`.
    pub level: Level,
    /// The field path, such as `nodes[2].address`.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// File name, when the document came from a file or a named string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Line and column of the field, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
}

/// How bad a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// The document is rejected.
    Error,
    /// The document is accepted, but something is likely wrong or unsafe.
    Warning,
}

impl Diagnostic {
    /// An error at `path`.
    pub fn error(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Level::Error, path, message)
    }

    /// A warning at `path`.
    pub fn warning(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Level::Warning, path, message)
    }

    fn new(level: Level, path: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            level,
            path: path.into(),
            message: message.into(),
            file: None,
            position: None,
        }
    }

    /// Attach file name and position, looked up in `text`.
    /// A position already known (set where the problem was found) is kept.
    pub fn locate_in(&mut self, file: &str, text: &str) {
        self.file = Some(file.to_string());
        if self.position.is_none() {
            self.position = locate(text, &self.path);
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}:")?;
            if let Some(p) = self.position {
                write!(f, "{}:{}:", p.line, p.column)?;
            }
            f.write_str(" ")?;
        }
        let level = match self.level {
            Level::Error => "error",
            Level::Warning => "warning",
        };
        if self.path.is_empty() {
            write!(f, "{level}: {}", self.message)
        } else {
            write!(f, "{level}: {}: {}", self.path, self.message)
        }
    }
}

#[derive(Debug, PartialEq)]
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

fn split_path(path: &str) -> Option<Vec<Seg<'_>>> {
    let mut segs = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            segs.push(Seg::Key(key));
        }
        while let Some(stripped) = rest.strip_prefix('[') {
            let end = stripped.find(']')?;
            segs.push(Seg::Index(stripped[..end].parse().ok()?));
            rest = &stripped[end + 1..];
        }
    }
    Some(segs)
}

/// Find the line and column of the node at `path` (`a.b[3].c`) in a YAML text.
///
/// Returns the position of the value at that path; `None` if the text does not
/// parse or the path is not there. An empty path is the document's start.
pub fn locate(text: &str, path: &str) -> Option<Position> {
    let want = split_path(path)?;
    // Stack of frames: for a mapping, whether the next scalar is a key and the
    // key just read; for a sequence, the index of the next item.
    enum Frame {
        Map {
            expect_key: bool,
            key: Option<String>,
        },
        Seq {
            next: usize,
        },
    }
    let mut stack: Vec<Frame> = Vec::new();
    // The current path as owned segments.
    let mut cur: Vec<OwnedSeg> = Vec::new();
    #[derive(Debug)]
    enum OwnedSeg {
        Key(String),
        Index(usize),
    }
    let matches = |cur: &[OwnedSeg]| {
        cur.len() == want.len()
            && cur.iter().zip(&want).all(|(a, b)| match (a, b) {
                (OwnedSeg::Key(a), Seg::Key(b)) => a == b,
                (OwnedSeg::Index(a), Seg::Index(b)) => a == b,
                _ => false,
            })
    };
    for item in Parser::new_from_str(text) {
        let (event, span) = item.ok()?;
        let pos = Position {
            line: span.start.line(),
            column: span.start.col() + 1,
        };
        // A node starts: scalar, mapping or sequence. Work out its path.
        let is_node = matches!(
            event,
            Event::Scalar(..)
                | Event::MappingStart(..)
                | Event::SequenceStart(..)
                | Event::Alias(..)
        );
        if is_node {
            // Is this node a mapping key?
            if let Some(Frame::Map { expect_key, key }) = stack.last_mut()
                && *expect_key
            {
                *expect_key = false;
                let Event::Scalar(s, ..) = &event else {
                    // Complex (non-scalar) keys do not occur in our formats.
                    return None;
                };
                *key = Some(s.to_string());
                cur.push(OwnedSeg::Key(s.to_string()));
                if matches(&cur) {
                    // Point at the key: that is where the field is written.
                    return Some(pos);
                }
                cur.pop();
                continue;
            }
            // A value: push its segment.
            match stack.last_mut() {
                Some(Frame::Map { expect_key, key }) => {
                    cur.push(OwnedSeg::Key(key.take().unwrap_or_default()));
                    *expect_key = true;
                }
                Some(Frame::Seq { next }) => {
                    cur.push(OwnedSeg::Index(*next));
                    *next += 1;
                }
                None => {}
            }
            if matches(&cur) {
                return Some(pos);
            }
            match event {
                Event::MappingStart(..) => stack.push(Frame::Map {
                    expect_key: true,
                    key: None,
                }),
                Event::SequenceStart(..) => stack.push(Frame::Seq { next: 0 }),
                _ => {
                    if !stack.is_empty() || !cur.is_empty() {
                        cur.pop();
                    }
                }
            }
        } else if matches!(event, Event::MappingEnd | Event::SequenceEnd) {
            stack.pop();
            cur.pop();
        }
    }
    None
}
