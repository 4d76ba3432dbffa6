# The two commands a newcomer needs. Both start (and stop) the test bed themselves:
# a real kube-apiserver with etcd, and moto, on loopback (see scripts/testbed).

.PHONY: demo test

# An emulated organization, the operator, the examples, and what they show.
demo:
	scripts/testbed run -- sh -c 'cargo build --locked --bin orgconnect --example demo && cargo run --locked --example demo'

# Every unit and integration test.
test:
	scripts/testbed run -- cargo test --locked --no-fail-fast
