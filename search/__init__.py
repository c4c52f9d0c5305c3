"""search: natural-language branch search (hot path without LLM, cold path enrichment)."""
