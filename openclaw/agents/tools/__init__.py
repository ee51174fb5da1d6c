"""The agent's built-in tools (OpenClaw names and schemas) and the policy that selects them."""
