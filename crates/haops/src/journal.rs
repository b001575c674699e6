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
