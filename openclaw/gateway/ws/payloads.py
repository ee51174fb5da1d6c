"""The final payload of an ``agent`` turn, in OpenClaw's shape.

The WebSocket ``agent`` method answers with it and ``openclaw agent --json``
prints it, local or remote alike, so scripts see one shape.
"""

from __future__ import annotations

from typing import Any

from openclaw.agents.types import AgentResult


def agent_final_payload(result: AgentResult) -> dict[str, Any]:
    """``{runId, status:"ok", summary:"completed", result:{payloads, meta}}``."""
    meta: dict[str, Any] = {
        "durationMs": max(0, result.ended_at - result.started_at),
        "agentMeta": {
            "sessionId": result.session_id,
            "sessionKey": result.session_key,
            "agentId": result.agent_id,
            # The model that answered, as OpenClaw's agentMeta has it.
            **({"provider": result.provider} if result.provider else {}),
            **({"model": result.model} if result.model else {}),
        },
        "usage": result.usage.as_openclaw(),
        "stopReason": result.stop_reason,
    }
    if result.pending_tool_calls:
        meta["pendingToolCalls"] = [
            {"id": call.id, "name": call.name, "arguments": call.arguments}
            for call in result.pending_tool_calls
        ]
    payloads = [{"text": result.text, "mediaUrl": None}] if result.text else []
    return {
        "runId": result.run_id,
        "status": "ok",
        "summary": "completed",
        "result": {"payloads": payloads, "meta": meta},
    }
