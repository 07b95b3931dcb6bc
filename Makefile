# Leaktrace: `make serve` runs the service, `make test` runs every test.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: serve test install fuzz

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall when the project's dependencies change.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

serve: install
	$(BIN)/leaktrace admin demo
	$(BIN)/leaktrace serve --host 127.0.0.1 --port 8080

# pytest exits 5 when it collected no tests: that is a failure here, and says so.
test: install
	@$(BIN)/pytest -q; status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: no tests were collected" >&2; fi; \
	exit $$status

# A long fuzz run of every API operation (tests/api/fuzzing.py): 400 requests per operation and
# generation mode (22,400 for the 28 operations of today), on a fresh seed unless LEAKTRACE_FUZZ_SEED is given.
FUZZ_EXAMPLES ?= 400
fuzz: install
	LEAKTRACE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) LEAKTRACE_FUZZ_SEED=$${LEAKTRACE_FUZZ_SEED:-$$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')} \
	$(BIN)/pytest -q -s -p no:randomly tests/api/test_fuzz.py
