from django.contrib import admin
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from apps.accounts.api import JWKSView
from apps.core import errors, health, metrics

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path(".well-known/jwks.json", JWKSView.as_view(), name="well-known-jwks"),
    path("api/v1/", include("apps.accounts.urls")),
    path("api/v1/", include("apps.rooms.urls")),
    path("api/v1/", include("apps.streaming.urls")),
    path("internal/rtmp/", include("apps.streaming.urls_internal")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's start-up script as a file (?script), so the page needs
    # no inline script and keeps the site's strict Content-Security-Policy.
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(url_name="schema", template_name="api/swagger_ui.html"),
        name="swagger-ui",
    ),
    path("admin/", admin.site.urls),
    # The web page (templates/, static/): sign up, log in, room list, room.
    path("", include("apps.web.urls")),
    # Unknown API paths answer in the API's error format, in DEBUG too (and for any method:
    # without csrf_exempt a POST from a non-browser client got Django's HTML CSRF page).
    re_path(r"^api/", csrf_exempt(errors.not_found)),
]

handler400 = "apps.core.errors.bad_request"
handler404 = "apps.core.errors.not_found"
handler500 = "apps.core.errors.server_error"
