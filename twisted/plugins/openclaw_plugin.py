"""twistd plugin: ``twistd -n openclaw`` / ``twist openclaw``."""

from twisted.application.service import ServiceMaker

openclaw = ServiceMaker(
    "OpenClaw gateway",
    "openclaw.service",
    "OpenClaw-compatible AI gateway: OpenAI chat completions and the OpenClaw WebSocket protocol",
    "openclaw",
)
