//! Progress from Python while a long operation runs (`plan`, `apply`,
//! `disrupt`, `roll`, `remove_master`, `replace_master`, `drill`): each
//! `haops::Event` goes, as it happens, to the caller's `on_event` (a dict)
//! or, without one, to the `hapy` logger, so a pipeline script sees what
//! `hacli` prints on stderr. The GIL is released while the operation runs
//! and taken only to hand an event over.

use pyo3::prelude::*;
use pyo3::types::PyDict;

/// An event as `on_event` receives it: `kind` ("note", "warning" or
/// "step"), `message` (the line hacli prints) and, for a step, `step` (its
/// id) and `status` ("begun", "skipped", "would-apply", "done", "failed",
/// "rolling-back"). Phases and the certificate-key marker are not handed
/// over.
pub(crate) struct Progress {
    kind: &'static str,
    message: String,
    step: Option<(String, &'static str)>,
}

impl Progress {
    pub(crate) fn of(e: haops::Event) -> Option<Self> {
        use hacore::exec::Event as E;
        let (kind, message, step) = match e {
            haops::Event::Note(m) => ("note", m, None),
            haops::Event::Warning(m) => ("warning", m, None),
            haops::Event::Step(s) => {
                let line = haops::events::step_line(&s)?;
                let (id, status) = match s {
                    E::Step { id, .. } => (id, "begun"),
                    E::Skipped { id, .. } => (id, "skipped"),
                    E::WouldApply { id } => (id, "would-apply"),
                    E::Done { id } => (id, "done"),
                    E::Failed { id, .. } => (id, "failed"),
                    E::RollingBack { id } => (id, "rolling-back"),
                    E::CertificateKey => return None,
                };
                ("step", line, Some((id, status)))
            }
            _ => return None,
        };
        Some(Self {
            kind,
            message,
            step,
        })
    }

    fn hand_over(self, py: Python<'_>, on_event: Option<&Py<PyAny>>) -> PyResult<()> {
        let Some(cb) = on_event else {
            let level = if self.kind == "warning" {
                "warning"
            } else {
                "info"
            };
            let logger = py.import("logging")?.call_method1("getLogger", ("hapy",))?;
            logger.call_method1(level, (self.message,))?;
            return Ok(());
        };
        let d = PyDict::new(py);
        d.set_item("kind", self.kind)?;
        d.set_item("message", self.message)?;
        if let Some((id, status)) = self.step {
            d.set_item("step", id)?;
            d.set_item("status", status)?;
        }
        cb.call1(py, (d,))?;
        Ok(())
    }
}

/// Run `f` without the GIL, its events handed over as they happen. An
/// exception `on_event` (or the logger) raises is raised after `f` ends
/// (an operation is never left half-done because a callback failed),
/// unless `f` itself failed: its error is the one raised.
pub(crate) fn run<T: Send>(
    py: Python<'_>,
    on_event: Option<&Py<PyAny>>,
    f: impl FnOnce(&mut dyn FnMut(haops::Event)) -> PyResult<T> + Send,
) -> PyResult<T> {
    let mut raised: Option<PyErr> = None;
    let out = py.detach(|| {
        let mut sink = |e: haops::Event| {
            let Some(p) = Progress::of(e) else { return };
            Python::attach(|py| {
                if let (Err(e), None) = (p.hand_over(py, on_event), &raised) {
                    raised = Some(e);
                }
            });
        };
        f(&mut sink)
    });
    let out = out?;
    match raised {
        Some(e) => Err(e),
        None => Ok(out),
    }
}
