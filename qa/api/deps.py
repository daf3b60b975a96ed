"""Shared route dependencies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from qa.api.errors import NotReady
from qa.service import Service


def get_service(request: Request) -> Service:
    service = getattr(request.app.state, "service", None)
    if service is None:
        raise NotReady("the model and index are still loading; retry in a few seconds")
    return service


ServiceDep = Annotated[Service, Depends(get_service)]
