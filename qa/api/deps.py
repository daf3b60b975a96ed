"""Shared route dependencies: the loaded service, the settings, the metrics, and the write guard (optional API
key)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from qa.api.errors import NotReady, Unauthorized
from qa.api.metrics import Metrics
from qa.config import Settings
from qa.service import Service


def get_service(request: Request) -> Service:
    service = getattr(request.app.state, "service", None)
    if service is None:
        raise NotReady(getattr(request.app.state, "not_ready_reason", "the model and index are still loading"))
    return service


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


ServiceDep = Annotated[Service, Depends(get_service)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <QA_API_KEY>` (writes only).")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="`X-API-Key: <QA_API_KEY>`.")


def require_write_access(
    settings: SettingsDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    api_key: Annotated[str | None, Security(_api_key_header)],
) -> None:
    """When `QA_API_KEY` is set, writes must present it (either header); reads stay open."""
    expected = settings.api_key.get_secret_value() if settings.api_key else ""
    if not expected:
        return
    given = [c for c in (bearer.credentials if bearer else None, api_key) if c]
    # compare_digest on bytes: constant time, and no TypeError on non-ASCII keys.
    if not any(hmac.compare_digest(c.encode(), expected.encode()) for c in given):
        raise Unauthorized(
            "this endpoint needs the API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`"
            if not given
            else "the API key is not valid"
        )


WriteAccess = Depends(require_write_access)
