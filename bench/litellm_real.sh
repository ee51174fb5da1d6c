#!/usr/bin/env bash
# The LiteLLM proxy, for the optional comparison (BENCH_LITELLM=1 make bench).
#
#   bash bench/litellm_real.sh install   # litellm[proxy]==$LITELLM_VERSION into its own virtualenv
#   bash bench/litellm_real.sh run       # what bench/run.py calls: install, configure, start
#
# The virtualenv is $BENCH_LITELLM_DIR (default <repo>/.cache/litellm-bench),
# never the project's; everything comes from PyPI with pip. `run` needs
# LL_STATE (an empty directory), LL_UPSTREAM_PORT (the fake upstream) and
# LL_MASTER_KEY (the bearer token clients send; LiteLLM refuses to start
# without one); it writes a config with one model per bench profile
# (`openclaw/<profile>` -> the fake's `<profile>` as an OpenAI-compatible
# upstream), no database, telemetry off, one worker; starts `litellm` on a free loopback
# port, waits until /health/liveliness answers, prints
# "listening on 127.0.0.1:<port> pid <pid>" and stays until SIGTERM.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIR="${BENCH_LITELLM_DIR:-$HERE/../.cache/litellm-bench}"
VERSION="${LITELLM_VERSION:-1.108.7}"
PY="${BENCH_LITELLM_PYTHON:-python3}"

install() {
    if [ -x "$DIR/bin/litellm" ] && [ "$(cat "$DIR/.installed" 2>/dev/null)" = "$VERSION" ]; then
        return
    fi
    mkdir -p "$DIR"
    "$PY" -m venv "$DIR"
    "$DIR/bin/python" -m pip install -q --upgrade pip
    "$DIR/bin/python" -m pip install -q "litellm[proxy]==$VERSION"
    "$DIR/bin/litellm" --version >/dev/null 2>&1 || "$DIR/bin/python" -c "import litellm"
    echo "$VERSION" > "$DIR/.installed"
}

run() {
    install >&2
    : "${LL_STATE:?LL_STATE must name an empty directory}"
    : "${LL_UPSTREAM_PORT:?LL_UPSTREAM_PORT must be the fake upstream port}"
    : "${LL_MASTER_KEY:?LL_MASTER_KEY must be set (sk-...)}"
    local port config
    port="$("$DIR/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    config="$LL_STATE/litellm.yaml"
    {
        echo "model_list:"
        for profile in ${LL_PROFILES:-s1 s2 s3 s4 s5 s7}; do
            cat <<YAML
  - model_name: openclaw/$profile
    litellm_params:
      model: openai/$profile
      api_base: http://127.0.0.1:$LL_UPSTREAM_PORT/v1
      api_key: bench
YAML
        done
        cat <<YAML
litellm_settings:
  telemetry: false
  drop_params: true
  set_verbose: false
general_settings:
  disable_spend_logs: true
  disable_error_logs: true
YAML
    } > "$config"
    HOME="$LL_STATE" LITELLM_MASTER_KEY="$LL_MASTER_KEY" LITELLM_TELEMETRY=False LITELLM_LOG=ERROR DISABLE_SCHEMA_UPDATE=true \
        NO_DOCS=True "$DIR/bin/litellm" --config "$config" --host 127.0.0.1 --port "$port" \
        --num_workers 1 &
    local pid=$!
    trap 'kill -TERM "$pid" 2>/dev/null; wait "$pid"; exit 0' TERM INT
    for _ in $(seq 1 240); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "litellm exited before listening" >&2
            exit 1
        fi
        if "$DIR/bin/python" -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/health/liveliness', timeout=2)" 2>/dev/null; then
            echo "listening on 127.0.0.1:$port pid $pid"
            wait "$pid"
            exit 0
        fi
        sleep 0.5
    done
    echo "litellm did not answer within 120 s" >&2
    kill -TERM "$pid"
    exit 1
}

case "${1:-}" in
    install) install ;;
    run) run ;;
    *) echo "usage: $0 install|run" >&2; exit 2 ;;
esac
