"""running's app factory: REST on the service port, live WebSockets on the live port,
fan-out between replicas through RabbitMQ."""

from __future__ import annotations

import logging
import os
import socket
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from common.api import Hook, create_service_app
from common.breaker import breaker_for
from common.chat import ChatCompletions
from common.collector import GcPacing
from common.events.bus import EventBus
from common.kernel import ServiceKernel, build_kernel
from common.observability import Metrics
from common.periodic import Jobs, Periodic
from common.security import JwksCache
from common.settings import PlatformSettings
from contracts import CATALOG
from running.analytics import AnalyticsService
from running.api import answer_refusals, router
from running.coach import Budget, Coach
from running.events import subscriptions
from running.friends import FriendService
from running.history import HistoryService
from running.hub import Hub
from running.live import LiveServer
from running.models import Base
from running.outings import OutingService
from running.profiles import ProfileService
from running.races import RaceService
from running.runs import RunService
from running.sealing import TokenSealer
from running.settings import RunningSettings
from running.steps import StepService
from running.strava import StravaClient
from running.sync import StravaSync
from running.workouts import WorkoutService

if TYPE_CHECKING:
    from common.events.fanout import TopicFanout

SERVICE = "running"
JANITOR_INTERVAL_S = 5.0
GC_FREEZE_INTERVAL_S = 5.0
GC_FULL_ROUND_S = 600.0  # cycles that died frozen are freed every ten minutes


log = logging.getLogger(__name__)

FILE_ROUTES = ("/v1/runs/import", "/v1/runs/gpx", "/v1/runs/archive")
SMALL_BODY_BYTES = 1024 * 1024


