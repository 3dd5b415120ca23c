"""Request bodies, validated as OpenAI validates them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

MetadataKey = Annotated[str, StringConstraints(max_length=64)]
MetadataValue = Annotated[str, StringConstraints(max_length=512)]
Metadata = Annotated[dict[MetadataKey, MetadataValue], Field(max_length=16)]
AttributeValue = Annotated[str, StringConstraints(max_length=512)] | bool | float | int
Attributes = Annotated[dict[MetadataKey, AttributeValue], Field(max_length=16)]


class _Body(BaseModel):
    # Unknown fields are ignored, so newer SDKs keep working against this server.
    model_config = ConfigDict(extra="ignore")


class StaticChunking(_Body):
    max_chunk_size_tokens: int = Field(800, ge=100, le=4096)
    chunk_overlap_tokens: int = Field(400, ge=0)


class AutoChunkingStrategy(_Body):
    type: Literal["auto"]


class StaticChunkingStrategy(_Body):
    type: Literal["static"]
    static: StaticChunking


ChunkingStrategyParam = Annotated[
    AutoChunkingStrategy | StaticChunkingStrategy, Field(discriminator="type")
]


class ExpiresAfter(_Body):
    anchor: Literal["last_active_at"]
    days: int = Field(ge=1, le=365)


class VectorStoreCreate(_Body):
    name: str | None = Field(None, max_length=256)
    description: str | None = Field(None, max_length=4096)
    file_ids: list[str] | None = Field(None, max_length=500)
    chunking_strategy: ChunkingStrategyParam | None = None
    expires_after: ExpiresAfter | None = None
    metadata: Metadata | None = None


class VectorStoreUpdate(_Body):
    name: str | None = Field(None, max_length=256)
    expires_after: ExpiresAfter | None = None
    metadata: Metadata | None = None


class VectorStoreFileCreate(_Body):
    file_id: str = Field(min_length=1, max_length=128)
    attributes: Attributes | None = None
    chunking_strategy: ChunkingStrategyParam | None = None


class VectorStoreFileUpdate(_Body):
    attributes: Attributes | None


class BatchFile(_Body):
    file_id: str = Field(min_length=1, max_length=128)
    attributes: Attributes | None = None
    chunking_strategy: ChunkingStrategyParam | None = None


class FileBatchCreate(_Body):
    file_ids: list[Annotated[str, StringConstraints(min_length=1, max_length=128)]] | None = Field(
        None, min_length=1, max_length=2000
    )
    files: list[BatchFile] | None = Field(None, min_length=1, max_length=2000)
    attributes: Attributes | None = None
    chunking_strategy: ChunkingStrategyParam | None = None

    @model_validator(mode="after")
    def _one_form(self) -> FileBatchCreate:
        if (self.file_ids is None) == (self.files is None):
            raise ValueError("Provide exactly one of 'file_ids' or 'files'")
        return self


class HybridSearch(_Body):
    """Reciprocal rank fusion weights of the vector and full-text rankings (Responses API)."""

    embedding_weight: float = Field(ge=0.0, le=100.0)
    text_weight: float = Field(ge=0.0, le=100.0)

    @model_validator(mode="after")
    def _some_weight(self) -> HybridSearch:
        if self.embedding_weight + self.text_weight <= 0:
            raise ValueError("At least one of 'embedding_weight' and 'text_weight' must be > 0")
        return self


class RankingOptions(_Body):
    ranker: Literal["none", "auto", "default-2024-11-15"] = "auto"
    score_threshold: float = Field(0.0, ge=0.0, le=1.0)
    hybrid_search: HybridSearch | None = None


class SearchRequest(_Body):
    query: (
        Annotated[str, StringConstraints(min_length=1, max_length=8192)]
        | Annotated[
            list[Annotated[str, StringConstraints(min_length=1, max_length=8192)]],
            Field(min_length=1, max_length=16),
        ]
    )
    max_num_results: int = Field(10, ge=1, le=50)
    filters: dict[str, Any] | None = None
    ranking_options: RankingOptions | None = None
    rewrite_query: bool = False


class ProjectCreate(_Body):
    name: str = Field(min_length=1, max_length=64)


class ApiKeyCreate(_Body):
    project_id: str = Field(min_length=1, max_length=128)
    name: str | None = Field(None, max_length=256)
    is_admin: bool = False
