"""The one catalog every published event registers in (see :mod:`contracts`)."""

from common.events.envelope import EventCatalog
from common.events.revocations import TokensRevoked

CATALOG = EventCatalog()
# The kernel's own event (access tokens revoked early) travels in the published language
# like any other; the kernel registers it in any catalog it builds a bus for as well.
CATALOG.register(TokensRevoked)
