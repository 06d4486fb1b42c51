//go:build tools

// Helm, built from its Go module by the lab (crates/testlab/src/helm.rs) as
// testenv builds Kubernetes: this file keeps its dependencies in go.mod and
// go.sum. A module of its own: Helm brings newer k8s.io modules than the
// k8s.io/kubernetes release testenv pins.
package main

import _ "helm.sh/helm/v4/cmd/helm"
