"""Where an action came from, passed to services so audit rows can say it."""

from __future__ import annotations

from dataclasses import dataclass

from apps.core.net import client_ip, user_agent


@dataclass(frozen=True, slots=True)
class Origin:
    ip: str | None = None
    user_agent: str = ""

    @classmethod
    def of(cls, request) -> Origin:
        return cls(ip=client_ip(request), user_agent=user_agent(request))


SYSTEM = Origin(ip=None, user_agent="system")
