"""The bottom layer: values and helpers every other layer may use.

Nothing here imports from the rest of :mod:`openclaw` (the import contract in
``pyproject.toml`` enforces it), so config, sessions, agents and the gateway can
all share these names without import cycles.
"""
