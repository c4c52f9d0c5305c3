"""How the launcher finds search: see common.manifest."""

from common.manifest import ServiceManifest

MANIFEST = ServiceManifest(
    "search",
    port=8006,
    has_database=True,
    uses_bus=True,
    settings_class="search.settings:SearchSettings",
    start_order=10,
    commands="search.cli:search",
    # No partner stand-in in `smartgym up`: without SMARTGYM_SEARCH_LLM_URL the offline
    # extractor runs. The LLM stand-in (search.llm_sim, search.app.create_stand_in) is for
    # tests and for trying the partner path by hand.
)
