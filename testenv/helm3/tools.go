//go:build tools

// Helm 3, built from its Go module by the lab (crates/testlab/src/helm.rs) so that the chart is
// checked with both major versions; a module of its own for the same reason as ../helm.
package main

import _ "helm.sh/helm/v3/cmd/helm"
