"""monitoring's settings beyond the platform's: how often and how hard it checks devices.

The defaults are a latency budget (see the ADR on equipment fault latency): a 10 s ping
period, a 1 s echo timeout and a quick confirmation ping keep failure → push under 12 s
at P95 for a device that stops answering.
"""

from __future__ import annotations

from ipaddress import ip_network

from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork

from common.settings import PlatformSettings
from monitoring.egress import EgressPolicy


class KindRules(BaseModel):
    """Fault rules for one kind of equipment (treadmill, gate, camera…)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fail_after: int = Field(default=2, ge=1, le=20, description="failed pings in a row before a fault")
    recover_after: int = Field(default=3, ge=1, le=50, description="good checks in a row before recovery")
    heartbeat_grace: float = Field(default=1.5, ge=1.0, le=10.0, description="overdue after period * grace")


class MonitoringSettings(PlatformSettings):
    monitoring_heartbeat_host: str = Field(
        default="0.0.0.0",  # noqa: S104 - devices connect from the branch networks
        description="Address the heartbeat listener binds (devices connect from the branch networks).",
    )
    monitoring_heartbeat_port: int = Field(
        default=7007, ge=0, le=65535, description="TCP port of the heartbeat listener."
    )
    monitoring_ping_interval_s: float = Field(
        default=10.0, gt=0, le=3600, description="Seconds between pings of one device."
    )
    monitoring_ping_timeout_s: float = Field(
        default=1.0, gt=0, le=30, description="Seconds a device has to answer a ping."
    )
    # A silent device is confirmed while its first ping's timeout still runs: two
    # unanswered pings take timeout + this, not two timeouts and a pause.
    monitoring_confirm_after_s: float = Field(
        default=0.5,
        ge=0,
        le=60,
        description=(
            "A ping still unanswered this long after it went out is confirmed by a second one on a fresh"
            " connection at once (each keeps its whole timeout); a ping that failed sooner (refused, an error"
            " status) is confirmed this long after it failed."
        ),
    )
    monitoring_reconnect_window_s: float = Field(
        default=1.0,
        ge=0,
        le=60,
        description=(
            "A device that hangs up its heartbeat connection is pinged at once and again after this"
            " many seconds; a fault is announced only if both fail and it has not reconnected meanwhile."
        ),
    )
    monitoring_ping_concurrency: int = Field(default=500, ge=1, le=20_000, description="Pings in flight at once.")
    monitoring_ping_keepalive_max: int = Field(
        default=50_000,
        ge=0,
        le=200_000,
        description=(
            "Ping connections kept open between pings (cheaper than a new connection each time); each is a"
            " file descriptor beside the heartbeat connections: monitoring keeps fewer if the process's"
            " open-file limit leaves less room beside monitoring_max_connections."
        ),
    )
    monitoring_max_connections: int = Field(
        default=20_000, ge=1, le=200_000, description="Heartbeat connections accepted at once."
    )
    monitoring_shards: int = Field(
        default=0,
        ge=0,
        le=4096,
        description=(
            "0: this process watches every device (one replica). Above 0: devices are sharded by branch over"
            " this many shards, and each replica watches the shards it holds a lease on in monitoring's database"
            " (PostgreSQL only). Use more shards than replicas will ever run (e.g. 64); every replica must agree."
        ),
    )
    # A taken-over shard's devices were last pinged before their dead holder's lease ran
    # out; waiting for their phase on the new holder's grid added up to another period.
    monitoring_takeover_spread_s: float = Field(
        default=1.5,
        ge=0,
        le=60,
        description=(
            "With sharding: the devices of a shard taken from a replica whose lease ran out are pinged once"
            " within this many seconds (spread evenly; at most half the ping period), then at their usual"
            " phase. Wider spreads the burst of new connections; 0 keeps them on their phase."
        ),
    )
    monitoring_replica_id: str = Field(
        default="",
        max_length=80,
        description="This replica's name in the shard leases; empty: host name, process id and a random suffix.",
    )
    monitoring_rules: dict[str, KindRules] = Field(
        default_factory=dict,
        description='Fault rules per equipment kind as JSON: {"treadmill": {"fail_after": 2}} (see KindRules below).',
    )
    # An unacknowledged critical fault goes to the operations team after this long.
    monitoring_escalate_after_s: float = Field(
        default=300.0,
        gt=0,
        description="An unacknowledged critical fault goes to the operations team after this many seconds.",
    )
    monitoring_sweep_interval_s: float = Field(
        default=1.0, gt=0, le=60, description="Seconds between sweeps for overdue heartbeats."
    )
    monitoring_equipment_networks: dict[str, tuple[IPvAnyNetwork, ...]] = Field(
        default_factory=dict,
        description=(
            "Networks that ping URLs may name besides public addresses (loopback, link-local, private or"
            ' cluster ranges are refused otherwise): by branch id, or "*" for every branch.'
        ),
    )
    monitoring_service_cidrs: tuple[IPvAnyNetwork, ...] = Field(
        default=(ip_network("10.96.0.0/12"),),
        description="The cluster's Service range: never pinged unless declared in monitoring_equipment_networks.",
    )
    monitoring_bulk_max_per_branch: int = Field(
        default=1000, ge=1, le=10_000, description="Devices of one branch one bulk registration call may register."
    )

    monitoring_bus_services: tuple[str, ...] = Field(
        default=(),
        description=(
            "Consumers whose event-bus queues the operations dashboard lists, as a JSON list (access consumes"
            ' one queue per site: "access.<site>"); empty: every installed service that uses the bus and has'
            " a queue (a broker cannot be asked for its queues without its management plugin)."
        ),
    )
    monitoring_bus_scan_limit: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Parked messages of one service read at most to find the one an operator inspects or replays.",
    )

    def egress(self) -> EgressPolicy:
        return EgressPolicy(networks=self.monitoring_equipment_networks, service_cidrs=self.monitoring_service_cidrs)

    def rules_for(self, kind: str) -> KindRules:
        return self.monitoring_rules.get(kind, KindRules())
