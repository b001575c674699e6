//! The journal file of a run, and the one guard every operation uses
//! before it appends to one. The executor (`hacore::exec`) writes through
//! the `Journal` trait and does no I/O; the file is here: how a crash's
//! torn last line is judged (`hacore::exec::intact`) and how records are
//! read (`hacore::exec::parse_journal`) stay pure in the core.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use hacore::exec::{self, ExecError, Journal, Record};

use crate::Error;

/// An append-only JSON-lines journal file, synced to disk on every append.
#[derive(Debug)]
pub struct FileJournal {
    path: PathBuf,
    file: File,
    records: Vec<Record>,
}

impl FileJournal {
    /// Open (or create) a journal. A torn last line (a crash mid-write: a
    /// record cut short, or a line of zeros) is cut off the file, and the
    /// cut synced, before anything is appended, so the next record starts
    /// on a line of its own; a last record complete but for its newline
    /// gets its newline. Any other unreadable line is an error naming its
    /// line.
    pub fn open(path: &Path) -> Result<FileJournal, ExecError> {
        let io = |e: std::io::Error| ExecError::Journal(format!("{}: {e}", path.display()));
        let created = !path.exists();
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        if created {
            // The new name must survive a crash too.
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
            }
        }
        let mut bytes = Vec::new();
        (&file).read_to_end(&mut bytes).map_err(io)?;
        let intact = exec::intact(&bytes);
        if intact.keep < bytes.len() {
            file.set_len(intact.keep as u64).map_err(io)?;
            file.sync_all().map_err(io)?;
            bytes.truncate(intact.keep);
        }
        if intact.newline {
            file.write_all(b"\n").map_err(io)?;
            file.sync_data().map_err(io)?;
            bytes.push(b'\n');
        }
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            ExecError::Journal(format!(
                "{}: not UTF-8 at byte {}",
                path.display(),
                e.valid_up_to()
            ))
        })?;
        let records = exec::parse_journal(&path.display().to_string(), text)?;
        Ok(FileJournal {
            path: path.to_path_buf(),
            file,
            records,
        })
    }
}

impl Journal for FileJournal {
    fn records(&self) -> &[Record] {
        &self.records
    }
    fn append(&mut self, record: Record) -> Result<(), ExecError> {
        let io = |e: std::io::Error| ExecError::Journal(format!("{}: {e}", self.path.display()));
        let mut line =
            serde_json::to_string(&record).map_err(|e| ExecError::Journal(e.to_string()))?;
        line.push('\n');
        self.file.write_all(line.as_bytes()).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        self.records.push(record);
        Ok(())
    }
}

/// Open (or create) the journal of a run. One that already records a run
/// is refused unless the caller resumes it (or only looks: a dry run).
pub fn open_for_run(path: &Path, resume: bool, dry_run: bool) -> Result<FileJournal, Error> {
    let journal = FileJournal::open(path)?;
    if !hacore::exec::Journal::records(&journal).is_empty() && !resume && !dry_run {
        return Err(Error::JournalInUse {
            journal: path.display().to_string(),
        });
    }
    Ok(journal)
}

/// The lock identity of the run a journal records: `WHO@HOST:JOURNAL`
/// (the journal's absolute path), so a run resumed after a crash (same
/// journal) takes the lock its first run still holds instead of waiting
/// out its TTL, and another run (another journal) is denied.
pub fn run_identity(who: &str, journal: &Path) -> String {
    let journal = std::path::absolute(journal).unwrap_or_else(|_| journal.to_path_buf());
    format!("{who}@{}:{}", hostname(), journal.display())
}

/// This host's name (`HOSTNAME`, else `/etc/hostname`), for lock
/// identities.
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_that_records_a_run_is_refused_unless_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.jsonl");
        let mut j = open_for_run(&path, false, false).unwrap();
        j.append(Record::Done {
            step: "a".into(),
            at: jiff::Timestamp::UNIX_EPOCH,
            skipped: false,
        })
        .unwrap();
        drop(j);
        let e = open_for_run(&path, false, false).unwrap_err();
        assert!(e.to_string().contains("already records a run"), "{e}");
        assert_eq!(open_for_run(&path, true, false).unwrap().records().len(), 1);
        assert_eq!(open_for_run(&path, false, true).unwrap().records().len(), 1);
    }
}
