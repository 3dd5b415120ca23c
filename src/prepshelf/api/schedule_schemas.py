"""Request bodies of /v1/schedules: one body per kind of work, told apart by `kind`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from prepshelf.api.schemas import ChunkingStrategyParam, Metadata
from prepshelf.errors import InvalidRequestError

Cron = Annotated[str, Field(min_length=1, max_length=128, description="cron expression")]
TimeZone = Annotated[str, Field(min_length=1, max_length=64, description="IANA time zone")]
ObjectId = Annotated[str, Field(min_length=1, max_length=128)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class SourceSyncParams(_Body):
    vector_store_id: ObjectId
    source: str = Field(
        min_length=1,
        max_length=1024,
        description="An absolute folder path or s3://bucket/prefix, under PREPSHELF_SYNC_ROOTS",
    )
    chunking_strategy: ChunkingStrategyParam | None = None


class EvalRunParams(_Body):
    eval_id: ObjectId
    vector_store_id: ObjectId | None = Field(
        None, description="The store to search; default: the eval's own"
    )


class ScheduleCreate(_Body):
    name: str | None = Field(None, max_length=256)
    kind: Literal["source_sync", "eval_run"]
    params: dict[str, Any] = Field(
        description="source_sync: {vector_store_id, source, chunking_strategy?}; "
        "eval_run: {eval_id, vector_store_id?}"
    )
    cron: Cron
    timezone: TimeZone = "UTC"
    paused: bool = False
    metadata: Metadata | None = None


class ScheduleUpdate(_Body):
    """Fields to change; `params` replaces the whole params object (same kind)."""

    name: str | None = Field(None, max_length=256)
    cron: Cron | None = None
    timezone: TimeZone | None = None
    params: dict[str, Any] | None = None
    metadata: Metadata | None = None


PARAMS_MODELS: dict[str, type[SourceSyncParams] | type[EvalRunParams]] = {
    "source_sync": SourceSyncParams,
    "eval_run": EvalRunParams,
}


def parse_params(kind: str, data: dict[str, Any]) -> SourceSyncParams | EvalRunParams:
    """Validate params against the schedule's kind (a 400 naming the field)."""
    try:
        return PARAMS_MODELS[kind].model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise InvalidRequestError(
            f"Invalid value for 'params.{where}': {first.get('msg')}", param=f"params.{where}"
        ) from None
