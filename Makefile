# aerie: the two quick-start commands. See README.md.
.PHONY: run test bench build fuzz image

# Bootstrap, build, and run router + detector on the embedded defaults (Ctrl-C stops both).
run:
	scripts/run

# Bootstrap, then fmt check, clippy -D warnings, and every test (root-only eBPF tests included).
test:
	scripts/test

build:
	scripts/bootstrap
	cargo build --release --bins

bench:
	scripts/bench

# Every cargo-fuzz target for FUZZ_SECS seconds each (installs cargo-fuzz on first use).
FUZZ_SECS ?= 60
fuzz:
	scripts/fuzz $(FUZZ_SECS)

# Container images of aerie-detector and aerie-router, daemonless (buildah): static musl binaries
# on scratch, written to target/images/*.oci.tar; prints their sizes. See deploy/README.md.
image:
	scripts/bootstrap
	scripts/image
