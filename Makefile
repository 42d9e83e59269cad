# Thin wrapper around CMake for the README's two commands:
#   make example   install the build deps, build, run examples/fallback_and_race.lua
#   make test      install the build and test deps, build plain and sanitized, run every test
# Everything else is plain CMake/ctest (see README).

BUILD     ?= build
SAN_BUILD ?= build-san
JOBS      ?= $(shell nproc 2>/dev/null || echo 2)
EXAMPLE   ?= examples/fallback_and_race.lua
CMAKE_FLAGS ?=

.PHONY: all deps deps-test build build-san example test test-plain test-san bench clean

all: build

deps:
	@scripts/deps.sh build

deps-test:
	@scripts/deps.sh test

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)

build-san: deps-test
	cmake -S . -B $(SAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DWEFT_SANITIZE=ON $(CMAKE_FLAGS)
	cmake --build $(SAN_BUILD) -j $(JOBS)

example: build
	$(BUILD)/weft --log-level warn run --summary $(EXAMPLE)

test-plain: deps-test build
	ctest --test-dir $(BUILD) --output-on-failure -j 2

test-san: build-san
	ctest --test-dir $(SAN_BUILD) --output-on-failure -j 2 -LE nosan

# No canary secret value may appear in any test's output (both builds).
test: test-plain test-san
	scripts/check-canaries.sh $(BUILD)/Testing/Temporary/LastTest.log \
	    $(SAN_BUILD)/Testing/Temporary/LastTest.log

bench: deps-test build
	bench/http/run.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(SAN_BUILD)
