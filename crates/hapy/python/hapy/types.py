"""The shapes of the live operations' keywords and results (``plan``,
``apply``, ``remove_master``, ``replace_master``): plain dicts, typed for
mypy. Each result is shaped as the CLI's JSON for the same command."""

from __future__ import annotations

from typing import Any, Literal, Optional, TypedDict

__all__ = ["Applied", "MasterResult", "PlanResult", "Reach"]


class Reach(TypedDict, total=False):
    """How the live backends reach the cluster (the CLI's flags of the same
    names). Unset keys fall back to the environment (``KUBECONFIG``,
    ``HACLI_ETCD_ENDPOINTS``, ..., Proxmox's ``PROXMOX_VE_*``/``PM_*``),
    then to the topology."""

    kubeconfig: str
    etcd: list[str]
    etcd_pki: str
    timeout: float
    lock_lease: str
    lb_runtime_api: str
    ssh_identity: str
    ssh_known_hosts: str
    accept_new_host_key: bool
    proxmox: str
    proxmox_fingerprint: str
    proxmox_ca: str
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
