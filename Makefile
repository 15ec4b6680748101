# tsvirt: `make test` installs what is missing, builds, fetches the guests and runs every test; `make demo` boots the bundled guest.
SHELL := /bin/bash
.PHONY: all deps build guest kernel test unit demo bench-boot clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	npx tsc -p .

guest:
	@tests/guest/build.sh

kernel:
	@scripts/fetch-debian-kernel.sh

test: build guest kernel
	npx mocha

unit: build
	npx mocha 'dist/tests/unit/**/*.test.js'

demo: build guest
	@scripts/demo.sh

bench-boot: build guest
	node dist/bench/boot.js

clean:
	rm -rf dist build
