"""Request bodies of /v1/evals and its runs (names after OpenAI's Evals API)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from prepshelf.api.schemas import Metadata, RankingOptions

ObjectId = Annotated[str, Field(min_length=1, max_length=128)]
CriterionName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class QuestionsFile(_Body):
    """An uploaded eval set (JSONL or CSV; upload with purpose "evals")."""

    type: Literal["file"]
    file_id: ObjectId


class QuestionItems(_Body):
    """The questions inline, as JSONL lines would hold them."""

    type: Literal["items"]
    items: list[dict[str, Any]] = Field(min_length=1, max_length=10_000)


DataSourceConfig = Annotated[QuestionsFile | QuestionItems, Field(discriminator="type")]


class SearchCriterion(_Body):
    """One search setting a run measures; unset options take the server's search defaults."""

    type: Literal["search"] = "search"
    name: CriterionName
    ranking_options: RankingOptions | None = None
    ef_search: int | None = Field(None, ge=1, le=1000)
    filters: dict[str, Any] | None = None
    pass_k: int = Field(
        3, ge=1, le=10, description="A question passes when a right answer is in the first k files"
    )


class EvalCreate(_Body):
    name: str | None = Field(None, max_length=256)
    data_source_config: DataSourceConfig
    vector_store_id: ObjectId | None = Field(
        None, description="The store its runs search unless a run names another"
    )
    testing_criteria: list[SearchCriterion] | None = Field(None, min_length=1, max_length=8)
    metadata: Metadata | None = None

    @model_validator(mode="after")
    def _distinct_names(self) -> EvalCreate:
        _check_names(self.testing_criteria)
        return self


class EvalUpdate(_Body):
    name: str | None = Field(None, max_length=256)
    vector_store_id: ObjectId | None = None
    testing_criteria: list[SearchCriterion] | None = Field(None, min_length=1, max_length=8)
    metadata: Metadata | None = None

    @model_validator(mode="after")
    def _distinct_names(self) -> EvalUpdate:
        _check_names(self.testing_criteria)
        return self


def _check_names(criteria: list[SearchCriterion] | None) -> None:
    names = [c.name for c in criteria or []]
    if len(set(names)) != len(names):
        raise ValueError("testing_criteria names must be distinct")


class VectorStoreSource(_Body):
    type: Literal["vector_store"]
    vector_store_id: ObjectId


class RunCreate(_Body):
    name: str | None = Field(None, max_length=256)
    data_source: VectorStoreSource | None = Field(
        None, description="The store to search; default: the eval's vector_store_id"
    )
    metadata: Metadata | None = None
