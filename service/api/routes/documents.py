"""Adding, listing, reading and deleting articles."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, File, HTTPException, Query, Response, UploadFile, status

from index.models import check_doc_id
from service.answering.qa import QAService
from service.api.deps import AdminDep, QADep, ReaderDep, WriterDep
from service.schemas import AddDocumentsRequest, AddDocumentsResponse, DocumentDetail, DocumentList

MAX_OFFSET = 2**31  # beyond any archive; keeps the value inside SQLite's integer range
router = APIRouter(prefix="/documents", tags=["documents"])


def _valid_id(doc_id: str) -> str:
    try:
        return check_doc_id(doc_id)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from exc


def _release_after(qa: QAService, tasks: BackgroundTasks) -> None:
    """Once the response is sent, give back the memory the write took (``QAService.release_write_memory``)."""
    if qa.settings.release_after_write:
        tasks.add_task(qa.release_write_memory)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=AddDocumentsResponse,
             dependencies=[WriterDep])
def add_documents(body: AddDocumentsRequest, qa: QADep, tasks: BackgroundTasks) -> AddDocumentsResponse:
    """Add articles (JSON); an article with an id already stored replaces it. All are stored or none."""
    added = qa.add_documents(body.documents)
    _release_after(qa, tasks)
    return added


@router.post("/upload", status_code=status.HTTP_201_CREATED, response_model=AddDocumentsResponse,
             dependencies=[WriterDep])
def upload_documents(files: Annotated[list[UploadFile], File(description="txt, md, html or jsonl files")],
                     qa: QADep, tasks: BackgroundTasks) -> AddDocumentsResponse:
    """Add articles from uploaded files (.txt, .md, .html, .jsonl). All are stored or none."""
    if len(files) > qa.settings.max_upload_files:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail=f"{len(files)} files uploaded; at most "
                            f"{qa.settings.max_upload_files} per request (NEWSROOM_QA_MAX_UPLOAD_FILES)")
    limit = qa.settings.max_upload_bytes
    parsed = []
    for upload in files:
        data = upload.file.read(limit + 1)
        if len(data) > limit:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                                detail=f"{upload.filename}: larger than the {limit} byte upload limit")
        parsed.append((upload.filename or "upload.txt", data))
    added = qa.add_files(parsed)
    _release_after(qa, tasks)
    return added


@router.get("", response_model=DocumentList, dependencies=[ReaderDep])
def list_documents(qa: QADep, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                   offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0) -> DocumentList:
    """List stored articles (without their text), in id order."""
    return qa.list_documents(limit, offset)


@router.get("/{doc_id}", response_model=DocumentDetail, dependencies=[ReaderDep])
def read_document(doc_id: str, qa: QADep) -> DocumentDetail:
    """One stored article with its cleaned text: the text every citation offset refers to."""
    return qa.get_document(_valid_id(doc_id))


@router.delete("/{doc_id}", status_code=status.HTTP_204_NO_CONTENT, dependencies=[AdminDep])
def delete_document(doc_id: str, qa: QADep, tasks: BackgroundTasks) -> Response:
    """Delete an article and its passages."""
    qa.delete_document(_valid_id(doc_id))
    _release_after(qa, tasks)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
