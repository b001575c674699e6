//! What a live operation reports while it runs: the executor's step events
//! and the operation's own notes, each with the moment it happened, so a
//! frontend can draw a progress bar, a drill can put them on its time
//! axis, and Python can receive them in a callback.

/// One thing that happened during an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The executor's report on a step (begun, skipped, done, failed,
    /// rolled back).
    Step(hacore::exec::Event),
    /// A phase of the operation itself is over (`setup`, `observe`,
    /// `decide`, `move-leader`, `lock`, ...), with how long it took.
    Phase {
        /// Its name.
        name: &'static str,
        /// How long it took.
        took: std::time::Duration,
    },
    /// A line for a person (leadership moved, a lock taken, a wait).
    Note(String),
    /// Something was wrong but the operation went on (it is in the result
    /// too when it matters for the verdict).
    Warning(String),
}

/// Where events go: a frontend's sink. `&mut |e| ...` is one.
pub type Events<'a> = &'a mut dyn FnMut(Event);

/// A sink that drops every event.
pub fn ignore(_: Event) {}

/// Adapt an events sink to the executor's callback.
pub fn steps<'a>(events: &'a mut dyn FnMut(Event)) -> impl FnMut(hacore::exec::Event) + 'a {
    move |e| events(Event::Step(e))
}

/// An event with the moment it happened (the wall clock, as the journal's
/// records and a drill's `startedAt`), for a sink that puts events on a
/// time axis or hands them to another thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamped {
    /// When it happened.
    pub at: jiff::Timestamp,
    /// What happened.
    pub event: Event,
}

/// Adapt a sink of stamped events to an events sink: each event is
/// stamped when it is emitted.
pub fn stamped<'a>(sink: impl FnMut(Stamped) + 'a) -> impl FnMut(Event) + 'a {
    let mut sink = sink;
    move |event| {
        sink(Stamped {
            at: jiff::Timestamp::now(),
            event,
        })
    }
}

/// One line for a person about an executor event (`done ID`, `FAILED ID:
/// why`, ...); None for the ones a person need not see.
pub fn step_line(e: &hacore::exec::Event) -> Option<String> {
    use hacore::exec::Event as E;
    Some(match e {
        E::Step { id, title, .. } => format!("step {id}: {title}"),
        E::Skipped { id, why } => format!("skip {id}: {why}"),
        E::WouldApply { id } => format!("would apply {id}"),
        E::Done { id } => format!("done {id}"),
        E::Failed { id, error } => format!("FAILED {id}: {error}"),
        E::RollingBack { id } => format!("rolling back {id}"),
        E::CertificateKey => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_is_stamped_when_it_is_emitted_and_kept_in_order() {
        let mut got = Vec::new();
        let before = jiff::Timestamp::now();
        {
            let mut sink = stamped(|s| got.push(s));
            let mut steps = steps(&mut sink);
            steps(hacore::exec::Event::Done { id: "a".into() });
            steps(hacore::exec::Event::CertificateKey);
        }
        let after = jiff::Timestamp::now();
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|s| before <= s.at && s.at <= after));
        assert!(got[0].at <= got[1].at);
        assert_eq!(
            got[0].event,
            Event::Step(hacore::exec::Event::Done { id: "a".into() })
        );
        assert_eq!(
            step_line(&hacore::exec::Event::Done { id: "a".into() }).as_deref(),
            Some("done a")
        );
        assert_eq!(step_line(&hacore::exec::Event::CertificateKey), None);
    }
}
