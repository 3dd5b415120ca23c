"""/v1/files: upload (streamed), list, retrieve, delete, content."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse

from prepshelf.api.deps import ConnDep, PageDep, ProjectDep
from prepshelf.api.idempotency import IdempotentRoute, claim_streamed
from prepshelf.api.upload import content_disposition, receive_upload
from prepshelf.api.views import file_object, list_object
from prepshelf.domain.files import File, safe_filename
from prepshelf.errors import InvalidRequestError, NotFoundError
from prepshelf.ids import new_file_id
from prepshelf.jobs.cancel import cancel_jobs_of_file
from prepshelf.store import files as files_db
from prepshelf.store.blobs import BlobStore, LocalBlobStore

router = APIRouter(prefix="/v1/files", tags=["files"], route_class=IdempotentRoute)

_STREAM_BYTES = 1024 * 1024

PURPOSES = {"assistants", "batch", "fine-tune", "vision", "user_data", "evals"}

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "purpose"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "purpose": {"type": "string", "enum": sorted(PURPOSES)},
                    },
                }
            }
        },
    }
}


@router.post("", openapi_extra=_UPLOAD_BODY)
async def upload_file(request: Request, project: ProjectDep) -> dict[str, Any]:
    # No ConnDep: a pooled connection is taken only once the body is in. Held for the whole
    # transfer, a few slow uploads would empty the pool and stall every status read.
    settings = request.app.state.settings
    file_id = new_file_id()
    blob_key = f"files/{file_id}"
    blobs = request.app.state.blobs
    upload = await receive_upload(
        request, blobs=blobs, blob_key=blob_key, max_bytes=settings.max_upload_bytes
    )
    purpose = upload.fields.get("purpose")
    if purpose not in PURPOSES:
        blobs.delete(blob_key)
        raise InvalidRequestError(
            f"Invalid 'purpose' {purpose!r}; expected one of {', '.join(sorted(PURPOSES))}",
            param="purpose",
        )
    assert upload.sha256 is not None
    filename = safe_filename(upload.filename or "upload")
    try:
        await claim_streamed(request, upload.sha256, purpose, filename)
    except Exception:  # a duplicate (replayed) or a key reused for another file
        blobs.delete(blob_key)
        raise
    async with request.app.state.pool.connection() as conn:
        file = await files_db.insert_file(
            conn,
            file_id=file_id,
            project_id=project,
            filename=filename,
            purpose=purpose,
            size=upload.size,
            sha256=upload.sha256,
            blob_key=blob_key,
        )
    return file_object(file)


@router.get("")
async def list_files(
    project: ProjectDep,
    conn: ConnDep,
    page: PageDep,
    purpose: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    result = await files_db.list_files(conn, project_id=project, purpose=purpose, page=page)
    return list_object([file_object(r) for r in result.rows], result.has_more)


async def _get(conn: Any, project: str, file_id: str) -> File:
    file = await files_db.get_file(conn, project_id=project, file_id=file_id)
    if file is None:
        raise NotFoundError(f"No such File object: {file_id}", param="file_id")
    return file


@router.get("/{file_id}")
async def retrieve_file(file_id: str, project: ProjectDep, conn: ConnDep) -> dict[str, Any]:
    return file_object(await _get(conn, project, file_id))


@router.delete("/{file_id}")
async def delete_file(
    file_id: str, request: Request, project: ProjectDep, conn: ConnDep, tasks: BackgroundTasks
) -> dict[str, Any]:
    await _get(conn, project, file_id)
    await cancel_jobs_of_file(request.app.state.queue, conn, file_id=file_id)
    deleted = await files_db.delete_file(conn, project_id=project, file_id=file_id)
    if deleted is None:
        raise NotFoundError(f"No such File object: {file_id}", param="file_id")
    # Removing the bytes is disposable follow-up work: the row is already gone.
    tasks.add_task(request.app.state.blobs.delete, deleted.blob_key)
    return {"id": file_id, "object": "file", "deleted": True}


@router.get("/{file_id}/content")
async def file_content(
    file_id: str, request: Request, project: ProjectDep, conn: ConnDep
) -> Response:
    file = await _get(conn, project, file_id)
    blobs = request.app.state.blobs
    disposition = content_disposition(file.filename)
    if isinstance(blobs, LocalBlobStore):
        return FileResponse(
            blobs.path(file.blob_key),
            media_type="application/octet-stream",
            headers={"content-disposition": disposition},
        )
    # Remote blobs stream through in chunks (sync iterator: Starlette runs it in a thread).
    return StreamingResponse(
        _stream_blob(blobs, file.blob_key),
        media_type="application/octet-stream",
        headers={"content-length": str(file.bytes), "content-disposition": disposition},
    )


def _stream_blob(blobs: BlobStore, key: str) -> Iterator[bytes]:
    with blobs.open_reader(key) as fh:
        while data := fh.read(_STREAM_BYTES):
            yield data
