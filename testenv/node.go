package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
)

// nodeOptions is what `testenv node` is told.
type nodeOptions struct {
	dir, netns, ip, name, kubeconfig, binDir, coredns, pauseTar string
	podCIDR, podGateway, clusterDNS                             string
	watch                                                       int
}

// NodeEnv is what `node` writes to DIR/node.json once the node is Ready.
type NodeEnv struct {
	Name       string         `json:"name"`
	IP         string         `json:"ip"`
	Containerd string         `json:"containerd"`
	Supervisor int            `json:"supervisor"`
	Pids       map[string]int `json:"pids"`
}

// runNode supervises a real Kubernetes node inside network namespace
// --netns: containerd (Debian's, with runc and the CNI bridge plugins), the
// upstream kubelet, kube-proxy (iptables) and kube-scheduler built from this
// module, CoreDNS serving cluster.local as Service 10.96.0.10, and the lab's
// volume provisioner. Everything it makes lives under --dir, in the
// cgroup /<netns> and in namespaces it records; on SIGTERM, or once
// --watch-pid is gone, it removes all of it (containers, pod namespaces,
// mounts, cgroups).
func runNode(args []string) int {
	fs := flag.NewFlagSet("node", flag.ExitOnError)
	o := nodeOptions{}
	fs.StringVar(&o.dir, "dir", "", "state directory")
	fs.StringVar(&o.netns, "netns", "", "network namespace of the node")
	fs.StringVar(&o.ip, "ip", "", "the node's address in that namespace")
	fs.StringVar(&o.name, "name", "lab-node", "Node name")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "admin kubeconfig reaching the API server from the node namespace")
	fs.StringVar(&o.binDir, "bin-dir", "", "directory with kubelet, kube-proxy and kube-scheduler")
	fs.StringVar(&o.coredns, "coredns", "", "the coredns binary")
	fs.StringVar(&o.pauseTar, "pause-image", "", "OCI archive of registry.k8s.io/pause:3.10")
	fs.StringVar(&o.podCIDR, "pod-cidr", "10.244.0.0/24", "pod addresses")
	fs.StringVar(&o.podGateway, "pod-gateway", "10.244.0.1", "the bridge's address in the pod network")
	fs.StringVar(&o.clusterDNS, "cluster-dns", "10.96.0.10", "ClusterIP of the DNS Service")
	fs.IntVar(&o.watch, "watch-pid", 0, "stop everything once this process is gone")
	_ = fs.Parse(args)
	if o.dir == "" || o.netns == "" || o.ip == "" || o.kubeconfig == "" || o.binDir == "" || o.coredns == "" || o.pauseTar == "" {
		fmt.Fprintln(os.Stderr, "node: --dir, --netns, --ip, --kubeconfig, --bin-dir, --coredns and --pause-image are required")
		return 64
	}
	n := &node{o: o, env: NodeEnv{Name: o.name, IP: o.ip, Supervisor: os.Getpid(), Pids: map[string]int{}}}
	err := n.run()
	n.teardown()
	if err != nil {
		fmt.Fprintf(os.Stderr, "node: %v\n", err)
		return 1
	}
	return 0
}

type node struct {
	o        nodeOptions
	env      NodeEnv
	children []child
}

func (n *node) path(parts ...string) string {
	return filepath.Join(append([]string{n.o.dir}, parts...)...)
}

