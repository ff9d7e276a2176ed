# The two commands the README promises: `make run` and `make test`. Both set up first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PATH := $(abspath $(VENV))/bin:$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: setup run test bench clean-artifacts ffmpeg dvc-config dvc-remote

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
# A default remote, so `dvc push`/`dvc pull` work out of the box: a folder outside the
# workspace, written to .dvc/config.local (never committed). A default remote you set
# yourself (S3, GCS, SSH...: see the README) is left alone.
DVC_REMOTE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/vox-fomm/dvc-remote
dvc-config: $(STAMP)
	@test -d .dvc || dvc init --quiet
	@dvc config core.analytics false
	@dvc config core.check_update false
	@$(MAKE) --no-print-directory dvc-remote

dvc-remote:
	@if ! dvc remote default >/dev/null 2>&1; then \
	  mkdir -p "$(DVC_REMOTE)" && dvc remote add --local --default local "$(DVC_REMOTE)" && \
	  echo "DVC remote 'local' (default): $(DVC_REMOTE)"; \
	fi

run: setup
	dvc repro

test: setup
	$(PY) -m pytest -q

bench: setup
	@mkdir -p bench/results
	for b in bench/[!_]*.py; do echo "== $$b"; $(PY) $$b | tee bench/results/$$(basename $$b .py).json; done

clean-artifacts:
	rm -rf artifacts
