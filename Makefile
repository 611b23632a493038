# Two entry points for a fresh Debian 12 machine, as root:
#   make sandbox   run the module on a local sandbox node (Ctrl-C stops it)
#   make test      install what is missing and run every suite
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# The el9 node profile's agent venv: no system site packages, so no dbus-python.
VENV_EL9 := .venv-el9
PROFILE ?= debian12
# The NS8 agent venv is built from the distro python with system site packages
# (python3-dbus comes from Debian); ours is built the same way.
SYSTEM_PYTHON := /usr/bin/python3
DEB_PACKAGES := python3-venv firewalld nftables python3-dbus python3-firewall dbus iproute2 \
	redis-server mariadb-server conntrack sip-tester sipsak kamailio buildah chromium \
	golang-go golang-github-xeipuuv-gojsonschema-dev prometheus prometheus-alertmanager systemd
PYTEST_ARGS ?=
# Carbon packages ship a telemetry reporter; never let it start (ui/.npmrc also skips install scripts)
export IBM_TELEMETRY_DISABLED := true

UI_SOURCES := $(shell find ui/src ui/public -type f) ui/package.json ui/package-lock.json \
	ui/vue.config.js ui/babel.config.js ui/.npmrc

.PHONY: deps deb-deps venv validator ui test test-unit lint sandbox sandbox-stop image bench clean

deps: deb-deps venv

deb-deps:
	@./dev/install-deb-packages $(DEB_PACKAGES)

venv: $(VENV)/.installed $(VENV_EL9)/.installed

$(VENV)/.installed: requirements-agent.txt requirements-test.txt
	$(SYSTEM_PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q -r requirements-test.txt
	touch $@

$(VENV_EL9)/.installed: requirements-agent.txt
	$(SYSTEM_PYTHON) -m venv $(VENV_EL9)
	$(VENV_EL9)/bin/python -m pip install -q -r requirements-agent.txt
	touch $@

# The NS8 agent's validator: gojsonschema v1.2.0 from Debian, built offline.
VALIDATOR := dev/validator/ns8-validate
validator: $(VALIDATOR)

$(VALIDATOR): dev/validator/main.go | deb-deps
	cd dev/validator && GOPATH=/usr/share/gocode GO111MODULE=off go build -o ns8-validate .

lint: venv
	$(VENV)/bin/ruff check .

# The UI is built with the machine's Node.js/npm from the committed lockfile.
ui: ui/dist/index.html

ui/node_modules/.installed: ui/package.json ui/package-lock.json ui/.npmrc
	@command -v npm >/dev/null || ./dev/install-deb-packages nodejs npm
	cd ui && npm ci --no-audit --no-fund
	touch $@

ui/dist/index.html: ui/node_modules/.installed $(UI_SOURCES)
	cd ui && npm run build
	touch $@

# Everything on the debian12 node profile, then what touches firewalld, the status and
# the actions end to end again on the el9 profile (no dbus-python in the agent venv).
test: deps validator lint ui
	$(PY) -m pytest $(PYTEST_ARGS)
	NODE_PROFILE=el9 $(PY) -m pytest tests/integration tests/e2e $(PYTEST_ARGS)

test-unit: venv validator
	$(PY) -m pytest -m unit $(PYTEST_ARGS)

sandbox: deps validator ui
	$(PY) dev/sandbox up --profile $(PROFILE)

sandbox-stop: venv
	$(PY) dev/sandbox stop

image: ui
	./build-images.sh

# Side by side with the manual firewall-cmd procedure, get-status's cost, and the HEP
# collector of diagnose-sip at increasing rates.
bench: deps validator
	$(PY) bench/port_forwards.py
	$(PY) bench/get_status.py
	$(PY) bench/diagnose.py

clean:
	rm -rf $(VENV) $(VENV_EL9) $(VALIDATOR) .pytest_cache .ruff_cache tests/artifacts
