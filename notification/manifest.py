"""How the launcher finds notification: see common.manifest."""

from common.manifest import ServiceManifest

MANIFEST = ServiceManifest(
    "notification",
    port=8008,
    has_database=True,
    uses_bus=True,
    settings_class="notification.settings:NotificationSettings",
    start_order=10,
    stand_ins={"fcm_sim": 8012, "sms_sim": 8013},
)
