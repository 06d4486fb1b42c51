package main

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// runEtcd starts one embedded etcd member (the version already in the
// Kubernetes module graph) and writes READYFILE once it serves clients.
func runEtcd(args []string) int {
	fs := flag.NewFlagSet("etcd", flag.ExitOnError)
	dir := fs.String("dir", "", "data directory")
	client := fs.String("client-url", "http://127.0.0.1:2379", "client URL")
	peer := fs.String("peer-url", "http://127.0.0.1:2380", "peer URL")
	ready := fs.String("ready-file", "", "file written once etcd is ready")
	certFile := fs.String("cert-file", "", "serve clients with TLS: server certificate (PEM)")
	keyFile := fs.String("key-file", "", "serve clients with TLS: server key (PEM)")
	clientCA := fs.String("trusted-ca-file", "", "with TLS: require client certificates signed by this CA")
	_ = fs.Parse(args)
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "etcd: --dir is required")
		return 64
	}
	cu, err := url.Parse(*client)
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcd: --client-url: %v\n", err)
		return 64
	}
	pu, err := url.Parse(*peer)
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcd: --peer-url: %v\n", err)
		return 64
	}

	cfg := embed.NewConfig()
	cfg.Name = "testenv"
	cfg.Dir = filepath.Join(*dir, "data")
	cfg.WalDir = filepath.Join(*dir, "wal")
	// Test data is thrown away with the run: skip fsync, as upstream's test server does.
	cfg.UnsafeNoFsync = true
	cfg.ListenClientUrls = []url.URL{*cu}
	cfg.AdvertiseClientUrls = []url.URL{*cu}
	cfg.ListenPeerUrls = []url.URL{*pu}
	cfg.AdvertiseClientUrls = []url.URL{*cu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// TLS for clients (an https --client-url), for tests of a DCS client's TLS settings.
	cfg.ClientTLSInfo.CertFile = *certFile
	cfg.ClientTLSInfo.KeyFile = *keyFile
	cfg.ClientTLSInfo.TrustedCAFile = *clientCA
	cfg.ClientTLSInfo.ClientCertAuth = *clientCA != ""
	cfg.LogLevel = "warn"

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcd: start: %v\n", err)
		return 1
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		fmt.Fprintln(os.Stderr, "etcd: not ready after 60s")
		return 1
	}
	if *ready != "" {
		if err := os.WriteFile(*ready, []byte("ok\n"), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "etcd: write ready file: %v\n", err)
			return 1
		}
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sig:
		return 0
	case err := <-e.Err():
		fmt.Fprintf(os.Stderr, "etcd: %v\n", err)
		return 1
	}
}
