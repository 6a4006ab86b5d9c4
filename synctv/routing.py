"""WebSocket routes. The room consumer arrives with the real-time rooms work."""

websocket_urlpatterns: list = []
