# `make bench` (issue 6): the benchmark harness in bench/, results in bench/results/
# and docs/benchmarks.md. Included by the Makefile after STAMP and BIN are defined.
#
#   make bench                          # two rounds, every scenario (< 6 min on 2 cores)
#   make bench BENCH_ARGS="--quick"     # small sizes, one minute: tries the harness
#   make bench BENCH_ARGS="--only S1,S2 --rounds 1"
#   BENCH_OPENCLAW=1 make bench         # also the real OpenClaw gateway (bench/openclaw_real.sh)
#   BENCH_LITELLM=1 make bench          # also the LiteLLM proxy in every round (bench/litellm_real.sh;
#                                       # litellm[proxy] in its own virtualenv under .cache/)
#
# wrk drives the request/response scenarios (S1, S8). It is found on PATH, or
# installed from Debian's package `wrk` with apt-get when we are root (or have
# password-less sudo); if neither works, S1 and S8 are reported as not run.
BENCH_ARGS ?=

bench: $(STAMP)
	@if command -v wrk >/dev/null 2>&1; then \
		echo "bench: using wrk at $$(command -v wrk)"; \
	else \
		SUDO=""; \
		if [ "$$(id -u)" != 0 ]; then \
			if sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi; \
		fi; \
		if [ "$$SUDO" = none ] || ! command -v apt-get >/dev/null 2>&1; then \
			echo "bench: wrk not found and cannot apt-get install it; S1 and S8 will be reported as not run"; \
		else \
			echo "bench: wrk not found; installing the Debian package wrk with apt-get"; \
			if $$SUDO apt-get install -y -q wrk >/dev/null 2>&1 \
				|| { $$SUDO apt-get update -q >/dev/null 2>&1 && $$SUDO apt-get install -y -q wrk >/dev/null 2>&1; }; then \
				echo "bench: installed wrk at $$(command -v wrk)"; \
			else \
				echo "bench: apt-get install wrk failed; S1 and S8 will be reported as not run"; \
			fi; \
		fi; \
	fi
	$(BIN)/python -m bench.run $(BENCH_ARGS)
