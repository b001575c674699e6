//! The journal file of a run, and the one guard every operation uses
//! before it appends to one.

use std::path::Path;

pub use hacore::exec::FileJournal;

use crate::Error;

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
    use hacore::exec::{Journal, Record};

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
