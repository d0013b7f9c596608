"""The matrix app in Django (ASGI)."""

from __future__ import annotations

import threading
from typing import Any

import django
import django.conf
import django.core.asgi
import django.http
import django.urls
from django.http import HttpRequest, HttpResponse

from .common import (
    BASE,
    COOKIES,
    JSON_BODY,
    LATIN,
    SSE_EVENT,
    STREAM_CHUNK,
    gated_chunks,
    probe_of,
    status_body,
)

__all__ = ["django_app"]


async def _django_json(request: HttpRequest) -> HttpResponse:
    return django.http.JsonResponse(JSON_BODY)


async def _django_echo(request: HttpRequest) -> HttpResponse:
    return HttpResponse(request.body, content_type="application/octet-stream")


async def _django_stream(request: HttpRequest) -> HttpResponse:
    chunks = gated_chunks(probe_of(request.headers), STREAM_CHUNK)
    return django.http.StreamingHttpResponse(chunks)


async def _django_sse(request: HttpRequest) -> HttpResponse:
    chunks = gated_chunks(probe_of(request.headers), SSE_EVENT)
    return django.http.StreamingHttpResponse(chunks, content_type="text/event-stream")


async def _django_status(request: HttpRequest, code: int) -> HttpResponse:
    return HttpResponse(status_body(code), status=code)


async def _django_raise(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("the handler failed")


async def _django_cookies(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(b"cookies")
    for name, value in COOKIES:
        response.set_cookie(name, value)
    return response


async def _django_latin1(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(request.headers.get("x-latin", "").encode())
    response["x-latin"] = LATIN
    return response


async def _django_inspect(request: HttpRequest, tail: str) -> HttpResponse:
    query = [(key, value) for key, values in request.GET.lists() for value in values]
    return django.http.JsonResponse({"path": request.path, "tail": tail, "query": query})


async def _django_state(request: HttpRequest) -> HttpResponse:
    # Django speaks no lifespan: nothing ever starts.
    return django.http.JsonResponse({"started": None})


async def _django_sub_where(request: HttpRequest) -> HttpResponse:
    return django.http.JsonResponse(
        {
            "path": request.path,
            "path_info": request.path_info,
            "script_name": request.META.get("SCRIPT_NAME"),
        }
    )


class _URLConf:
    """Django's root URLconf, as an object rather than a module."""

    def __init__(self) -> None:
        path = django.urls.path
        prefix = BASE.lstrip("/")
        self.urlpatterns = [
            path(f"{prefix}/json", _django_json),
            path(f"{prefix}/echo", _django_echo),
            path(f"{prefix}/stream", _django_stream),
            path(f"{prefix}/sse", _django_sse),
            path(f"{prefix}/status/<int:code>", _django_status),
            path(f"{prefix}/raise", _django_raise),
            path(f"{prefix}/cookies", _django_cookies),
            path(f"{prefix}/latin1", _django_latin1),
            path(f"{prefix}/inspect/<path:tail>", _django_inspect),
            path(f"{prefix}/state", _django_state),
            # Django mounts no ASGI apps; an included URLconf is its sub-application.
            path(f"{prefix}/sub/", django.urls.include([path("where", _django_sub_where)])),
        ]


_django_lock = threading.Lock()


def django_app() -> Any:
    # Settings are process-wide in Django: configured once, by the first app built.
    with _django_lock:
        if not django.conf.settings.configured:
            django.conf.settings.configure(
                DEBUG=False,
                SECRET_KEY="framework-matrix",
                ALLOWED_HOSTS=["*"],
                ROOT_URLCONF=_URLConf(),
                MIDDLEWARE=[],
                INSTALLED_APPS=[],
                USE_TZ=True,
                # Django's logging setup would reconfigure the process's loggers.
                LOGGING_CONFIG=None,
            )
            django.setup(set_prefix=False)
    return django.core.asgi.get_asgi_application()
