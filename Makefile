# p2plab: the front door. `make scenario NAME=nat-relay` sets up and runs a scenario;
# `make test` runs the linters and every test (CI runs exactly this); `make lint` alone.

PYTHON   ?= python3
VENV     ?= .venv
BACKEND  ?= docker
NAME     ?= nat-relay
RESULTS  ?= results
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.p2plab-installed

# Debian packages for a lab: ip, nft, iptables, conntrack and nsenter build it; tcpdump
# captures; mmdebstrap builds the image's base; gcc and libgmp-dev build fastecdsa, which
# libp2p 0.8.1 pins and which has no wheel; libnetfilter-queue-dev builds NetfilterQueue
# (the userspace link stage).
SYSTEM_PACKAGES := iproute2 nftables iptables conntrack tcpdump util-linux mmdebstrap gcc libgmp-dev \
                   libnetfilter-queue-dev procps
# Only for the tests, benchmarks and the local cluster (installed by those targets):
# chromium renders reports in the tests; stress-ng keeps a core busy in
# benchmarks/suite_under_load.py; docker-registry serves the local cluster's image.
TEST_PACKAGES := chromium stress-ng docker-registry
PROGRESS := $(PYTHON) p2plab/progress.py

# The Rust node's cargo projects (folder under node-rust/ : the libp2p version it pins):
# its shared sources are linted, unit-tested and built at each. Every Rust build of the
# project (both versions, the example, the kit) shares one cargo target folder, as the
# declarations say (build.cargo.target: rust): the crates they lock alike compile once.
RUST_VERSIONS := .:0.57.1 libp2p-0.53:0.53.2
CARGO_TARGET := $${P2PLAB_CARGO_TARGET:-$$HOME/.cache/p2plab/cargo-target}/rust

.PHONY: setup system system-test apt-packages scenario test test-stages quick chat clean validate images compose-v2 suite rust-node \
        cluster cluster-down lint lint-tools

setup: $(STAMP) rust-node

# The built-in Rust node at each libp2p version it is declared for (node-rust/ and
# node-rust/libp2p-0.53/), built by cargo into a cache outside the checkout
# (P2PLAB_CARGO_TARGET, default ~/.cache/p2plab/cargo-target/rust, shared): ~6 min for
# both cold, then a no-op. A lab builds only the implementations its nodes name.
rust-node: $(STAMP)
	@$(BIN)/python -m p2plab.compose.impls.builds rust@0.57.1 rust@0.53.2

# Installs the Debian packages of $(PACKAGES) that are missing, with a progress line.
system:
	@$(MAKE) --no-print-directory apt-packages PACKAGES="$(SYSTEM_PACKAGES)"

system-test:
	@$(MAKE) --no-print-directory apt-packages PACKAGES="$(SYSTEM_PACKAGES) $(TEST_PACKAGES)"

