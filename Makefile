# make demo  — set up .venv and protect a bundled public-domain photo (faces encrypted)
# make test  — set up .venv and run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test install bench-rd bench-detect fuzz clean

$(VENV)/.installed: requirements.txt requirements-nodeps.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -r requirements-nodeps.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/privcodec demo --out demo

test: install
	$(BIN)/python -m pytest

fuzz: install   # 30 minutes of the structure-aware view-path fuzzer; failing inputs go to fuzz-crashes/
	$(BIN)/python tests/fuzz/fuzz_view.py --seconds 1800

bench-rd: install
	$(BIN)/privcodec bench rd --dataset ../shared/data/kodak --out bench

bench-detect: install
	$(BIN)/privcodec bench detect

clean:
	rm -rf demo bench .pytest_cache fuzz-crashes
