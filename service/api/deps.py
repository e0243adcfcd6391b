"""Dependencies named once and read like types in route signatures."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.chat import ChatService
from service.feedback import FeedbackStore
from service.newsroom import Newsroom
from service.qa import QAService

__all__ = ["ChatDep", "FeedbackDep", "QADep", "ReaderDep", "WriterDep"]

_bearer = HTTPBearer(auto_error=False, description="The key set in NEWSROOM_QA_API_KEY.")


def get_newsroom(request: Request) -> Newsroom:
    newsroom: Newsroom = request.app.state.newsroom
    return newsroom


def get_qa_service(request: Request) -> QAService:
    return get_newsroom(request).qa


def get_chat_service(request: Request) -> ChatService:
    return get_newsroom(request).chat_service


def get_feedback_store(request: Request) -> FeedbackStore:
    return get_newsroom(request).feedback


QADep = Annotated[QAService, Depends(get_qa_service)]
ChatDep = Annotated[ChatService, Depends(get_chat_service)]
FeedbackDep = Annotated[FeedbackStore, Depends(get_feedback_store)]
CredentialsDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _check_key(service: QAService, credentials: HTTPAuthorizationCredentials | None) -> None:
    errors = service.prompts.templates.errors
    configured = service.settings.api_key
    if configured is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=errors["writes_disabled"])
    if credentials is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail=errors["missing_key"],
                            headers={"WWW-Authenticate": "Bearer"})
    # Constant-time comparison: response timing must not reveal how much of a guessed key was right.
    if not hmac.compare_digest(credentials.credentials.encode(), configured.get_secret_value().encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail=errors["wrong_key"],
                            headers={"WWW-Authenticate": "Bearer"})


def require_writer(service: QADep, credentials: CredentialsDep) -> None:
    """Writes need the configured API key; with none configured, HTTP writes are refused."""
    _check_key(service, credentials)


def require_reader(service: QADep, credentials: CredentialsDep) -> None:
    """Reads are open unless NEWSROOM_QA_PUBLIC_READS=false, then they need the API key too."""
    if not service.settings.public_reads:
        _check_key(service, credentials)


WriterDep = Depends(require_writer)
ReaderDep = Depends(require_reader)
