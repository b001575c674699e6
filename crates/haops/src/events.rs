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
