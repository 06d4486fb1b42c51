//go:build tools

// The real node's components, built from this module by `go build
// k8s.io/kubernetes/cmd/...` (crates/testlab/src/node.rs): this file keeps
// their dependencies in go.mod and go.sum.
package main

import (
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
