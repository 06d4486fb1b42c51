// Command pause is the sandbox container of the lab's real node (the image
// registry.k8s.io/pause:3.10 is built from it, as the lab has no registry):
// it holds the pod's namespaces, reaps orphaned children and exits on
// SIGINT or SIGTERM, as upstream's pause.c.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sig {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
