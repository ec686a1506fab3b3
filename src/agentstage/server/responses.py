"""Turning operation values into responses: JSON, an ETag, and 304 for a matching one."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from agentstage.api_ops import matches

T = TypeVar("T")


class ProblemOut(BaseModel):
    file: str
    line: int | None
    path: str
    message: str


class ErrorDetail(BaseModel):
    code: str
    message: str
    hint: str | None = None
    problems: list[ProblemOut] | None = None


class ErrorOut(BaseModel):
    """Every error (DESIGN.md section 8); some carry the outcome's payload beside it."""

    error: ErrorDetail


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": text} for status, text in (
        (400, "usage: a bad id, path, parameter or body"),
        (404, "not_found: no such agent, publish or field"),
        (409, "conflict, or nothing_to_publish"),
        (412, "precondition_failed: If-Match names an older version"),
        (413, "too_large: a body over 1 MiB"),
        (415, "unsupported_media_type: a body that is not application/json"),
        (422, "invalid: the problems, each with its file, line and field path"),
        (500, "internal"),
    )}


def written(result: dict[str, Any], status: int = 200) -> JSONResponse:
    """A write's answer: its value (the operation's "etag" becomes the ETag header)."""
    body = dict(result)
    tag = body.pop("etag", None)
    return JSONResponse(body, status_code=status, headers={"ETag": tag} if tag else None)


def tagged(request: Request, value: Any, tag: str | None) -> Response:
    """*value* with ETag *tag* (a quoted string); 304 when If-None-Match names it."""
    headers = {"ETag": tag} if tag else {}
    wanted = request.headers.get("if-none-match")
    if tag and wanted is not None and matches(wanted, tag.strip('"')):
        return Response(status_code=304, headers=headers)
    return JSONResponse(value, headers=headers or None)


@contextmanager
def _held(lock: threading.Lock) -> Iterator[None]:
    with lock:
        yield


def one_writer(request: Request, write: Callable[[], T]) -> T:
    """Run *write* while no other request of this server writes: its own writes never race
    each other; a race with another process is handled by the operation (retry or 409)."""
    with _held(request.app.state.write_lock):
        return write()
