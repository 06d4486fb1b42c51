// Command testenv runs a real, local Kubernetes control plane for patroni-rs
// tests: etcd, kube-apiserver and kube-controller-manager built from the
// upstream Go modules, plus a small fake kubelet, each in its own process.
//
// Subcommands:
//
//	up                       supervise a whole control plane (see up.go)
//	etcd                     embedded etcd server
//	kube-apiserver           upstream kube-apiserver command
//	kube-controller-manager  upstream kube-controller-manager command
//	kubelet                  fake kubelet: binds pods, marks them Running/Ready
//	provisioner              hostPath volumes for PVCs of the lab's StorageClass (real node)
//	node                     supervise a real node: containerd, kubelet, kube-proxy, kube-scheduler, CoreDNS
//	version                  print the Kubernetes release this binary embeds
//
// Nothing here is part of the product; it exists so that tests run against
// the real API server instead of a mock of it.
package main

import (
	"fmt"
	"os"
	_ "time/tzdata" // for CronJob time zone support, as upstream

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // JSON log format, as upstream
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics, as upstream
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric, as upstream
	"k8s.io/component-base/version"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	kcm "k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func usage() {
	fmt.Fprintln(os.Stderr, "usage: testenv up|etcd|kube-apiserver|kube-controller-manager|kubelet|provisioner|node|version [flags]")
	os.Exit(64)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	sub, args := os.Args[1], os.Args[2:]
	switch sub {
	case "up":
		os.Exit(runUp(args))
	case "etcd":
		os.Exit(runEtcd(args))
	case "kube-apiserver":
		cmd := apiserver.NewAPIServerCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	case "kube-controller-manager":
		cmd := kcm.NewControllerManagerCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	case "kubelet":
		os.Exit(runKubelet(args))
	case "provisioner":
		os.Exit(runProvisioner(args))
	case "node":
		os.Exit(runNode(args))
	case "version":
		fmt.Println(version.Get().GitVersion)
	default:
		usage()
	}
}
