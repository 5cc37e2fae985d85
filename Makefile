# The appliance's build. `make run` and `make test` are the two set-up commands of README.md.
SHELL := /bin/bash
NODE_MODULES := node_modules/.package-lock.json

.PHONY: all build run test typecheck deps system-deps firmware bench clean

all: build

# npm packages (better-sqlite3 builds its addon from source here: about a minute the first time).
$(NODE_MODULES): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

deps: $(NODE_MODULES)

# Debian packages the tests use (qemu, iPXE ROMs, libiscsi tools, tgt, dnsmasq, tftp clients...).
system-deps:
	bash .ci/install-deps

build: $(NODE_MODULES)
	node appliance/build.mjs

# Runs the appliance on its embedded defaults: UI/API on http://localhost:8080, state in ./var.
run: build
	node dist/appliance.cjs serve

typecheck: $(NODE_MODULES)
	npx tsc --noEmit -p .

# Every test: unit, interop with real clients, browser and end-to-end boots (needs root for
# network namespaces; installs the Debian packages it needs).
test: system-deps build typecheck
	npx vitest run --reporter=default --reporter=json --outputFile.json=test-artifacts/vitest.json
	@node -e 'const r=require("./test-artifacts/vitest.json"); console.log(`vitest: $${r.numPassedTests} passed, $${r.numFailedTests} failed, $${r.numPendingTests + r.numTodoTests} skipped`)'

firmware: build
	bash os-overlay/build/firmware.sh

bench: build
	@for b in bench/*.ts; do echo "== $$b"; npx tsx $$b || exit 1; done

clean:
	rm -rf dist
