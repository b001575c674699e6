"""hapy: is it safe to touch this master? hacli's verdicts from Python.

A thin binding over the Rust core (``hacore``): load a topology and an
observed state, ask whether an action on a node is safe now, and get a
verdict with every reason::

    import hapy
    topo = hapy.Topology.from_file("examples/topology/ha.yaml")
    state = hapy.State.from_file("examples/state/ha-healthy.yaml", topo)
    # The example state was observed at 2026-05-21T12:00:00Z: a verdict is
    # as of now unless ``at`` says otherwise, and a stale state is unknown.
    verdict = hapy.evaluate("reboot", "k8s-master-2", topo, state, at="2026-05-21T12:00:00Z")
    print(verdict.decision, [f.rule for f in verdict.blocking])

Against a live cluster (the kubeadm backend), ``hapy.observe(topology,
kubeconfig=..., etcd=[...], timeout=2.0)`` returns a ``State`` and
``hapy.gate(action, node, topology, policy, lock=False, ...)`` a ``Verdict``
evaluated with the real clock, optionally taking the disruption lock.

Planned disruptions (``hapy.disrupt(action, node, topology, journal=...,
sim_state=...)``) and rolling ones (``hapy.roll(action, topology,
journal_dir=..., sim_state=..., soak=...)``) run hacli's disruption plans
with a journal, rehearsed on the simulated backend, and return the report as
a dict.

The failover drill (``hapy.drill(node, topology, planned=..., kill=...,
journal=..., rate=..., on_event=...)``) runs ``hacli drill``'s sequence
(``haops::drill``) and returns a ``DrillResult`` with the ``hacli.drill/v1``
report as a dict.

``evaluate`` fails closed: anything that could not be observed makes the
verdict ``"unknown"``, which is never allowed. Bad input raises
``hapy.ConfigError`` (a ``hapy.Error``) with the core's message, which names
file:line:column and the field.
"""

from hapy._hapy import (
    ConfigError,
    DrillResult,
    Error,
    Finding,
    Membership,
    ObserveError,
    Policy,
    Projection,
    State,
    Topology,
    Verdict,
    __version__,
    actions,
    disrupt,
    drill,
    evaluate,
    gate,
    observe,
    policies,
    quorum,
    roll,
    status,
    tolerance,
)

__all__ = [
    "ConfigError",
    "DrillResult",
    "Error",
    "Finding",
    "Membership",
    "ObserveError",
    "Policy",
    "Projection",
    "State",
    "Topology",
    "Verdict",
    "__version__",
    "actions",
    "disrupt",
    "drill",
    "evaluate",
    "gate",
    "observe",
    "policies",
    "quorum",
    "roll",
    "status",
    "tolerance",
]
