"""Content-Security-Policy for every response (the web page's pages above all).

Strict: scripts and styles only from this origin, no inline script, no inline style, no eval,
nothing may frame the page. What the page legitimately reaches beyond its origin:
- media-src: viewers' browsers play movie URLs from anywhere (docs/security.md, "Checks on what
  comes in": viewers' browsers fetch them), and hls.js plays through MediaSource (blob: URLs);
- connect-src: the room WebSocket (its own origin, or WS_PUBLIC_URL's) and HLS playlists and
  segments, which hls.js fetches from wherever the movie lives;
- worker-src blob:: hls.js runs its demuxer in a worker made from a blob.
``CSP_EXEMPT_PATHS`` (setting) lists path prefixes served by third-party pages that need inline
script or style (Django admin); they get no policy from here. The Swagger UI at /api/docs/ is not
one of them: its files are served from this site and its start-up script is a file
(synctv/urls.py), so it runs under the same policy as every page.
"""

from __future__ import annotations

from django.conf import settings

DEFAULT_EXEMPT = ("/admin/",)


def build_policy() -> str:
    directives = {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:", "blob:"],
        "font-src": ["'self'"],
        "media-src": ["'self'", "http:", "https:", "blob:"],
        "connect-src": ["'self'", "ws:", "wss:", "http:", "https:"],
        "worker-src": ["'self'", "blob:"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
    return "; ".join(f"{name} {' '.join(values)}" for name, values in directives.items())


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response
        self.policy = build_policy()
        self.exempt = tuple(getattr(settings, "CSP_EXEMPT_PATHS", DEFAULT_EXEMPT))

    def __call__(self, request):
        response = self.get_response(request)
        if "Content-Security-Policy" not in response and not request.path.startswith(self.exempt):
            response["Content-Security-Policy"] = self.policy
        return response
