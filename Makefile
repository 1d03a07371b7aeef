# amber - top-level entry points (GNU make).  CMake does the real build;
# this file installs what the build needs and runs it the same way for
# everyone, developers and CI (.ci/run calls `make check`).
#
#   make deps         install missing Debian 12 packages (apt-get)
#   make build        configure + build into build/        (RelWithDebInfo)
#   make build-asan   configure + build into build-asan/   (ASan + UBSan)
#   make check        deps, both builds, every test, then the sanitizer tests
#   make demo         deps, build, then scripts/demo.sh
#   make clean        remove build/ and build-asan/
#
# Variables: JOBS (build parallelism, default: number of CPUs), CTEST_JOBS
# (tests run at once, default JOBS), BUILD_TYPE (default RelWithDebInfo).

SHELL := /bin/bash

# Debian 12 packages the build, the tests and the demo need.  Add new ones
# here (one list, so `make deps` stays the only install step).
DEB_PACKAGES := \
	build-essential cmake pkg-config \
	libxxhash-dev nettle-dev libssl-dev libcmocka-dev libsqlite3-dev sqlite3 \
	libjansson-dev libzstd-dev libinih-dev libsystemd-dev libedit2 \
	libbtrfsutil-dev btrfs-progs xfsprogs restic \
	clang libclang-rt-14-dev util-linux e2fsprogs jq

BUILD_DIR := build
ASAN_DIR := build-asan
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CTEST_JOBS ?= $(JOBS)

# sudo only when not root (CI runs as root; sudo may not even exist there)
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

# The targets below run one after another even under `make -j`: each build
# is already parallel inside cmake, and deps must finish before a build.
.NOTPARALLEL:
.PHONY: all deps build build-asan check demo clean

all: build

deps:
	@command -v dpkg-query >/dev/null 2>&1 || { \
		echo "deps: dpkg-query not found: amber's dependencies are listed for Debian 12;" \
		     "install the equivalents of: $(DEB_PACKAGES)" >&2; exit 1; }
	@missing=""; \
	for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' "$$p" 2>/dev/null | grep -q '^install ok installed$$' \
			|| missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then \
		echo "deps: all $(words $(DEB_PACKAGES)) required Debian packages are installed"; \
	else \
		echo "deps: installing missing packages:$$missing"; \
		$(SUDO) apt-get update && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi

build:
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)
	cmake --build $(BUILD_DIR) -j$(JOBS)

build-asan:
	cmake -S . -B $(ASAN_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DAMBER_SANITIZE=ON
	cmake --build $(ASAN_DIR) -j$(JOBS)

# Both test runs always happen (a failure in the first does not hide the
# second); the target fails if either failed.  Logs are kept in each build
# directory as ctest.log.  --no-tests=error: a run that finds no test fails.
CTEST_ARGS := --output-on-failure --no-tests=error -j$(CTEST_JOBS)

check: deps build build-asan
	@rc1=0; rc2=0; \
	echo "== tests: every test, normal build ($(BUILD_DIR)/)"; \
	ctest --test-dir $(BUILD_DIR) $(CTEST_ARGS) 2>&1 | tee $(BUILD_DIR)/ctest.log; \
	rc1=$${PIPESTATUS[0]}; \
	echo "== tests: label 'sanitize', ASan+UBSan build ($(ASAN_DIR)/)"; \
	UBSAN_OPTIONS=print_stacktrace=1 \
	ctest --test-dir $(ASAN_DIR) $(CTEST_ARGS) -L sanitize 2>&1 | tee $(ASAN_DIR)/ctest.log; \
	rc2=$${PIPESTATUS[0]}; \
	counts() { sed -n 's/.*tests passed, \([0-9][0-9]*\) tests* failed out of \([0-9][0-9]*\).*/\1 \2/p' "$$1" | tail -n 1; }; \
	read -r f1 t1 <<< "$$(counts $(BUILD_DIR)/ctest.log)"; \
	read -r f2 t2 <<< "$$(counts $(ASAN_DIR)/ctest.log)"; \
	f1=$${f1:-0}; t1=$${t1:-0}; f2=$${f2:-0}; t2=$${t2:-0}; \
	verdict() { [ "$$1" -eq 0 ] && echo PASS || echo FAIL; }; \
	echo; \
	echo "== amber check summary"; \
	echo "   normal build    ($(BUILD_DIR)/):      $$(verdict $$rc1)  $$((t1 - f1)) of $$t1 tests passed"; \
	echo "   sanitizer build ($(ASAN_DIR)/): $$(verdict $$rc2)  $$((t2 - f2)) of $$t2 tests passed (label sanitize)"; \
	if [ $$rc1 -ne 0 ] || [ $$rc2 -ne 0 ]; then \
		echo "   logs: $(BUILD_DIR)/ctest.log, $(ASAN_DIR)/ctest.log"; \
		[ $$f1 -eq 0 ] && [ $$rc1 -ne 0 ] && echo "   normal build: ctest failed without a failing test (no tests found?)"; \
		[ $$f2 -eq 0 ] && [ $$rc2 -ne 0 ] && echo "   sanitizer build: ctest failed without a failing test (no tests labelled sanitize?)"; \
	fi; \
	echo "check: $$((t1 - f1 + t2 - f2)) passed, $$((f1 + f2)) failed"; \
	[ $$rc1 -eq 0 ] && [ $$rc2 -eq 0 ]

demo: deps build
	AMBER_BUILD_DIR=$(CURDIR)/$(BUILD_DIR) bash scripts/demo.sh

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR)
