"""The one catalog every published event registers in (see :mod:`contracts`)."""

from common.events.envelope import EventCatalog

CATALOG = EventCatalog()
