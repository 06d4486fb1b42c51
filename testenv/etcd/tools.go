//go:build tools

// etcdctl, built beside etcd into the lab's etcd image (upstream's images carry both), is a
// package of another module: this import keeps that module in go.mod.
package main

import _ "go.etcd.io/etcd/etcdctl/v3"
