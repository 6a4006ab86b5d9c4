"""Middleware shared by the whole site."""

from __future__ import annotations

from contextvars import ContextVar

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions

API_PATH_PREFIXES = ("/api/v1/",)


class SkipForApiMixin:
    """For middleware that only cookie-carrying browser requests (pages, the admin) need: the
    JSON API under ``API_PATH_PREFIXES`` skips it.

    The API authenticates ``Authorization: Bearer`` tokens in DRF and never reads a session, a
    cookie login or a flash message, so for it these layers are pure cost (measured with the
    authenticated ``users/me`` read: bench/README.md). Subclasses, not a separate chain: Django's
    admin checks look for these classes (or subclasses) in MIDDLEWARE. Works in sync and async
    mode: both branches return what the wrapped ``get_response`` returns (a coroutine in async).
    """

    def __call__(self, request):
        if request.path_info.startswith(API_PATH_PREFIXES):
            return self.get_response(request)
        return super().__call__(request)


class SessionMiddleware(SkipForApiMixin, sessions.SessionMiddleware):
    pass


class AuthenticationMiddleware(SkipForApiMixin, auth.AuthenticationMiddleware):
    pass


class MessageMiddleware(SkipForApiMixin, messages.MessageMiddleware):
    pass


class CurrentRequestMiddleware:
    """Makes the request being served available to code that has no request argument
    (``current_request()``), for as long as it is served; sync and async.

    django-auditlog's own middleware does this for its log entries by connecting and
    disconnecting a signal receiver on every request (measurable on the hottest read), and it
    reads ``request.user`` before DRF has authenticated the bearer token, so API changes had no
    actor. ``apps.audit.model_history`` reads the request when an entry is saved instead.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        token = _current_request.set(request)
        try:
            return self.get_response(request)
        finally:
            _current_request.reset(token)

    async def __acall__(self, request):
        token = _current_request.set(request)
        try:
            return await self.get_response(request)
        finally:
            _current_request.reset(token)


_current_request: ContextVar = ContextVar("synctv_current_request", default=None)


def current_request():
    """The HttpRequest being served in this context, or None (commands, tasks, sockets)."""
    return _current_request.get()