apt-packages:
	@missing=""; for p in $(PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  $(PROGRESS) "apt-get update" build/logs/apt-update.log -- apt-get update -qq && \
	  $(PROGRESS) "installing$$missing" build/logs/apt-install.log -- \
	    env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(STAMP): pyproject.toml | system
	@$(PROGRESS) "making the venv $(VENV)" build/logs/venv.log -- $(PYTHON) -m venv $(VENV)
	@$(PROGRESS) "upgrading pip" build/logs/pip.log -- $(BIN)/pip install -q --upgrade pip
	@$(PROGRESS) "installing p2plab and its pinned Python packages" build/logs/pip-install.log -- \
	  $(BIN)/pip install -q -e .
	@touch $@

# What only the tests need (pytest, the notebook's kernel): not for make scenario.
TEST_STAMP := $(VENV)/.p2plab-test-installed
$(TEST_STAMP): $(STAMP)
	@$(PROGRESS) "installing the test tools" build/logs/pip-test.log -- $(BIN)/pip install -q -e '.[test]'
	@touch $@

# The linters: ruff and mypy over the Python (mypy reads the installed layout, so the
# checkout's folders are linked into build/typecheck/p2plab), clippy and rustfmt over the
# Rust node. `make test` runs this first and reports it with the other stages.
LINT_STAMP := $(VENV)/.p2plab-lint-installed
lint-tools: $(LINT_STAMP)
$(LINT_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[lint]'
	@cargo clippy --version >/dev/null 2>&1 && cargo fmt --version >/dev/null 2>&1 || \
	  { echo "make lint needs cargo's clippy and rustfmt (rustup component add clippy rustfmt)"; exit 1; }
	touch $@

lint: $(LINT_STAMP)
	@status=0; \
	echo "== ruff"; $(BIN)/ruff check . || status=1; \
	echo "== mypy"; rm -rf build/typecheck; mkdir -p build/typecheck/p2plab; \
	for f in p2plab/*.py; do ln -s ../../../$$f build/typecheck/p2plab/; done; \
	for d in node topology compose analysis orchestrate; do ln -s ../../../$$d build/typecheck/p2plab/$$d; done; \
	( cd build/typecheck && $(abspath $(BIN))/mypy --config-file ../../pyproject.toml -p p2plab ) || status=1; \
	echo "== cargo fmt --check"; ( cd node-rust && cargo fmt --check ) || status=1; \
	( cd node-rust/contract && cargo fmt --check ) || status=1; \
	( cd examples/chat-node && cargo fmt --check ) || status=1; \
	echo "== cargo clippy -D warnings (examples/chat-node)"; ( cd examples/chat-node && \
	  CARGO_TARGET_DIR=$(CARGO_TARGET) cargo clippy --locked --quiet -- -D warnings ) \
	  || status=1; \
	echo "== cargo clippy -D warnings (the contract kit)"; ( cd node-rust/contract && \
	  CARGO_TARGET_DIR=$(CARGO_TARGET) cargo clippy --locked --quiet --all-targets -- -D warnings ) \
	  || status=1; \
	for v in $(RUST_VERSIONS); do echo "== cargo clippy -D warnings (rust-libp2p $${v#*:})"; \
	  ( cd node-rust/$${v%%:*} && CARGO_TARGET_DIR=$(CARGO_TARGET) \
	    cargo clippy --locked --quiet --all-targets -- -D warnings ) || status=1; done; \
	exit $$status

# Builds only what the scenario needs: the Rust node (and the image with it) only when
# one of its nodes runs it. For the container backends the image's Debian base is built
# beside the venv's install (compose/base_image.py needs only the standard library).
scenario: system
	@mkdir -p build/logs; base_pid=""; \
	if [ "$(BACKEND)" = docker ] && [ ! -f $(STAMP) ]; then \
	  $(PROGRESS) "building the image's Debian base" build/logs/base-image.log -- \
	    $(PYTHON) compose/base_image.py & base_pid=$$!; \
	fi; \
	$(MAKE) --no-print-directory $(STAMP) || { [ -z "$$base_pid" ] || kill $$base_pid; exit 1; }; \
	[ -z "$$base_pid" ] || wait $$base_pid || true; \
	$(BIN)/p2plab run $(NAME) --backend $(BACKEND) --results $(RESULTS)

validate: $(STAMP)
	$(BIN)/p2plab validate scenarios/*.yaml

# First the Rust builds' cold compile (cargo, about 7 minutes on two cores for both
# versions and the example, in one shared target folder) beside the Debian packages, the
# venv, the compose v2 binary and the node image, which mostly wait on the network and
# the disk. Then three stages of two lanes each, so the two cores stay busy: the linters
# and the Rust unit tests beside the image's layer of Rust programs and the tests that
# need no lab (unit, node processes, conformance, the simulator: three pytest workers;
# build/unit-tests.log); the shipped suite on Docker (JUnit XML in build/suite; its
# timing verdicts get a second attempt only when they failed on a saturated host) beside
# the tests that build network namespaces (two workers); the Docker tests beside the
# swarm tests (a cluster of engines of their own; build/swarm-tests.log). Every stage
# runs whatever the others said; the exit status is a failure if any failed.
test:
	@mkdir -p build/logs; \
	$(PROGRESS) "building the Rust node at each version and the example (cargo)" build/logs/cargo-build.log -- \
	  sh -c 'for v in $(RUST_VERSIONS); do CARGO_TARGET_DIR=$(CARGO_TARGET) \
	    cargo build --release --locked --quiet --manifest-path node-rust/$${v%%:*}/Cargo.toml \
	    || exit 1; done; CARGO_TARGET_DIR=$(CARGO_TARGET) cargo build --release \
	    --locked --quiet --manifest-path examples/chat-node/Cargo.toml' & cargo_pid=$$!; \
	$(MAKE) --no-print-directory system-test $(TEST_STAMP) compose-v2 lint-tools || \
	  { kill $$cargo_pid 2>/dev/null; exit 1; }; \
	$(PROGRESS) "building the node image" build/logs/node-image.log -- \
	  $(BIN)/python -m p2plab.compose.images || true; \
	wait $$cargo_pid || exit 1; \
	$(MAKE) --no-print-directory test-stages

# (The node image built above is only a head start: a failure there is `make images`'s
# to report, in the first stage.)
test-stages: setup $(TEST_STAMP)
	@mkdir -p build; rm -f build/checks.status build/lane.status build/rust-tests.log; \
	( lint=0; $(MAKE) --no-print-directory lint > build/lint.log 2>&1 || lint=$$?; \
	  rust=0; for v in $(RUST_VERSIONS); do echo "== rust-libp2p $${v#*:}" >> build/rust-tests.log; \
	  ( cd node-rust/$${v%%:*} && \
	    CARGO_TARGET_DIR=$(CARGO_TARGET) cargo test --release --locked --quiet ) \
	    >> build/rust-tests.log 2>&1 || rust=1; done; \
	  echo "== the contract kit" >> build/rust-tests.log; \
	  ( cd node-rust/contract && CARGO_TARGET_DIR=$(CARGO_TARGET) \
	    cargo test --release --locked --quiet ) >> build/rust-tests.log 2>&1 || rust=1; \
	  echo "$$lint $$rust" > build/checks.status ) & checks_pid=$$!; \
	images=0; $(MAKE) --no-print-directory images || images=$$?; \
	unit=0; $(BIN)/pytest -q -n 3 --durations=10 -m "not docker and not swarm and not netns" \
	  > build/unit-tests.log 2>&1 || unit=$$?; \
	wait $$checks_pid; lint=1; rust=1; read lint rust < build/checks.status; \
	echo "== the linters (build/lint.log):"; tail -n 30 build/lint.log; \
	echo "== the Rust unit tests (build/rust-tests.log):"; grep -E "^(==|test result|error)" build/rust-tests.log; \
	echo "== the tests without a lab (build/unit-tests.log):"; tail -n 40 build/unit-tests.log; \
	( suite=0; $(BIN)/p2plab suite --results build/suite > build/suite.log 2>&1 || suite=$$?; \
	  echo "$$suite" > build/lane.status ) & lane_pid=$$!; \
	netns_tests=0; $(BIN)/pytest -q -n 2 --durations=10 -m "netns and not docker and not swarm" \
	  || netns_tests=$$?; \
	wait $$lane_pid; suite=1; read suite < build/lane.status; \
	echo "== the shipped suite (build/suite.log):"; tail -n 40 build/suite.log; \
	$(BIN)/pytest -q --durations=10 -m swarm > build/swarm-tests.log 2>&1 & swarm_pid=$$!; \
	docker_tests=0; $(BIN)/pytest -q --durations=10 -m docker || docker_tests=$$?; \
	swarm_tests=0; wait $$swarm_pid || swarm_tests=$$?; \
	echo "== the swarm tests (build/swarm-tests.log):"; tail -n 60 build/swarm-tests.log; \
	echo "== results: image build exit $$images, lint exit $$lint, Rust unit tests exit $$rust, tests without a lab exit $$unit, suite exit $$suite, netns tests exit $$netns_tests, Docker tests exit $$docker_tests, swarm tests exit $$swarm_tests"; \
	[ $$images -eq 0 ] && [ $$lint -eq 0 ] && [ $$rust -eq 0 ] && [ $$suite -eq 0 ] && [ $$unit -eq 0 ] && [ $$netns_tests -eq 0 ] && [ $$docker_tests -eq 0 ] && [ $$swarm_tests -eq 0 ]

suite: $(STAMP)
	$(BIN)/p2plab suite --backend $(BACKEND) --results $(RESULTS)/suite

quick: $(TEST_STAMP)
	$(BIN)/pytest -q -m quick

chat: $(STAMP)
	$(BIN)/p2plab-node --mdns $(ARGS)

clean: $(STAMP)
	$(BIN)/p2plab clean

# A Docker Swarm of ENGINES local engines (each dockerd in its own network namespace)
# and a registry, for --backend swarm: make cluster; make scenario BACKEND=swarm.
ENGINES ?= 2
cluster: system-test setup
	$(BIN)/python -m p2plab.compose.backends.swarm.cluster up --engines $(ENGINES)

cluster-down: setup
	$(BIN)/python -m p2plab.compose.backends.swarm.cluster down

# The node/router image, built without a registry (base from the machine's Debian archive).
images: setup
	$(BIN)/python -m p2plab.compose.images rust@0.57.1 rust@0.53.2

# A compose v2 binary for the export test: Debian trixie's docker-compose package,
# unpacked into build/tools (nothing is installed on the host), fetched from the Debian
# archive this machine's own apt sources name (compose/apt_sources.py).
COMPOSE_V2 := build/tools/docker-compose
compose-v2: $(COMPOSE_V2)
$(COMPOSE_V2): | $(STAMP)
	@mkdir -p build/apt/lists/partial build/apt/cache/archives/partial build/tools
	@archive=$$($(BIN)/python -m p2plab.compose.apt_sources) || exit 1; \
	  printf 'Types: deb\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$$archive" > build/apt/trixie.sources
	@APT="-o Dir::Etc::sourcelist=$(CURDIR)/build/apt/trixie.sources -o Dir::Etc::sourceparts=- -o Dir::State::Lists=$(CURDIR)/build/apt/lists -o Dir::Cache=$(CURDIR)/build/apt/cache"; \
	  apt-get -qq $$APT update && cd build/apt && apt-get -qq $$APT download docker-compose
	dpkg-deb -x build/apt/docker-compose_*.deb build/apt/x
	cp build/apt/x/usr/libexec/docker/cli-plugins/docker-compose $@
	$@ version
