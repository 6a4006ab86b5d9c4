"""The OpenAPI schema tells the truth about the answers (drf-spectacular).

- :class:`AutoSchema` (``DEFAULT_SCHEMA_CLASS``) documents, on every operation, the errors the
  shared machinery can give whatever the view does: 400/413/415 for a body (malformed, too large,
  not JSON), 401/403 where a token is required (missing, invalid, revoked; banned, pending,
  guest), 404 where the path names something or a page is asked for, 429 where the API rate
  limit counts. Every error
  answer, declared or added, has the one error body (:class:`ErrorSerializer`, docs/api.md "Errors").
- :func:`paginated`, :func:`one_or_many` and :func:`nullable` describe the answers that are not
  a plain serializer: DRF's pages, "one movie or a list of them", "a movie or null".

tests/test_openapi_conformance.py calls every operation and checks each answer against this.
"""

from __future__ import annotations

from drf_spectacular import openapi
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable snake_case code clients branch on.")
    message = serializers.CharField(help_text="A sentence for people.")
    details = serializers.DictField(help_text="Per-field messages or facts (retry_after, current...).")


class ErrorSerializer(serializers.Serializer):
    """``{"error": {"code", "message", "details"}}``: every error answer of the API."""

    error = ErrorDetailSerializer()


# Codes behind each status, for the description of the errors added to every operation.
ERROR_CODES = {
    400: "invalid (details names the fields)",
    401: "not_authenticated / token_invalid / token_revoked",
    403: "user_banned / account_pending / permission_denied / not_in_room",
    404: "not_found",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited (Retry-After header, details.retry_after)",
}
BODY_METHODS = ("POST", "PUT", "PATCH")

PAGE_PARAMETER = OpenApiParameter("page", int, description="Page number (pages of 50).")


def paginated(item: type[serializers.Serializer], *, name: str):
    """DRF's ``PageNumberPagination`` page of ``item``s (the views paginate by hand)."""
    return inline_serializer(
        name=name,
        fields={
            "count": serializers.IntegerField(),
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": item(many=True),
        },
    )


class OneOrMany(serializers.Serializer):
    """Schema marker: one ``item`` object or a list of 1..``max_items`` of them."""

    item: type[serializers.Serializer]
    max_items: int


def one_or_many(item: type[serializers.Serializer], *, name: str, max_items: int) -> type[OneOrMany]:
    return type(f"{name}Serializer", (OneOrMany,), {"item": item, "max_items": max_items})


class Nullable(serializers.Serializer):
    """Schema marker: an ``item`` object or JSON ``null``."""

    item: type[serializers.Serializer]


def nullable(item: type[serializers.Serializer], *, name: str) -> type[Nullable]:
    return type(f"{name}Serializer", (Nullable,), {"item": item})


class OneOrManyExtension(OpenApiSerializerExtension):
    target_class = OneOrMany
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        ref = auto_schema.resolve_serializer(self.target.item, direction).ref
        array = {"type": "array", "items": ref, "minItems": 1, "maxItems": self.target.max_items}
        return {"oneOf": [ref, array]}


class NullableExtension(OpenApiSerializerExtension):
    target_class = Nullable
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        ref = auto_schema.resolve_serializer(self.target.item, direction).ref
        # OpenAPI 3.0 has no "null" type: a nullable schema that allows nothing but null.
        return {"oneOf": [ref, {"type": "object", "nullable": True, "enum": [None]}]}


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(response=ErrorSerializer, description=description)


class AutoSchema(openapi.AutoSchema):
    # extend_schema(responses=...) replaces get_response_serializers() in a subclass it makes, so
    # the common answers are added where the responses are built (drf-spectacular 0.27-0.30).
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for status in self._common_errors():
            responses.setdefault(str(status), {"description": ERROR_CODES[status]})
        for code, answer in list(responses.items()):
            if code.isdigit() and int(code) >= 400 and "content" not in answer:
                description = answer.get("description") or ERROR_CODES.get(int(code), "")
                responses[code] = self._get_response_for_code(_error(description), code, direction=direction)
        return dict(sorted(responses.items()))

    def _common_errors(self) -> list[int]:
        view, statuses = self.view, []
        if self.method in BODY_METHODS:
            statuses += [400, 413, 415]
        if not self._anonymous_allowed():
            statuses += [401, 403]
        if "{" in self.path or self._paginated():
            statuses.append(404)  # or, paginated, a page below 1 or past the last (DRF's "Invalid page")
        if view.get_throttles():
            statuses.append(429)
        return statuses

    def _paginated(self) -> bool:
        return any(getattr(p, "name", None) == PAGE_PARAMETER.name for p in self.get_override_parameters())

    def _anonymous_allowed(self) -> bool:
        """Open to anonymous callers, a bad token ignored (apps.accounts.authentication)."""
        view = self.view
        if not view.get_authenticators():
            return True
        return getattr(view, "anonymous_allowed", False) and all(
            isinstance(p, AllowAny) for p in view.get_permissions()
        )
