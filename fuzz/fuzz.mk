# `make fuzz`: included by the Makefile, which defines BIN (the venv's bin dir)
# and STAMP (the install target). See docs/fuzzing.md.
#
#   make fuzz                                   # seed 1, 10,000 requests + frames
#   make fuzz FUZZ_SEED=7 FUZZ_COUNT=50000      # another seed, a longer run
#   make fuzz FUZZ_ARGS=--keep                  # keep the temp dir (config, logs, state)
FUZZ_SEED  ?= 1
FUZZ_COUNT ?= 10000
FUZZ_ARGS  ?=

.PHONY: fuzz
fuzz: $(STAMP)
	$(BIN)/python -m fuzz.run --seed $(FUZZ_SEED) --count $(FUZZ_COUNT) $(FUZZ_ARGS)
