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
kubeconfig=..., context=..., etcd=[...], deadline=2.0)`` returns a ``State`` and
``hapy.gate(action, node, topology, policy, lock=False, ...)`` a ``Verdict``
evaluated with the real clock, optionally moving etcd leadership away
(``move_leader=True``) and taking the disruption lock; ``hapy.lock_show``,
``lock_take`` and ``lock_release`` are ``hacli lock show|take|release``.

Planned disruptions (``hapy.disrupt(action, node, topology, journal=...,
backend="live"|"simulated", ...)``) and rolling ones (``hapy.roll(action,
topology, journal_dir=..., soak=..., ...)``) run hacli's disruption plans
through the same library function as ``hacli disrupt|roll`` (haops), with a
journal, on the live cluster or rehearsed on the simulated one
(``sim_state=...``), and return the report as a dict.

Migrations and masters, as the CLI's ``plan``, ``apply``,
``remove-master`` and ``replace-master`` (the same functions of the live
operations layer underneath): ``hapy.plan(from_, to, template=...)``,
``hapy.apply(plan, journal=..., backend="simulated"|"live")``,
``hapy.remove_master(node, topology, ...)`` and ``hapy.replace_master(old,
new, topology, target, ...)``. Every live function takes the same flat
reach keywords, named as the CLI's flags (``kubeconfig=``, ``context=``,
``ssh_identity=``, ``known_hosts=``, ``deadline=``, ...; the list is
``hapy.types.Reach``); results are typed dicts (``hapy.types``). ``hapy.simulate(plan)``, ``hapy.lb(action, topology,
node)`` and ``hapy.hypervisor("show")`` are ``hacli simulate``, ``hacli lb
ACTION`` and ``hacli hypervisor show``.

etcd snapshots and lost quorum, as the CLI's ``snapshot``, ``recover`` and
``remediate``: ``hapy.snapshot(topology, snapshot_dir=..., keep=7,
verify_restore=True)`` (or ``check=FILE``), ``hapy.recover(topology,
journal=..., confirm=False)`` (refused while quorum holds) and
``hapy.remediate(topology, memory=...)`` (the decision whether a dead
master is to be replaced; nothing is acted on).

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
    LockResult,
    Membership,
    ObserveError,
    Policy,
    Projection,
    State,
    Topology,
    Verdict,
    __version__,
    actions,
    apply,
    disrupt,
    drill,
    evaluate,
    gate,
    hypervisor,
    lb,
    lock_release,
    lock_show,
    lock_take,
    observe,
    plan,
    policies,
    quorum,
    reconcile_config,
    recover,
    remediate,
    remove_master,
    replace_master,
    roll,
    simulate,
    snapshot,
    status,
    tolerance,
    topology_init,
)

__all__ = [
    "ConfigError",
    "DrillResult",
    "Error",
    "Finding",
    "LockResult",
    "Membership",
    "ObserveError",
    "Policy",
    "Projection",
    "State",
    "Topology",
    "Verdict",
    "__version__",
    "actions",
    "apply",
    "disrupt",
    "drill",
    "evaluate",
    "gate",
    "hypervisor",
    "lb",
    "lock_release",
    "lock_show",
    "lock_take",
    "observe",
    "plan",
    "policies",
    "quorum",
    "reconcile_config",
    "recover",
    "remediate",
    "remove_master",
    "replace_master",
    "roll",
    "simulate",
    "snapshot",
    "status",
    "tolerance",
    "topology_init",
]