class SmallBodies:
    """The service takes bodies up to a marathon's file (``max_body_bytes``) only on the
    file-import routes; every other route says 413 above 1 MiB, by declared length (a
    body without one is still held to the kernel's limit)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in FILE_ROUTES:
            declared = dict(scope["headers"]).get(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > SMALL_BODY_BYTES:
                response = JSONResponse({"detail": "the body is larger than 1 MiB"}, status_code=413)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(
    settings: PlatformSettings,
    *,
    bus: EventBus | None = None,
    metrics: Metrics | None = None,
    keys: JwksCache | None = None,
) -> FastAPI:
    config = RunningSettings.of(settings)
    kernel = build_kernel(
        SERVICE,
        config,
        metadata=Base.metadata,
        catalog=CATALOG,
        bus=bus,
        metrics=metrics,
        keys=keys,
        subscriptions=subscriptions(),
    )
    runs = RunService(kernel=kernel, settings=config)
    races = RaceService(kernel=kernel, settings=config)
    outings = OutingService(kernel=kernel, invite_for=timedelta(seconds=config.running_outing_invite_s))
    hub = Hub()
    live = LiveServer(runs=runs, races=races, outings=outings, hub=hub, verifier=kernel.verifier, settings=config)
    replica = config.running_replica or f"{socket.gethostname()}-{os.getpid()}"
    relay = _fanout(config, hub, replica)
    budget = _coach_budget(config, kernel)
    strava = _strava_client(config)
    partner = _coach_partner(config, kernel)
    jobs = _background_jobs(config, runs=runs, live=live, budget=budget)

    async def start_live() -> None:
        if relay is not None:
            await relay.start()
        app.state.live_port = await live.start(config.running_live_host, config.running_live_port)
        await jobs.start()
        log.info("live sockets on port %d (replica %s)", app.state.live_port, replica)

    async def stop_live() -> None:
        await jobs.stop()
        await live.stop()
        await live.flush()

    app = create_service_app(
        kernel,
        title="SmartGym running",
        routers=[router],
        on_start=[start_live],
        on_stop=[*_closers(relay, strava, partner), stop_live],
    )
    app.add_middleware(SmallBodies)
    answer_refusals(app)
    app.state.runs = runs
    app.state.races = races
    app.state.outings = outings
    _attach_services(app, kernel, config, budget=budget, partner=partner, strava=strava)
    app.state.live = live
    app.state.hub = hub
    return app


def _fanout(config: RunningSettings, hub: Hub, replica: str) -> TopicFanout | None:
    """With a broker, what the hub publishes reaches the sockets of every replica."""
    if config.broker_url is None:
        return None
    from common.events.fanout import TopicFanout  # aio-pika only where a broker is configured

    relay = TopicFanout(
        config.broker_urls(),
        exchange=f"{config.bus_namespace}.running.live",
        replica=replica,
        on_message=hub.deliver_local,
        flush_window_s=config.running_fanout_window_s,
    )
    hub.attach(relay)
    return relay


def _coach_budget(config: RunningSettings, kernel: ServiceKernel) -> Budget:
    return Budget(
        kernel=kernel,
        tokens_per_day=config.running_coach_tokens_per_day,
        questions_per_member=config.running_coach_questions_per_member,
    )


def _strava_client(config: RunningSettings) -> StravaClient | None:
    if not config.running_strava_client_id or config.running_strava_client_secret is None:
        return None
    return StravaClient(
        base_url=config.running_strava_url,
        client_id=config.running_strava_client_id,
        client_secret=config.running_strava_client_secret.get_secret_value(),
        backoff_s=config.running_strava_backoff_s,
    )


def _coach_partner(config: RunningSettings, kernel: ServiceKernel) -> ChatCompletions | None:
    if not config.running_coach_url:
        return None
    return ChatCompletions(
        base_url=config.running_coach_url,
        api_key=config.running_coach_api_key.get_secret_value() if config.running_coach_api_key else None,
        model=config.running_coach_model,
        breaker=breaker_for("running-coach", config, kernel.metrics),
        timeout_s=config.running_coach_timeout_s,
    )


def _closers(relay: TopicFanout | None, strava: StravaClient | None, partner: ChatCompletions | None) -> list[Hook]:
    closers: list[Hook] = []
    if relay is not None:
        closers.append(relay.close)
    if strava is not None:
        closers.append(strava.close)
    if partner is not None:
        closers.append(partner.aclose)
    return closers


def _background_jobs(config: RunningSettings, *, runs: RunService, live: LiveServer, budget: Budget) -> Jobs:
    """Collector pacing, the flush of live points, the janitor's rounds and retention."""

    async def retention() -> None:
        removed = await runs.forget_old_points()
        if removed:
            log.info("removed %d point chunks past retention", removed)

    async def retention_of_budget() -> None:
        await budget.forget_before(datetime.now(UTC).date() - timedelta(days=2))

    async def janitor() -> None:
        await live.races.close_overdue()
        await live.end_outings()
        await live.end_abandoned_runs()
        live.nearby.feed.index.sweep()

    # A replica holds thousands of sockets and tracks: its heap is frozen again every 5 s.
    gc_pacing = GcPacing(full_every=round(GC_FULL_ROUND_S / GC_FREEZE_INTERVAL_S))
    return Jobs(
        Periodic("running-gc", GC_FREEZE_INTERVAL_S, gc_pacing.step),
        Periodic("running-flush", config.running_flush_interval_s, live.flush),
        Periodic("running-janitor", JANITOR_INTERVAL_S, janitor),
        Periodic("running-retention", 3600.0, retention),
        Periodic("running-coach-budget", 3600.0, retention_of_budget),
    )


def _attach_services(
    app: FastAPI,
    kernel: ServiceKernel,
    config: RunningSettings,
    *,
    budget: Budget,
    partner: ChatCompletions | None,
    strava: StravaClient | None,
) -> None:
    """The services the REST routes reach through ``app.state``."""
    app.state.friends = FriendService(kernel=kernel)
    app.state.history = HistoryService(kernel=kernel)
    app.state.steps = StepService(kernel=kernel)
    app.state.profiles = ProfileService(kernel=kernel)
    app.state.workouts = WorkoutService(kernel=kernel)
    app.state.analytics = AnalyticsService(kernel=kernel)
    app.state.coach = Coach(
        analytics=app.state.analytics,
        partner=partner,
        budget=budget,
    )
    app.state.strava = StravaSync(
        kernel=kernel,
        client=strava,
        sealer=TokenSealer(config.key_encryption_secret.get_secret_value().encode()),
        wait_s=config.running_strava_wait_s,
    )
