# Convenience targets around cargo. The two commands a newcomer needs are in README.md:
#   make demo                 build and start the clustered demo server
#   cargo test --workspace    run every test (Rust, C, Node)

CC ?= cc
CFLAGS ?= -O2 -g
PROFILE_DIR := target/release
C_OUT := target/c
EXAMPLES := hello_http echo_ipc respawn
PORT ?= 8080
HOST ?= 127.0.0.1

.PHONY: all lib examples demo test clean

all: examples

lib:
	cargo build --release -p corral

$(C_OUT)/%: examples/c/%.c include/corral.h lib
	@mkdir -p $(C_OUT)
	$(CC) -std=c11 -D_GNU_SOURCE -Wall -Wextra -pedantic $(CFLAGS) -Iinclude $< \
		-L$(PROFILE_DIR) -Wl,-rpath,$(abspath $(PROFILE_DIR)) -lcorral -o $@

examples: $(addprefix $(C_OUT)/,$(EXAMPLES))

# hello_http on $(HOST):$(PORT), one worker per core; Ctrl-C shuts down gracefully.
demo: $(C_OUT)/hello_http
	@echo "corral demo: curl http://$(HOST):$(PORT)/  (Ctrl-C to stop)"
	$(C_OUT)/hello_http --host $(HOST) --port $(PORT)

test:
	cargo test --workspace

clean:
	cargo clean
