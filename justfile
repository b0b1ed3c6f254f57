# The README's commands as recipes; `just` is optional, every recipe is one plain command.

# Run the tests (set DATABASE_URL to use an existing Postgres server).
test:
    cargo test --workspace

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
    .ci/check-architecture