func (n *node) run() error {
	for _, d := range []string{"logs", "containerd", "cni/net.d", "cni/ipam", "kubelet", "pod-logs", "pv", "coredns", "manifests"} {
		if err := os.MkdirAll(n.path(d), 0o755); err != nil {
			return err
		}
	}
	// The node's cgroups live under /<netns> in every hierarchy, so two labs'
	// nodes never share `kubepods`.
	if err := n.cgroups(os.MkdirAll); err != nil {
		return fmt.Errorf("cgroups: %w", err)
	}
	n.env.Containerd = n.path("containerd", "containerd.sock")
	if err := n.writeConfigs(); err != nil {
		return err
	}
	if err := n.start("containerd", "containerd", "--config", n.path("containerd", "config.toml")); err != nil {
		return err
	}
	if err := waitFor(30*time.Second, n.children, func() bool {
		return exec.Command("ctr", "-a", n.env.Containerd, "version").Run() == nil
	}); err != nil {
		return fmt.Errorf("containerd: %w", err)
	}
	if out, err := exec.Command("ctr", "-a", n.env.Containerd, "-n", "k8s.io", "images", "import",
		"--base-name", "registry.k8s.io/pause", n.o.pauseTar).CombinedOutput(); err != nil {
		return fmt.Errorf("import the pause image: %v: %s", err, out)
	}
	if err := n.start("kubelet", filepath.Join(n.o.binDir, "kubelet"),
		"--config="+n.path("kubelet.yaml"), "--kubeconfig="+n.o.kubeconfig,
		"--root-dir="+n.path("kubelet"), "--cert-dir="+n.path("kubelet", "pki"),
		"--hostname-override="+n.o.name, "--node-ip="+n.o.ip,
	); err != nil {
		return err
	}
	if err := n.start("kube-proxy", filepath.Join(n.o.binDir, "kube-proxy"),
		"--kubeconfig="+n.o.kubeconfig, "--hostname-override="+n.o.name, "--proxy-mode=iptables",
		"--cluster-cidr="+n.o.podCIDR, "--conntrack-max-per-core=0",
		"--metrics-bind-address=127.0.0.1:10249", "--healthz-bind-address=127.0.0.1:10256",
	); err != nil {
		return err
	}
	if err := n.start("kube-scheduler", filepath.Join(n.o.binDir, "kube-scheduler"),
		"--kubeconfig="+n.o.kubeconfig, "--authentication-kubeconfig="+n.o.kubeconfig,
		"--authorization-kubeconfig="+n.o.kubeconfig, "--leader-elect=false",
		"--bind-address=127.0.0.1", "--secure-port=10259",
	); err != nil {
		return err
	}
	if err := n.start("coredns", n.o.coredns, "-conf", n.path("coredns", "Corefile")); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if err := n.start("provisioner", self, "provisioner", "--kubeconfig="+n.o.kubeconfig, "--root="+n.path("pv")); err != nil {
		return err
	}
	client, err := adminClient(n.o.kubeconfig)
	if err != nil {
		return err
	}
	ctx := context.Background()
	if err := n.dnsService(ctx, client); err != nil {
		return fmt.Errorf("DNS service: %w", err)
	}
	if err := waitFor(120*time.Second, n.children, func() bool {
		node, err := client.CoreV1().Nodes().Get(ctx, n.o.name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				return true
			}
		}
		return false
	}); err != nil {
		return fmt.Errorf("node Ready: %w", err)
	}
	// The API server taints every new Node not-ready; the node lifecycle
	// controller, which the lab does not run (it would mark the fake
	// kubelet's pods unready), lifts it once the Node is Ready.
	if err := n.untaint(ctx, client); err != nil {
		return fmt.Errorf("lift the not-ready taint: %w", err)
	}
	if err := writeJSONAtomic(n.path("node.json"), n.env); err != nil {
		return err
	}
	fmt.Printf("testenv: node %s Ready at %s\n", n.o.name, n.o.ip)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case s := <-sig:
			fmt.Printf("testenv: %v, removing the node\n", s)
			return nil
		case <-tick.C:
			if n.o.watch > 0 && syscall.Kill(n.o.watch, 0) == syscall.ESRCH {
				fmt.Printf("testenv: watched process %d is gone, removing the node\n", n.o.watch)
				return nil
			}
			for _, c := range n.children {
				if c.cmd.ProcessState != nil {
					return fmt.Errorf("%s exited: %v (see %s)", c.name, c.cmd.ProcessState, logPath(n.o.dir, c.name))
				}
			}
		}
	}
}

