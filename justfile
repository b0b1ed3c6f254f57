# The README's commands as recipes; `just` is optional, every recipe is one plain command.

# Render the example storyboard end to end (installs ffmpeg/espeak-ng if missing).
demo:
    scripts/demo

# Run the tests (installs ffmpeg/espeak-ng if missing; set DATABASE_URL to pick a Postgres).
test:
    scripts/test

# The chaos suite: real workers, a throwaway Postgres, injected faults (CHAOS_SEED reruns one).
chaos:
    scripts/chaos

# Everything CI runs, in the same order.
ci:
    bash .ci/run

# The no-op job cycle on Postgres next to pgbench.
bench:
    cargo bench -p repo-pg --bench noop_cycle

# Format and lint as CI does.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo machete
    .ci/check-architecture

# Apply migrations to DATABASE_URL.
migrate:
    cargo run -p worker-http --release -- migrate

# Run the push worker (needs DATABASE_URL and VIDEO_WORKER_AUTH_TOKEN or OIDC settings).
serve:
    cargo run -p worker-http --release -- serve

# The worker's overhead, cancel and takeover latency on Postgres.
bench-worker:
    cargo bench -p worker-http --bench worker

# A storyboard end to end next to the shell-script reference.
bench-render:
    cargo bench -p video --bench render
