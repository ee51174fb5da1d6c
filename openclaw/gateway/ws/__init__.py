"""OpenClaw's WebSocket gateway protocol on Autobahn.

``factory.build_ws_factory`` is the entry point (wrapped in a
``WebSocketResource`` by the gateway's root resource); ``protocol`` is one
connection, ``handshake`` the ``connect`` checks, ``methods`` the method table,
``events`` the fan-out of runs, ``logbuffer`` the ring buffer behind ``logs.tail``.
Kept import-free so importing a submodule never pulls in the whole gateway.
"""
