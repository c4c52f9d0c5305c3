"""notification's app factory: event consumers, the push dispatcher and the inbox API."""

from __future__ import annotations

from fastapi import FastAPI

from common.api import create_service_app
from common.events.bus import EventBus
from common.kernel import build_kernel
from common.observability import Metrics
from common.security import JwksCache
from common.settings import PlatformSettings
from contracts import CATALOG
from notification.api import router
from notification.dispatch import Dispatcher, DispatchMetrics, Sender
from notification.events import subscriptions
from notification.fcm import FcmSender, ServiceAccount
from notification.models import Base
from notification.service import Notifier
from notification.settings import NotificationSettings
from notification.sms import Channels, TwilioSmsSender

SERVICE = "notification"


def create_app(
    settings: PlatformSettings,
    *,
    bus: EventBus | None = None,
    metrics: Metrics | None = None,
    keys: JwksCache | None = None,
    sender: Sender | None = None,
) -> FastAPI:
    config = NotificationSettings.of(settings)
    kernel = build_kernel(SERVICE, config, metadata=Base.metadata, catalog=CATALOG, bus=bus, metrics=metrics, keys=keys)
    stop_hooks = []
    if sender is None:
        account = (
            ServiceAccount.from_file(config.fcm_service_account_file, token_uri=config.fcm_token_uri)
            if config.fcm_service_account_file
            else ServiceAccount.ephemeral(config.fcm_project_id, config.fcm_token_uri)
        )
        fcm = FcmSender(account, endpoint=config.fcm_endpoint, timeout_s=config.fcm_timeout_s)
        sms = TwilioSmsSender(
            endpoint=config.sms_endpoint,
            account_sid=config.sms_account_sid,
            auth_token=config.sms_auth_token.get_secret_value(),
            sender=config.sms_from,
            timeout_s=config.sms_timeout_s,
        )
        stop_hooks.extend([fcm.close, sms.close])
        sender = Channels(push=fcm, sms=sms)
    dispatcher = Dispatcher(database=kernel.db, sender=sender, settings=config, metrics=DispatchMetrics(kernel.metrics))
    kernel.subscriptions = subscriptions(Notifier(config, dispatcher=dispatcher))

    async def start_dispatcher() -> None:
        dispatcher.start()

    app = create_service_app(
        kernel,
        title="SmartGym notification",
        routers=[router],
        on_start=[start_dispatcher],
        on_stop=[*stop_hooks, dispatcher.stop],
    )
    app.state.dispatcher = dispatcher
    return app
