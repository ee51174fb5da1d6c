"""``make fuzz``: generated and mutated HTTP requests and WebSocket frames fired at a
real ``twistd openclaw`` (see docs/fuzzing.md)."""
