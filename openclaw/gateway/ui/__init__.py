"""The Control UI: a browser chat served by the gateway (``gateway.controlUi``)."""

from openclaw.gateway.ui.assets import AssetBundle, AssetError
from openclaw.gateway.ui.resource import ControlUi, build_control_ui, content_security_policy

__all__ = ["AssetBundle", "AssetError", "ControlUi", "build_control_ui", "content_security_policy"]
