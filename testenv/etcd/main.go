// Command etcd is upstream etcd's server, `etcdmain.Main` of go.etcd.io/etcd/server/v3 (the
// release testenv's control plane embeds), built for the lab's etcd image
// (crates/testlab/src/store_images.rs): the lab's real node has no registry, so the Helm chart's
// `etcd.deployChart` runs this binary where users run quay.io/coreos/etcd, with the same flags.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
