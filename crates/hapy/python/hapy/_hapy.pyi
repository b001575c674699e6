"""Type stubs for the native module ``hapy._hapy`` (checked by mypy.stubtest)."""

import datetime
import os
from collections.abc import Callable
from typing import Any, ClassVar, Literal, final

from typing_extensions import Unpack

from hapy.types import Applied, MasterResult, PlanResult, Reach, Recovered, Remediation

_Path = str | os.PathLike[str]
_Time = datetime.datetime | str
_TopologyLike = Topology | _Path | dict[str, Any]
_StateLike = State | _Path | dict[str, Any]
_PolicyLike = Policy | _Path | dict[str, Any]

__all__ = [
    "Error",
    "ConfigError",
    "ObserveError",
    "Topology",
    "State",
    "Policy",
    "Finding",
    "Verdict",
    "Membership",
    "Projection",
    "evaluate",
    "status",
    "policies",
    "actions",
    "quorum",
    "tolerance",
    "topology_init",
    "observe",
    "gate",
    "LockResult",
    "lock_show",
    "lock_take",
    "lock_release",
    "disrupt",
    "roll",
    "plan",
    "apply",
    "remove_master",
    "replace_master",
    "simulate",
    "lb",
    "hypervisor",
    "reconcile_config",
    "snapshot",
    "recover",
    "remediate",
    "DrillResult",
    "drill",
    "__version__",
]

__version__: str

class Error(Exception):
    """Base class of every error hapy raises."""

class ConfigError(Error):
    """Bad input: unreadable, unparsable or invalid file or document
    (the message names file:line:column and the field), an unknown target,
    action or policy, or a bad time."""

class ObserveError(Error):
    """A live observation failed (reserved for the live backend)."""

@final
class Topology:
    """The declared cluster. Immutable; load it once, evaluate many times."""

    @staticmethod
    def from_file(path: _Path) -> Topology: ...
    @staticmethod
    def from_yaml(text: str, name: str = "<string>") -> Topology: ...
    @staticmethod
    def from_dict(data: dict[str, Any], name: str = "<dict>") -> Topology: ...
    def to_dict(self) -> dict[str, Any]: ...
    @property
    def cluster(self) -> str: ...
    @property
    def nodes(self) -> list[str]: ...
    @property
    def control_plane_nodes(self) -> list[str]: ...
    @property
    def hypervisors(self) -> list[str]: ...
    @property
    def warnings(self) -> list[str]: ...
    def __eq__(self, value: object, /) -> bool: ...
    __hash__: ClassVar[None]  # type: ignore[assignment]

@final
class State:
    """An observed snapshot of the cluster, checked against a topology."""

    @staticmethod
    def from_file(path: _Path, topology: Topology) -> State: ...
    @staticmethod
    def from_yaml(text: str, topology: Topology, name: str = "<string>") -> State: ...
    @staticmethod
    def from_dict(data: dict[str, Any], topology: Topology, name: str = "<dict>") -> State: ...
    def to_dict(self) -> dict[str, Any]: ...
    @property
    def observed_at(self) -> datetime.datetime: ...
    @property
    def warnings(self) -> list[str]: ...
    def __eq__(self, value: object, /) -> bool: ...
    __hash__: ClassVar[None]  # type: ignore[assignment]

@final
class Policy:
    """A gate policy: which rules run, with which parameters."""

    @staticmethod
    def builtin(name: str) -> Policy: ...
    @staticmethod
    def from_file(path: _Path) -> Policy: ...
    @staticmethod
    def from_yaml(text: str, name: str = "<string>") -> Policy: ...
    @staticmethod
    def from_dict(data: dict[str, Any], name: str = "<dict>") -> Policy: ...
    def to_dict(self) -> dict[str, Any]: ...
    @property
    def name(self) -> str: ...
    @property
    def description(self) -> str | None: ...
    @property
    def rules(self) -> list[str]: ...
    def __eq__(self, value: object, /) -> bool: ...
    __hash__: ClassVar[None]  # type: ignore[assignment]

