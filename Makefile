# Two entry points for a fresh Debian 12 machine, as root:
#   make sandbox   run the module on a local sandbox node (Ctrl-C stops it)
#   make test      install what is missing and run every suite
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# The NS8 agent venv is built from the distro python with system site packages
# (python3-dbus comes from Debian); ours is built the same way.
SYSTEM_PYTHON := /usr/bin/python3
DEB_PACKAGES := python3-venv firewalld nftables python3-dbus python3-firewall dbus iproute2 \
	redis-server mariadb-server conntrack sip-tester sipsak buildah
PYTEST_ARGS ?=

.PHONY: deps deb-deps venv test test-unit test-integration lint sandbox sandbox-stop image clean

deps: deb-deps venv

deb-deps:
	@./dev/install-deb-packages $(DEB_PACKAGES)

venv: $(VENV)/.installed

$(VENV)/.installed: requirements-agent.txt requirements-test.txt
	$(SYSTEM_PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q -r requirements-test.txt
	touch $@

lint: venv
	$(VENV)/bin/ruff check .

test: deps lint
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: venv
	$(PY) -m pytest -m unit $(PYTEST_ARGS)

sandbox: deps
	$(PY) dev/sandbox up

sandbox-stop: venv
	$(PY) dev/sandbox stop

image:
	./build-images.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache tests/artifacts
