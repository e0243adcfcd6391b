"""Dependencies named once and read like types in route signatures."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.answering.qa import QAService
from service.api.auth import ANONYMOUS, KeyRing, Principal, Scope
from service.api.ratelimit import RateLimiter
from service.conversation.chat import ChatService
from service.conversation.feedback import FeedbackStore
from service.newsroom import Newsroom

__all__ = ["AdminDep", "ChatDep", "FeedbackDep", "QADep", "ReaderDep", "WriterDep", "require"]

_bearer = HTTPBearer(auto_error=False, description="A key from NEWSROOM_QA_API_KEY or NEWSROOM_QA_API_KEYS_FILE.")


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

# What each scope lets a key do, for the messages of refused requests.
_ACTIONS = {"read": "read the archive", "write": "add articles or delete conversations", "admin": "delete articles"}


def _refuse(code: int, detail: str) -> HTTPException:
    headers = {"WWW-Authenticate": "Bearer"} if code == status.HTTP_401_UNAUTHORIZED else None
    return HTTPException(code, detail=detail, headers=headers)


def require(scope: Scope) -> Any:
    """A route dependency: the request's key must hold ``scope`` (reads may be public), within the rate limit."""

    def dependency(request: Request, credentials: CredentialsDep) -> Principal:
        newsroom: Newsroom = request.app.state.newsroom
        ring: KeyRing = request.app.state.keyring
        limiter: RateLimiter = request.app.state.limiter
        errors = newsroom.qa.prompts.templates.errors
        public = scope == "read" and newsroom.qa.settings.public_reads
        if not ring and not public:
            raise _refuse(status.HTTP_403_FORBIDDEN, errors["writes_disabled"])
        principal = ANONYMOUS
        if credentials is not None:
            found = ring.authenticate(credentials.credentials)
            if found is None:
                raise _refuse(status.HTTP_401_UNAUTHORIZED, errors["wrong_key"])
            principal = found
        if not principal.can(scope) and not public:
            if principal is not ANONYMOUS:
                raise _refuse(status.HTTP_403_FORBIDDEN, errors["missing_scope"].format(
                    name=principal.name, action=_ACTIONS[scope], scope=scope))
            raise _refuse(status.HTTP_401_UNAUTHORIZED, errors["missing_key"].format(scope=scope))
        anonymous = principal is ANONYMOUS
        identity = f"ip:{request.client.host if request.client else 'unknown'}" if anonymous else principal.name
        wait = limiter.check(identity, anonymous)
        if wait:
            raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, headers={"Retry-After": str(wait)},
                                detail=errors["rate_limited"].format(
                                    who="this client" if anonymous else f"key {principal.name!r}",
                                    limit=limiter.describe(anonymous), seconds=wait))
        request.state.principal = principal
        return principal

    return Depends(dependency)


ReaderDep = require("read")
WriterDep = require("write")
AdminDep = require("admin")
