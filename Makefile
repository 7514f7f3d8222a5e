# Every target installs what it needs (scripts/bootstrap.sh); see README.md.
SHELL := /bin/bash
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.build/collections
export RBD_TESTBED_DIR ?= /tmp/rbd-testbed
TESTBED := tests/testbed/testbed.sh

.PHONY: deps test unit integration demo bench soak lint matrix ceph-matrix ee docs testbed-up testbed-down clean

deps:
	@bash scripts/bootstrap.sh

unit: deps
	python -m pytest -q tests/unit

testbed-up: deps
	bash $(TESTBED) up

testbed-down:
	bash $(TESTBED) down

integration: testbed-up
	python -m pytest -q -n 3 tests/integration --deselect tests/integration/test_zz_outage.py
	python -m pytest -q tests/integration/test_zz_outage.py

# Integration tests run 3 at a time (each on its own pools; they wait on monitors and ssh, not CPU);
# the outage tests stop the backup OSD, so they run alone afterwards.
test: deps
	python -m pytest -q tests/unit
	bash $(TESTBED) up
	python -m pytest -q -n 3 tests/integration --deselect tests/integration/test_zz_outage.py
	python -m pytest -q tests/integration/test_zz_outage.py
	molecule test -s default

demo: testbed-up
	bash tests/demo.sh

bench: testbed-up
	python bench/bench.py

# N simulated nights with seeded faults, checked after each night (tests/soak/README.md).
# SOAK_NIGHTS=5 is the CI variant; SOAK_SEED picks the sequence. Result: .build/soak/last.json
SOAK_NIGHTS ?= 30
soak: testbed-up
	SOAK_NIGHTS=$(SOAK_NIGHTS) python tests/soak/soak.py

lint: deps
	bash scripts/lint.sh

# ansible-core 2.16-2.19 side by side: sanity and a short end-to-end run of the role per version
# (tests/matrix/README.md).
matrix: testbed-up
	bash tests/matrix/run.sh

# Ceph releases (issue #19): per source->backup release pair (squid, reef, pacific) a bed of its own and the
# end-to-end scenario on it, and a 5-night soak on squid->reef (tests/ceph_matrix/run.sh; CEPH_PAIRS=...).
ceph-matrix: deps
	bash tests/ceph_matrix/run.sh

# The execution environment definition: ansible-builder create and introspect (no image build).
ee: deps
	bash scripts/ee.sh

# The HTML documentation (antsibull-docs) in .build/docs/build/html.
docs: deps
	bash scripts/docs.sh

clean: testbed-down
	rm -rf .build $(VENV)

# Molecule scenario extensions/molecule/default (collection layout, run from the collection root):
# converges the role rbd_replicate on the test bed's hosts and verifies with pytest-testinfra.
.PHONY: molecule
molecule: testbed-up
	molecule test -s default
