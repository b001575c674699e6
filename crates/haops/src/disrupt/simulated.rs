//! The simulated cluster as one more backend bundle: the
//! `hacore::in_memory` double, kept in a state file between runs, with
//! failures injected on demand. A rehearsal: nothing real is touched.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use hacore::Topology;
use hacore::backend::Backends;
use hacore::disrupt::Lock;
use hacore::in_memory::{InMemoryCluster, InMemoryHandle};
use hacore::units::Dur;

use crate::Error;

/// Where a rehearsal keeps the simulated cluster, and what fails in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Simulated {
    /// The simulated cluster's state: read if it exists (else made from
    /// the topology), written back afterwards (not in a dry run).
    pub state: PathBuf,
    /// Injected failures, `OP/NODE` (e.g. `upgrade/m2`).
    pub fail: Vec<String>,
}

impl Simulated {
    /// The state file next to a disruption's journal (`JOURNAL.sim.json`).
    pub fn beside(journal: &Path, fail: Vec<String>) -> Simulated {
        let mut p = journal.as_os_str().to_owned();
        p.push(".sim.json");
        Simulated {
            state: PathBuf::from(p),
            fail,
        }
    }

    fn load(&self, from: &Topology, to: &Topology) -> Result<InMemoryCluster, Error> {
        let file = || self.state.display().to_string();
        let setting = |why: String| Error::Setting { what: file(), why };
        let mut sim: InMemoryCluster = match std::fs::read_to_string(&self.state) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| setting(format!("not a simulated cluster: {e}")))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                InMemoryCluster::new(from, to, jiff::Timestamp::now())
            }
            Err(e) => return Err(setting(format!("cannot read: {e}"))),
        };
        for f in &self.fail {
            if !f.contains('/') {
                return Err(Error::Setting {
                    what: format!("failure `{f}`"),
                    why: "expected OP/NODE, e.g. upgrade/m2".into(),
                });
            }
            sim.fail
                .insert(f.clone(), format!("injected failure ({f})"));
        }
        Ok(sim)
    }

    fn save(&self, sim: &InMemoryCluster) -> Result<(), Error> {
        let mut sim = sim.clone();
        sim.fail.clear();
        let text = serde_json::to_string_pretty(&sim).map_err(|e| Error::Setting {
            what: self.state.display().to_string(),
            why: e.to_string(),
        })?;
        std::fs::write(&self.state, text).map_err(|e| Error::Setting {
            what: self.state.display().to_string(),
            why: format!("cannot write: {e}"),
        })
    }

    /// Run `f` with backends that all point at the simulated cluster (its
    /// lock included; a wait advances its clock), then write the state
    /// back unless `dry_run`, also when `f` failed.
    pub(crate) fn with<R>(
        &self,
        from: &Topology,
        to: &Topology,
        dry_run: bool,
        f: impl FnOnce(&mut Backends<'_>, &mut dyn Lock, &mut dyn FnMut(Dur)) -> R,
    ) -> Result<R, Error> {
        let sim: Rc<RefCell<InMemoryCluster>> = self.load(from, to)?.shared();
        let mut lock = InMemoryHandle(sim.clone());
        let clock = sim.clone();
        let mut wait = |d: Dur| clock.borrow_mut().now += d.0;
        let r = hacore::in_memory::with_backends(&sim, |b| f(b, &mut lock, &mut wait));
        if !dry_run {
            self.save(&sim.borrow())?;
        }
        Ok(r)
    }
}
