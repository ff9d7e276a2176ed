# The two commands the README promises: `make run` and `make test`. Both set up first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PATH := $(abspath $(VENV))/bin:$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: setup run test bench clean-artifacts ffmpeg dvc-config

setup: $(STAMP) ffmpeg dvc-config

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

# Debian's ffmpeg: installed when missing (as root), otherwise the exact command is printed.
ffmpeg:
	@if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null; \
	  else \
	    echo "ffmpeg is missing: run 'sudo apt-get install -y ffmpeg' and then make again"; exit 1; \
	  fi; \
	fi

# DVC must never try to phone home: the machines this runs on are offline.
dvc-config: $(STAMP)
	@test -d .dvc || dvc init --quiet
	@dvc config core.analytics false
	@dvc config core.check_update false

run: setup
	dvc repro

test: setup
	$(PY) -m pytest -q

bench: setup
	@mkdir -p bench/results
	for b in bench/[!_]*.py; do echo "== $$b"; $(PY) $$b | tee bench/results/$$(basename $$b .py).json; done

clean-artifacts:
	rm -rf artifacts
