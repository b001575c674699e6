"""The shapes of the live operations' keywords and results (``plan``,
``apply``, ``remove_master``, ``replace_master``, ``recover``,
``remediate``): plain dicts, typed for mypy. Each result is shaped as the
CLI's JSON for the same command."""

from __future__ import annotations

import os
from typing import Any, Literal, Optional, TypedDict

__all__ = ["Applied", "MasterResult", "PlanResult", "Reach", "Recovered", "Remediation", "Replaced"]


class Reach(TypedDict, total=False):
    """The reach keywords: how a live function reaches the cluster, as flat
    keyword arguments named as the CLI's flags (``plan(..., kubeconfig=...,
    context=..., deadline=30)``). Unset ones fall back to the environment
    (``KUBECONFIG``, ``HACLI_ETCD_ENDPOINTS``, ``HACLI_SNAPSHOT_DIR``, ...,
    Proxmox's ``PROXMOX_VE_*``/``PM_*``), then to the topology. Durations
    are seconds."""

    kubeconfig: str | os.PathLike[str]
    context: str
    etcd: list[str]
    etcd_pki: str | os.PathLike[str]
    deadline: float
    member_timeout: float
    kill_switch: str
    lock_lease: str
    daemonsets: list[str]
    prometheus_url: str
    prometheus: str
    apiserver_port: int
    lb_runtime_api: str
    snapshot_dir: str | os.PathLike[str]
    boot_wait: float
    ssh_identity: str | os.PathLike[str]
    known_hosts: str | os.PathLike[str]
    accept_new_host_key: bool
    proxmox: str
    proxmox_fingerprint: str
    proxmox_ca: str | os.PathLike[str]
    proxmox_insecure: bool
    proxmox_token_env: str


class _PlanResult(TypedDict):
    result: Literal["planned", "refused"]


class PlanResult(_PlanResult, total=False):
    """``plan()``: the plan (``"planned"``) or why there is none."""

    plan: dict[str, Any]
    reasons: list[str]


class Applied(TypedDict):
    """``apply()``: the executor's outcome (``{"outcome": "completed"}``,
    ``"dry-run"``, ``"blocked"``, ``"awaiting-confirmation"``,
    ``"rolled-back"``) and the availability measured, if asked."""

    outcome: dict[str, Any]
    measured: Optional[dict[str, Any]]


class _MasterResult(TypedDict):
    result: Literal["refused", "planned", "ran"]


class MasterResult(_MasterResult, total=False):
    """``remove_master()``/``replace_master()``: refused (``reasons``), the
    plan of a dry run (``plan``), or the run's ``report``
    (``report["result"]``: ``"done"``, ``"denied"``, ...)."""

    reasons: list[str]
    plan: dict[str, Any]
    report: dict[str, Any]


class Recovered(TypedDict):
    """``recover()``: what was observed and decided (``plan``: ``members``,
    ``snapshots``, ``decision``, ``steps``) and how the run ended
    (``outcome["outcome"]``: ``"refused"``, ``"dryRun"``,
    ``"needsConfirm"``, ``"done"`` or ``"failed"`` with ``step``, ``error``
    and ``rolledBack``)."""

    plan: dict[str, Any]
    outcome: dict[str, Any]


class _Remediation(TypedDict):
    decision: Literal["healthy", "wait", "replace", "refused", "cancelled"]
    memory: dict[str, Any]


# `class` is a keyword: this part of the dict is declared the functional way.
_RemediationClass = TypedDict(
    "_RemediationClass",
    {
        "class": Literal[
            "unobserved", "within-bound", "one-at-a-time", "lock", "min-healthy-period",
            "retry-budget", "quorum", "past-bound", "replaced", "failed", "answers-again",
        ]
    },
    total=False,
)


class Replaced(TypedDict):
    """What a replacement ``remediate(confirm=True)`` ran leaves: its
    journal and the topology from now on (the spare in the dead master's
    place)."""

    journal: str
    topology: str


class Remediation(_Remediation, _RemediationClass, total=False):
    """``remediate()``: the decision, the master it is about, why and its
    class (absent when every master is healthy), the memory written back,
    and, after a replacement ``confirm=True`` ran, ``replaced``."""

    node: str
    reason: str
    replaced: Replaced
