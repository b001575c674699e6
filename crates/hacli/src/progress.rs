//! Progress of a live operation on stderr, drawn from its `haops::Event`s:
//! a spinner or a bar on a terminal, plain lines in a pipeline's log; and
//! how a `haops::Error` ends a command.

use hacore::exec::Event as Step;
use haops::Event;
use indicatif::{ProgressBar, ProgressStyle};

use crate::Exit;

/// Where a command's events are drawn.
pub struct Progress {
    bar: ProgressBar,
    /// A plan's bar (position = step index) rather than a spinner.
    counted: bool,
}

impl Progress {
    /// A spinner showing the step that runs (each step a line in a log).
    pub fn spinner() -> Progress {
        Progress {
            bar: ProgressBar::new_spinner(),
            counted: false,
        }
    }

    /// A bar over a plan's `steps`.
    pub fn steps(steps: usize) -> Progress {
        let bar = ProgressBar::new(steps as u64);
        bar.set_style(
            ProgressStyle::with_template("{pos:>3}/{len} [{bar:30}] {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        Progress { bar, counted: true }
    }

    /// A line above the bar (on a terminal), else on stderr.
    pub fn say(&self, line: String) {
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    /// Draw one event.
    pub fn on_event(&self, e: Event) {
        match e {
            Event::Step(s) => self.on_step(s),
            Event::Phase { .. } => {}
            Event::Note(line) => self.say(line),
            Event::Warning(line) => self.say(format!("warning: {line}")),
        }
    }

    fn on_step(&self, e: Step) {
        match e {
            Step::Step {
                index, id, title, ..
            } => {
                if self.counted {
                    self.bar.set_position(index as u64);
                    self.bar.set_message(id);
                } else if self.bar.is_hidden() {
                    eprintln!("{id}: {title}");
                } else {
                    self.bar.set_message(format!("{id}: {title}"));
                }
            }
            Step::Skipped { id, why } => self.say(format!("skip {id}: {why}")),
            Step::WouldApply { id } => self.say(format!("would apply {id}")),
            Step::Done { id } => self.say(format!("done {id}")),
            Step::CertificateKey => self.say("uploaded a fresh certificate key".into()),
            Step::Failed { id, error } => self.say(format!("FAILED {id}: {error}")),
            Step::RollingBack { id } => self.say(format!("rolling back {id}")),
        }
    }

    /// Clear the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// A refusal that is missing input rather than unsafe (new masters but no
/// `--template`): the usage error (exit 2) naming the flag, with the
/// other reasons.
pub fn missing_input(r: &hacore::plan::Refusal) -> Option<anyhow::Error> {
    let needs = hacore::plan::NEEDS_TEMPLATE;
    r.reasons.iter().any(|x| x == needs).then_some(())?;
    let others: Vec<&str> = (r.reasons.iter().map(String::as_str))
        .filter(|x| *x != needs)
        .collect();
    let mut msg =
        "--template VMID is required: new masters are cloned from a template VM".to_string();
    if !others.is_empty() {
        msg += &format!("; the plan is also refused:\n  - {}", others.join("\n  - "));
    }
    Some(anyhow::anyhow!(msg))
}

/// End `command` for a live operation's error: a cluster or inventory
/// that could not be reached or read is said on stderr and is exit 3
/// (unknown); anything else is the error (exit 2).
pub fn failed(command: &str, e: haops::Error) -> anyhow::Result<Exit> {
    if e.exit_code() == Exit::Unknown as i32 {
        eprintln!("hacli {command}: {e}");
        return Ok(Exit::Unknown);
    }
    Err(e.into())
}