// start runs PROGRAM ARGS… in the node's network namespace with nsenter (not
// `ip netns exec`, which remounts /sys and hides the cgroups from the kubelet).
func (n *node) start(name, program string, args ...string) error {
	log, err := os.OpenFile(logPath(n.o.dir, name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command("nsenter", append([]string{"--net=/run/netns/" + n.o.netns, "--", program}, args...)...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		_ = cmd.Wait()
		log.Close()
	}()
	n.children = append(n.children, child{name: name, cmd: cmd})
	n.env.Pids[name] = cmd.Process.Pid
	return nil
}

func (n *node) writeConfigs() error {
	cni := n.path("cni")
	files := map[string]string{
		n.path("containerd", "config.toml"): fmt.Sprintf(`version = 2
root = %q
state = %q
[grpc]
  address = %q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  disable_apparmor = true
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "/usr/sbin/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %q
`, n.path("containerd", "root"), n.path("containerd", "state"), n.env.Containerd, filepath.Join(cni, "net.d")),
		filepath.Join(cni, "net.d", "10-lab.conflist"): fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": %q,
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q, "gateway": %q}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
`, n.o.netns, filepath.Join(cni, "ipam"), n.o.podCIDR, n.o.podGateway),
		n.path("kubelet.yaml"): fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
address: %s
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 0
cgroupDriver: cgroupfs
cgroupRoot: /%s
containerRuntimeEndpoint: unix://%s
staticPodPath: %s
podLogsDir: %s
fileCheckFrequency: 2s
syncFrequency: 5s
failSwapOn: false
failCgroupV1: false
cgroupsPerQOS: true
enforceNodeAllocatable: ["pods"]
resolvConf: %s
clusterDNS: [%s]
clusterDomain: cluster.local
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "50Mi", nodefs.available: "256Mi", imagefs.available: "256Mi", nodefs.inodesFree: "1%%"}
serializeImagePulls: false
`, n.o.ip, n.o.netns, n.env.Containerd, n.path("manifests"), n.path("pod-logs"), n.path("resolv.conf"), n.o.clusterDNS),
		n.path("resolv.conf"): "",
		n.path("coredns", "Corefile"): fmt.Sprintf(`.:53 {
    bind %s
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig %s testenv
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 5
}
`, n.o.ip, n.o.kubeconfig),
	}
	for path, text := range files {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// untaint removes node.kubernetes.io/not-ready from the Ready node.
func (n *node) untaint(ctx context.Context, client kubernetes.Interface) error {
	nodes := client.CoreV1().Nodes()
	node, err := nodes.Get(ctx, n.o.name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	var kept []corev1.Taint
	for _, t := range node.Spec.Taints {
		if t.Key != "node.kubernetes.io/not-ready" {
			kept = append(kept, t)
		}
	}
	if len(kept) == len(node.Spec.Taints) {
		return nil
	}
	node.Spec.Taints = kept
	_, err = nodes.Update(ctx, node, metav1.UpdateOptions{})
	return err
}

// dnsService makes kube-system/kube-dns at --cluster-dns point at CoreDNS,
// which runs on the node's own address (a selector-less Service).
func (n *node) dnsService(ctx context.Context, client kubernetes.Interface) error {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-dns", Namespace: "kube-system",
			Labels: map[string]string{"k8s-app": "kube-dns"}},
		Spec: corev1.ServiceSpec{
			ClusterIP: n.o.clusterDNS,
			Ports: []corev1.ServicePort{
				{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt32(53)},
				{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(53)},
			},
		},
	}
	if _, err := client.CoreV1().Services("kube-system").Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	ready := true
	udp, tcp := corev1.ProtocolUDP, corev1.ProtocolTCP
	port := int32(53)
	dnsName, tcpName := "dns", "dns-tcp"
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-dns-node", Namespace: "kube-system",
			Labels: map[string]string{discoveryv1.LabelServiceName: "kube-dns", discoveryv1.LabelManagedBy: "testenv"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{n.o.ip}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
		Ports: []discoveryv1.EndpointPort{
			{Name: &dnsName, Port: &port, Protocol: &udp},
			{Name: &tcpName, Port: &port, Protocol: &tcp},
		},
	}
	slices := client.DiscoveryV1().EndpointSlices("kube-system")
	if _, err := slices.Create(ctx, slice, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// teardown removes what the node made: pods' containers and network
// namespaces, the daemons, mounts under --dir and the node's cgroups.
func (n *node) teardown() {
	stop := func(name string) {
		for _, c := range n.children {
			if c.name == name {
				stopChild(c)
			}
		}
	}
	stop("kubelet")
	podNetns := n.podNetns()
	if n.env.Containerd != "" {
		ctr := func(args ...string) []byte {
			out, _ := exec.Command("ctr", append([]string{"-a", n.env.Containerd, "-n", "k8s.io"}, args...)...).Output()
			return out
		}
		tasks := strings.Fields(string(ctr("tasks", "ls", "-q")))
		for _, t := range tasks {
			ctr("tasks", "kill", "-s", "SIGKILL", t)
		}
		deadline := time.Now().Add(10 * time.Second)
		for _, t := range tasks {
			for time.Now().Before(deadline) {
				if len(ctr("tasks", "rm", t)) > 0 || !strings.Contains(string(ctr("tasks", "ls", "-q")), t) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		for _, c := range strings.Fields(string(ctr("containers", "ls", "-q"))) {
			ctr("containers", "rm", c)
		}
	}
	for i := len(n.children) - 1; i >= 0; i-- {
		stopChild(n.children[i])
	}
	for _, ns := range podNetns {
		_ = exec.Command("umount", "-l", ns).Run()
		_ = os.Remove(ns)
	}
	n.unmountAll()
	if err := n.cgroups(func(p string, _ os.FileMode) error { removeCgroupTree(p); return nil }); err != nil {
		fmt.Fprintf(os.Stderr, "node: cgroups: %v\n", err)
	}
}

// podNetns lists the network namespaces containerd made for this node's
// pods (from its containers' specs).
func (n *node) podNetns() []string {
	if n.env.Containerd == "" {
		return nil
	}
	out, err := exec.Command("ctr", "-a", n.env.Containerd, "-n", "k8s.io", "containers", "ls", "-q").Output()
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	var paths []string
	for _, id := range strings.Fields(string(out)) {
		info, err := exec.Command("ctr", "-a", n.env.Containerd, "-n", "k8s.io", "containers", "info", id).Output()
		if err != nil {
			continue
		}
		var c struct {
			Spec struct {
				Linux struct {
					Namespaces []struct {
						Type string `json:"type"`
						Path string `json:"path"`
					} `json:"namespaces"`
				} `json:"linux"`
			} `json:"Spec"`
		}
		if json.Unmarshal(info, &c) != nil {
			continue
		}
		for _, ns := range c.Spec.Linux.Namespaces {
			if ns.Type == "network" && strings.HasPrefix(ns.Path, "/var/run/netns/cni-") && !seen[ns.Path] {
				seen[ns.Path] = true
				paths = append(paths, ns.Path)
			}
		}
	}
	return paths
}

// unmountAll lazily unmounts everything mounted under --dir, deepest first.
func (n *node) unmountAll() {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	defer f.Close()
	var points []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], n.o.dir+"/") {
			points = append(points, fields[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(points)))
	for _, p := range points {
		_ = syscall.Unmount(p, syscall.MNT_DETACH)
	}
}

// cgroups applies f to /sys/fs/cgroup/<hierarchy>/<netns> for every mounted
// hierarchy (cgroup v1, or the unified one).
func (n *node) cgroups(f func(string, os.FileMode) error) error {
	entries, err := os.ReadDir("/sys/fs/cgroup")
	if err != nil {
		return err
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return f(filepath.Join("/sys/fs/cgroup", n.o.netns), 0o755)
	}
	for _, e := range entries {
		info, err := os.Lstat(filepath.Join("/sys/fs/cgroup", e.Name()))
		if err != nil || !info.IsDir() || e.Name() == "unified" {
			continue
		}
		if err := f(filepath.Join("/sys/fs/cgroup", e.Name(), n.o.netns), 0o755); err != nil {
			return fmt.Errorf("%s: %w", e.Name(), err)
		}
	}
	return nil
}

// removeCgroupTree removes a cgroup directory and its children, deepest
// first (a cgroup is removed with rmdir once it has no processes).
func removeCgroupTree(root string) {
	var dirs []string
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		_ = syscall.Rmdir(dirs[i])
	}
}
