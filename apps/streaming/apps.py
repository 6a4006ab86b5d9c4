from django.apps import AppConfig


class StreamingConfig(AppConfig):
    name = "apps.streaming"
    label = "streaming"

    def ready(self) -> None:
        # gunicorn and uvicorn processes join the cluster registry (docs/streaming.md, "Cluster").
        from apps.streaming.cluster import start_for_server

        start_for_server()