@final
class Finding:
    """One rule's conclusion."""

    @property
    def rule(self) -> str: ...
    @property
    def severity(self) -> Literal["pass", "warn", "unknown", "deny"]: ...
    @property
    def message(self) -> str: ...
    @property
    def remediation(self) -> str | None: ...
    def to_dict(self) -> dict[str, Any]: ...
    def __eq__(self, value: object, /) -> bool: ...
    __hash__: ClassVar[None]  # type: ignore[assignment]

@final
class Verdict:
    """The answer to "may I do ACTION to TARGET now?", with every reason."""

    @property
    def allowed(self) -> bool: ...
    @property
    def decision(self) -> Literal["allow", "deny", "unknown"]: ...
    @property
    def exit_code(self) -> int: ...
    @property
    def action(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def affected(self) -> list[str]: ...
    @property
    def policy(self) -> str: ...
    @property
    def at(self) -> datetime.datetime: ...
    @property
    def observed_at(self) -> datetime.datetime: ...
    @property
    def findings(self) -> list[Finding]: ...
    @property
    def blocking(self) -> list[Finding]: ...
    def to_dict(self) -> dict[str, Any]: ...
    def to_json(self) -> str: ...
    def __eq__(self, value: object, /) -> bool: ...
    __hash__: ClassVar[None]  # type: ignore[assignment]

@final
class Projection:
    """The outcome of projecting a change onto an etcd membership."""

    @property
    def voters(self) -> int: ...
    @property
    def quorum(self) -> int: ...
    @property
    def healthy_min(self) -> int: ...
    @property
    def healthy_max(self) -> int: ...
    @property
    def safety(self) -> Literal["safe", "unsafe", "unknown"]: ...
    def to_dict(self) -> dict[str, Any]: ...
    def __eq__(self, value: object, /) -> bool: ...
    __hash__: ClassVar[None]  # type: ignore[assignment]

@final
class Membership:
    """etcd voting membership with health, as far as it is known."""

    def __new__(
        cls, voters: int, healthy: int | None = None, unknown: int = 0, learners: int = 0
    ) -> Membership: ...
    @property
    def voters(self) -> int: ...
    @property
    def healthy(self) -> int: ...
    @property
    def unknown(self) -> int: ...
    @property
    def learners(self) -> int: ...
    @property
    def unhealthy(self) -> int: ...
    @property
    def quorum(self) -> int: ...
    @property
    def tolerance(self) -> int: ...
    def take_down(self, healthy: int = 1, unknown: int = 0) -> Projection: ...
    def remove(self, healthy: int = 0, unknown: int = 0, down: int = 0) -> Projection: ...
    def add_unstarted_voter(self) -> Projection: ...
    def add_healthy_voter(self) -> Projection: ...
    def to_dict(self) -> dict[str, Any]: ...
    def __eq__(self, value: object, /) -> bool: ...
    __hash__: ClassVar[None]  # type: ignore[assignment]

def evaluate(
    action: str,
    target: str,
    topology: _TopologyLike,
    state: _StateLike,
    policy: _PolicyLike | None = None,
    at: _Time | None = None,
    requester: str | None = None,
) -> Verdict: ...
def status(
    topology: _TopologyLike, state: _StateLike, at: _Time | None = None
) -> dict[str, Any]: ...
def policies() -> list[str]: ...
def actions() -> list[str]: ...
def quorum(voters: int) -> int: ...
def tolerance(voters: int) -> int: ...
def observe(
    topology: _TopologyLike,
    *,
    kubeconfig: _Path | None = None,
    context: str | None = None,
    etcd: list[str] | None = None,
    etcd_pki: _Path | None = None,
    deadline: float = 2.0,
    member_timeout: float = 1.0,
    kill_switch: str = "kube-system/hacli-kill-switch",
    lock_lease: str = "kube-system/hacli-disruption-lock",
    daemonsets: list[str] | None = None,
    prometheus_url: str | None = None,
    prometheus: str | None = None,
    apiserver_port: int | None = None,
    lb_runtime_api: str | None = None,
    snapshot_dir: _Path | None = None,
) -> State: ...
def gate(
    action: str,
    node: str,
    topology: _TopologyLike,
    policy: _PolicyLike | None = None,
    *,
    lock: bool = False,
    lock_ttl: float = 1800.0,
    identity: str | None = None,
    move_leader: bool = False,
    kubeconfig: _Path | None = None,
    context: str | None = None,
    etcd: list[str] | None = None,
    etcd_pki: _Path | None = None,
    deadline: float = 2.0,
    member_timeout: float = 1.0,
    kill_switch: str = "kube-system/hacli-kill-switch",
    lock_lease: str = "kube-system/hacli-disruption-lock",
    daemonsets: list[str] | None = None,
    prometheus_url: str | None = None,
    prometheus: str | None = None,
    apiserver_port: int | None = None,
    lb_runtime_api: str | None = None,
    snapshot_dir: _Path | None = None,
) -> Verdict: ...
@final
class LockResult:
    """The disruption lock as ``lock_show``, ``lock_take`` or
    ``lock_release`` (``hacli lock show|take|release``) found or left it."""

    @property
    def operation(self) -> Literal["show", "take", "release"]: ...
    @property
    def lease(self) -> str: ...
    @property
    def holder(self) -> str | None: ...
    @property
    def done(self) -> bool: ...
    @property
    def kept_because(self) -> str | None: ...
    @property
    def exit_code(self) -> Literal[0, 1]: ...
    @property
    def until(self) -> datetime.datetime | None: ...

def lock_show(
    *,
    kubeconfig: _Path | None = None,
    context: str | None = None,
    lock_lease: str = "kube-system/hacli-disruption-lock",
    deadline: float = 5.0,
) -> LockResult: ...
def lock_take(
    identity: str,
    *,
    lock_ttl: float = 1800.0,
    kubeconfig: _Path | None = None,
    context: str | None = None,
    lock_lease: str = "kube-system/hacli-disruption-lock",
    deadline: float = 5.0,
) -> LockResult: ...
def lock_release(
    identity: str,
    *,
    kubeconfig: _Path | None = None,
    context: str | None = None,
    lock_lease: str = "kube-system/hacli-disruption-lock",
    deadline: float = 5.0,
) -> LockResult: ...
def disrupt(
    action: str,
    node: str,
    topology: _TopologyLike,
    *,
    journal: _Path,
    sim_state: _Path | None = None,
    backend: str = "simulated",
    version: str | None = None,
    command: list[str] | None = None,
    policy: _PolicyLike | None = None,
    identity: str | None = None,
    idle_bound: float = 30.0,
    drain: bool | None = None,
    first: bool | None = None,
    fail: list[str] | None = None,
    resume: bool = False,
    dry_run: bool = False,
    kubeconfig: _Path | None = None,
    context: str | None = None,
    etcd: list[str] | None = None,
    etcd_pki: _Path | None = None,
    deadline: float = 2.0,
    member_timeout: float = 1.0,
    kill_switch: str = "kube-system/hacli-kill-switch",
    lock_lease: str = "kube-system/hacli-disruption-lock",
    daemonsets: list[str] | None = None,
    prometheus_url: str | None = None,
    prometheus: str | None = None,
    apiserver_port: int | None = None,
    lb_runtime_api: str | None = None,
    lock_ttl: float = 3600.0,
    ssh_identity: _Path | None = None,
    known_hosts: _Path | None = None,
    accept_new_host_key: bool = False,
    alertmanager_url: str | None = None,
    alertmanager_timeout: float = 5.0,
    on_event: Callable[[dict[str, str]], object] | None = None,
) -> dict[str, Any]: ...
def roll(
    action: str,
    topology: _TopologyLike,
    *,
    journal_dir: _Path,
    sim_state: _Path | None = None,
    backend: str = "simulated",
    nodes: list[str] | None = None,
    version: str | None = None,
    command: list[str] | None = None,
    soak: float = 0.0,
    policy: _PolicyLike | None = None,
    identity: str | None = None,
    idle_bound: float = 30.0,
    drain: bool | None = None,
    first: bool | None = None,
    fail: list[str] | None = None,
    resume: bool = False,
    dry_run: bool = False,
    kubeconfig: _Path | None = None,
    context: str | None = None,
    etcd: list[str] | None = None,
    etcd_pki: _Path | None = None,
    deadline: float = 2.0,
    member_timeout: float = 1.0,
    kill_switch: str = "kube-system/hacli-kill-switch",
    lock_lease: str = "kube-system/hacli-disruption-lock",
    daemonsets: list[str] | None = None,
    prometheus_url: str | None = None,
    prometheus: str | None = None,
    apiserver_port: int | None = None,
    lb_runtime_api: str | None = None,
    lock_ttl: float = 3600.0,
    ssh_identity: _Path | None = None,
    known_hosts: _Path | None = None,
    accept_new_host_key: bool = False,
    alertmanager_url: str | None = None,
    alertmanager_timeout: float = 5.0,
    on_event: Callable[[dict[str, str]], object] | None = None,
) -> dict[str, Any]: ...
def plan(
    from_: _TopologyLike,
    to: _TopologyLike,
    *,
    state: _StateLike | None = None,
    template: int | None = None,
    probe_addresses: bool = False,
    on_event: Callable[[dict[str, str]], object] | None = None,
    **reach: Unpack[Reach],
) -> PlanResult: ...
def apply(
    plan: _Path | dict[str, Any],
    *,
    journal: _Path,
    backend: Literal["simulated", "live"] = "simulated",
    sim_state: _Path | None = None,
    lb: Literal["simulated", "live"] | None = None,
    dry_run: bool = False,
    resume: bool = False,
    confirm: list[str] | None = None,
    measure: bool = False,
    measure_kubeconfig: _Path | None = None,
    measure_rate: float = 10.0,
    measure_timeout: float = 2.0,
    measure_path: str = "/api/v1/namespaces/kube-system",
    on_event: Callable[[dict[str, str]], object] | None = None,
    **reach: Unpack[Reach],
) -> Applied: ...
def remove_master(
    node: str,
    topology: _TopologyLike,
    *,
    journal: _Path | None = None,
    backend: Literal["simulated", "live"] | None = None,
    dry_run: bool = False,
    resume: bool = False,
    sim_state: _Path | None = None,
    fail: list[str] | None = None,
    identity: str | None = None,
    lock_ttl: float = 3600.0,
    idle_bound: float = 30.0,
    on_event: Callable[[dict[str, str]], object] | None = None,
    **reach: Unpack[Reach],
) -> MasterResult: ...
def replace_master(
    old: str,
    new: str,
    topology: _TopologyLike,
    target: _TopologyLike,
    *,
    template: int | None = None,
    journal: _Path | None = None,
    backend: Literal["simulated", "live"] | None = None,
    dry_run: bool = False,
    resume: bool = False,
    sim_state: _Path | None = None,
    fail: list[str] | None = None,
    identity: str | None = None,
    lock_ttl: float = 3600.0,
    idle_bound: float = 30.0,
    on_event: Callable[[dict[str, str]], object] | None = None,
    **reach: Unpack[Reach],
) -> MasterResult: ...
def simulate(plan: _Path | dict[str, Any], failures: int = 1) -> dict[str, Any]: ...
def lb(
    action: Literal["show", "add-server", "remove-server", "drain", "ready", "maint"],
    topology: _TopologyLike,
    node: str | None = None,
    *,
    address: str | None = None,
    dry_run: bool = False,
    **reach: Unpack[Reach],
) -> dict[str, Any]: ...
def hypervisor(
    action: Literal["show"] = "show",
    topology: _TopologyLike | None = None,
    **reach: Unpack[Reach],
) -> dict[str, Any]: ...
def reconcile_config(
    topology: _TopologyLike,
    *,
    confirm: bool = False,
    **reach: Unpack[Reach],
) -> dict[str, Any]: ...
def snapshot(
    topology: _TopologyLike | None = None,
    *,
    check: _Path | None = None,
    keep: int = 7,
    max_age: float | None = None,
    copy_to: list[_Path] | None = None,
    copy_over_ssh: list[str] | None = None,
    verify_restore: bool = False,
    verify_key: str | None = None,
    etcdutl: _Path | None = None,
    **reach: Unpack[Reach],
) -> dict[str, Any]: ...
def topology_init(
    *,
    masters: dict[str, str] | None = None,
    workers: dict[str, str] | None = None,
    name: str | None = None,
    vip: str | None = None,
    port: int = 6443,
    dns_name: str | None = None,
    lb: Literal["none", "haproxy", "pfsense"] = "none",
    lb_host: str | None = None,
    cidr: str | None = None,
    gateway: str | None = None,
    proxmox_node: str | None = None,
    host_memory_gib: int | None = None,
    host_cpus: int | None = None,
    from_cluster: bool = False,
    kubeconfig: _Path | None = None,
    context: str | None = None,
    deadline: float = 10.0,
) -> str: ...
def recover(
    topology: _TopologyLike,
    *,
    journal: _Path,
    snapshot: list[_Path] | None = None,
    on: str | None = None,
    resume: bool = False,
    dry_run: bool = False,
    confirm: bool = False,
    etcdutl: _Path | None = None,
    serving_bound: float = 120.0,
    **reach: Unpack[Reach],
) -> Recovered: ...
def remediate(
    topology: _TopologyLike,
    *,
    memory: _Path,
    state: _StateLike | None = None,
    unhealthy_for: float = 300.0,
    max_retries: int = 2,
    retry_period: float = 3600.0,
    min_healthy_period: float = 600.0,
    metrics: _Path | None = None,
    at: _Time | None = None,
    confirm: bool = False,
    spare: _Path | None = None,
    journal: _Path | None = None,
    template: int | None = None,
    identity: str | None = None,
    lock_ttl: float = 3600.0,
    idle_bound: float = 30.0,
    proxmox_ha_rule: str | None = None,
    **reach: Unpack[Reach],
) -> Remediation: ...

@final
class DrillResult:
    """How ``drill`` ended: ``outcome`` "ran" (with the ``report``),
    "refused" (the gate's ``verdict``) or "not-healthy" (the ``reason``);
    ``exit_code`` is ``hacli drill``'s."""

    @property
    def outcome(self) -> Literal["ran", "refused", "not-healthy"]: ...
    @property
    def exit_code(self) -> int: ...
    @property
    def ok(self) -> bool: ...
    @property
    def report(self) -> dict[str, Any] | None: ...
    @property
    def verdict(self) -> Verdict | None: ...
    @property
    def reason(self) -> str | None: ...

def drill(
    node: str,
    topology: _TopologyLike,
    *,
    planned: bool = False,
    kill: Literal["apiserver"] | None = None,
    journal: _Path | None = None,
    lock_ttl: float = 3600.0,
    identity: str | None = None,
    idle_bound: float = 30.0,
    rate: float = 20.0,
    duration: float = 60.0,
    baseline: float = 10.0,
    down_for: float = 20.0,
    after: float = 5.0,
    recovery_timeout: float = 300.0,
    request_timeout: float = 2.0,
    path: str = "/api/v1/namespaces/kube-system",
    keep_alive: bool = False,
    skip_gate: bool = False,
    policy: _PolicyLike | None = None,
    ssh_user: str = "root",
    ssh_port: int = 22,
    ssh_sudo: bool = False,
    ssh_identity: _Path | None = None,
    known_hosts: _Path | None = None,
    accept_new_host_key: bool = False,
    kubeconfig: _Path | None = None,
    context: str | None = None,
    etcd: list[str] | None = None,
    etcd_pki: _Path | None = None,
    deadline: float = 2.0,
    member_timeout: float = 1.0,
    lb_runtime_api: str | None = None,
    proxmox: str | None = None,
    proxmox_fingerprint: str | None = None,
    proxmox_ca: _Path | None = None,
    proxmox_insecure: bool = False,
    proxmox_token_env: str | None = None,
    on_event: Callable[[dict[str, str]], object] | None = None,
) -> DrillResult: ...
