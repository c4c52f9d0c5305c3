"""How the launcher finds search: see common.manifest."""

from common.manifest import ServiceManifest

MANIFEST = ServiceManifest(
    "search",
    port=8006,
    has_database=True,
    uses_bus=True,
    settings_class="search.settings:SearchSettings",
    start_order=10,
    # The local stand-in of the LLM partner (OpenAI-compatible chat completions).
    stand_ins={"llm_sim": 8013},
)
