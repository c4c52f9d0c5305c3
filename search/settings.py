"""search's settings: which engine answers, where the index lives, the LLM partner and its budget."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator

from common.settings import PlatformSettings


class SearchSettings(PlatformSettings):
    search_backend: Literal["tantivy", "elasticsearch"] = Field(
        default="tantivy",
        description=(
            "tantivy: in-process index on local disk (embedded mode, one replica); "
            "elasticsearch: a shared Elasticsearch 8 cluster behind a read alias (several replicas)."
        ),
    )
    search_index_dir: Path | None = Field(
        default=None, description="Directory of the embedded index; unset: <data_dir>/search-index."
    )
    elasticsearch_url: str | None = Field(
        default=None, description="Elasticsearch 8 URL, needed with search_backend=elasticsearch."
    )
    elasticsearch_api_key: SecretStr | None = Field(default=None, description="Elasticsearch API key, if it needs one.")
    elasticsearch_index_prefix: str = Field(
        default="smartgym",
        pattern=r"^[a-z][a-z0-9_-]{0,40}$",
        description="Prefix of the index template, the alias <prefix>-branches and its indices.",
    )
    elasticsearch_timeout_s: float = Field(default=5.0, gt=0, le=60, description="Per-request timeout, seconds.")
    elasticsearch_bulk_retries: int = Field(
        default=3, ge=0, le=10, description="Retries of documents a bulk write was refused (429)."
    )
    search_station_radius_m: float = Field(
        default=2_000, gt=0, le=50_000, description="How far from a named station a branch counts as near it, metres."
    )
    search_district_radius_m: float = Field(
        default=4_000, gt=0, le=50_000, description="How far from a district's centre a branch counts as in it, metres."
    )
    search_near_me_radius_m: float = Field(
        default=3_000, gt=0, le=50_000, description="Radius of 'near me' around the caller's position, metres."
    )
    search_timezone: str = Field(default="Asia/Seoul", description="Time zone of branches' opening hours ('open now').")
    search_review_sample: int = Field(
        default=8,
        ge=0,
        le=100,
        description="Latest reviews whose text a branch's document carries (the rest is summarised in tags).",
    )
    search_index_flush_s: float = Field(
        default=0.2,
        gt=0,
        le=60,
        description="Changes gathered this long before they are written to the index, seconds.",
    )
    search_catalogue_refresh_s: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="With Elasticsearch: how often each replica re-reads its in-memory catalogue, seconds.",
    )
    search_llm_url: str | None = Field(
        default=None,
        description="OpenAI-compatible chat-completions partner for keyword extraction; unset: the offline extractor.",
    )
    search_llm_api_key: SecretStr | None = Field(default=None, description="Bearer key of the LLM partner.")
    search_llm_model: str = Field(
        default="gpt-4o-mini", min_length=1, max_length=100, description="Model name sent to the LLM partner."
    )
    search_llm_timeout_s: float = Field(default=20.0, gt=0, le=120, description="Per-call timeout, seconds.")
    search_llm_max_attempts: int = Field(
        default=3, ge=1, le=10, description="Attempts per extraction (429, 5xx and timeouts are retried)."
    )
    search_llm_retry_base_s: float = Field(
        default=0.5, gt=0, le=60, description="First back-off between attempts, doubling, seconds."
    )
    search_llm_daily_token_budget: int = Field(
        default=2_000_000,
        ge=0,
        description="Tokens per UTC day; past it the offline extractor takes over until midnight.",
    )
    search_enrich_interval_s: float = Field(
        default=2.0, gt=0, le=3600, description="How often the cold path looks for branches to enrich, seconds."
    )
    search_enrich_batch: int = Field(default=20, ge=1, le=1000, description="Branches enriched per round.")
    search_enrich_reviews: int = Field(
        default=30, ge=1, le=200, description="Latest reviews of one branch sent to the extractor."
    )

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
