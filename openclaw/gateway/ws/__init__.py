"""OpenClaw's WebSocket gateway protocol on Autobahn.

``server.build_ws_gateway`` is the entry point: the state every connection
shares, and the resource upgrades go to (Autobahn loads on the first one,
through ``factory``); ``protocol`` is one connection, ``handshake`` the
``connect`` checks, ``methods`` the method table, ``events`` the fan-out of
runs, ``logbuffer`` the ring buffer behind ``logs.tail``.
Kept import-free so importing a submodule never pulls in the whole gateway.
"""
