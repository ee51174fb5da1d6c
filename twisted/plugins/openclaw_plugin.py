"""twistd plugin: ``twistd -n openclaw`` / ``twist openclaw``."""

from twisted.application.service import ServiceMaker

# typing note: ServiceMaker's constructor is unannotated in Twisted.
openclaw = ServiceMaker(  # type: ignore[no-untyped-call]
    "OpenClaw gateway",
    "openclaw.service",
    "OpenClaw-compatible AI gateway: OpenAI chat completions and the OpenClaw WebSocket protocol",
    "openclaw",
)
