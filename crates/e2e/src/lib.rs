//! End-to-end tests of patroni-rs live in `tests/`, numbered by area
//! (`t10_kube_api`, `t20_postgres_hosts`, …). Each runs against the lab of
//! the test run (see `patroni-testlab`): a real Kubernetes control plane and
//! PostgreSQL on network-namespace hosts. None is `#[ignore]`d.
