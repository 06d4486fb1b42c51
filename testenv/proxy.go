package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// serveProxy accepts on ln (in the supervisor's own namespace, loopback) and
// forwards each connection to target inside the network namespace at nsPath.
// No route into the lab exists in the machine's namespace: the proxy opens
// its outgoing socket inside the lab namespace instead.
func serveProxy(ln net.Listener, nsPath, target string) {
	for {
		in, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer in.Close()
			out, err := dialInNetns(nsPath, target)
			if err != nil {
				fmt.Fprintf(os.Stderr, "proxy: dial %s in %s: %v\n", target, nsPath, err)
				return
			}
			defer out.Close()
			var wg sync.WaitGroup
			wg.Add(2)
			pipe := func(dst, src net.Conn) {
				defer wg.Done()
				_, _ = io.Copy(dst, src)
				if tc, ok := dst.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
				}
			}
			go pipe(out, in)
			go pipe(in, out)
			wg.Wait()
		}()
	}
}

// dialInNetns creates the socket on an OS thread switched into the target
// namespace; a socket keeps the namespace it was created in.
func dialInNetns(nsPath, target string) (net.Conn, error) {
	runtime.LockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer unix.Close(orig)
	ns, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer unix.Close(ns)
	if err := unix.Setns(ns, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	conn, dialErr := net.DialTimeout("tcp", target, 5*time.Second)
	if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
		// The thread is stuck in the lab namespace: leave it locked so the
		// runtime discards it when this goroutine ends.
		return conn, dialErr
	}
	runtime.UnlockOSThread()
	return conn, dialErr
}
