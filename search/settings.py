"""search's settings: which engine answers, where the index lives, the LLM partner and its budget."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator

from common.settings import PlatformSettings


class SearchSettings(PlatformSettings):
    # tantivy: in-process index on local disk (embedded mode, one replica). elasticsearch:
    # a shared cluster behind a read alias (production, several replicas).
    search_backend: Literal["tantivy", "elasticsearch"] = "tantivy"
    # Default: <data_dir>/search-index.
    search_index_dir: Path | None = None
    elasticsearch_url: str | None = None
    elasticsearch_api_key: SecretStr | None = None
    elasticsearch_index_prefix: str = Field(default="smartgym", pattern=r"^[a-z][a-z0-9_-]{0,40}$")
    elasticsearch_timeout_s: float = Field(default=5.0, gt=0, le=60)
    elasticsearch_bulk_retries: int = Field(default=3, ge=0, le=10)

    # Branches of one place: a station's and a district's radius, and "near me".
    search_station_radius_m: float = Field(default=2_000, gt=0, le=50_000)
    search_district_radius_m: float = Field(default=4_000, gt=0, le=50_000)
    search_near_me_radius_m: float = Field(default=3_000, gt=0, le=50_000)
    search_timezone: str = "Asia/Seoul"
    # Recent reviews whose text a branch's document carries (the rest is summarised in
    # tags by the cold path).
    search_review_sample: int = Field(default=8, ge=0, le=100)
    search_index_flush_s: float = Field(default=0.2, gt=0, le=60)
    # With a shared cluster, another replica may have written the index: each replica
    # re-reads its in-memory catalogue (suggestions, branch pages, recommendations).
    search_catalogue_refresh_s: float = Field(default=60.0, gt=0, le=3600)

    # Cold path: an OpenAI-compatible chat-completions partner extracts keywords; without
    # one, the offline extractor does.
    search_llm_url: str | None = None  # e.g. https://api.openai.com
    search_llm_api_key: SecretStr | None = None
    search_llm_model: str = Field(default="gpt-4o-mini", min_length=1, max_length=100)
    search_llm_timeout_s: float = Field(default=20.0, gt=0, le=120)
    search_llm_max_attempts: int = Field(default=3, ge=1, le=10)
    search_llm_retry_base_s: float = Field(default=0.5, gt=0, le=60)
    # Tokens per UTC day; past it the offline extractor takes over until midnight.
    search_llm_daily_token_budget: int = Field(default=2_000_000, ge=0)
    search_enrich_interval_s: float = Field(default=2.0, gt=0, le=3600)
    search_enrich_batch: int = Field(default=20, ge=1, le=1000)
    # Reviews of one branch sent to the partner per extraction.
    search_enrich_reviews: int = Field(default=30, ge=1, le=200)

    @property
    def index_dir(self) -> Path:
        return self.search_index_dir or self.data_dir / "search-index"

    @model_validator(mode="after")
    def _backend_configured(self) -> Self:
        if self.search_backend == "elasticsearch" and not self.elasticsearch_url:
            raise ValueError("SMARTGYM_SEARCH_BACKEND=elasticsearch needs SMARTGYM_ELASTICSEARCH_URL")
        if self.environment == "production" and self.search_llm_url and self.search_llm_api_key is None:
            raise ValueError("SMARTGYM_SEARCH_LLM_URL needs SMARTGYM_SEARCH_LLM_API_KEY in production")
        return self
