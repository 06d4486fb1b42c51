package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/component-base/version"
)

// Controllers kube-controller-manager runs. node-lifecycle, taint-eviction
// and pod-garbage-collector stay off: the fake node never heartbeats, and
// they would evict or delete its pods.
var controllers = []string{
	"endpoints-controller", "endpointslice-controller", "endpointslice-mirroring-controller",
	"statefulset-controller", "replicaset-controller", "deployment-controller",
	"serviceaccount-controller", "serviceaccount-token-controller", "namespace-controller",
	"garbage-collector-controller", "persistentvolumeclaim-protection-controller",
	"root-ca-certificate-publisher-controller",
	// For the real node: PVCs bind to the lab provisioner's volumes, and
	// PodDisruptionBudgets get their status (evictions and drains read it).
	"persistentvolume-binder-controller", "persistentvolume-protection-controller",
	"disruption-controller",
}

// Env is what `up` writes to DIR/env.json once the control plane serves:
// everything a test needs to reach it.
type Env struct {
	Version string `json:"version"`
	// Kubeconfig reaches the API server from the machine's own namespace,
	// through the supervisor's loopback proxy.
	Kubeconfig string `json:"kubeconfig"`
	// LabKubeconfig reaches it from inside the lab's namespaces, at APIIP.
	LabKubeconfig string `json:"lab_kubeconfig"`
	Server        string `json:"server"`
	LabServer     string `json:"lab_server"`
	CAFile        string `json:"ca_file"`
	AdminToken    string `json:"admin_token"`
	APIIP         string `json:"api_ip"`
	APIPort       int    `json:"api_port"`
	// Users are static-token identities (user name = `Name`, group
	// testenv:testers) with no rights until a test binds a role to them.
	Users      []User         `json:"users"`
	Supervisor int            `json:"supervisor_pid"`
	Pids       map[string]int `json:"pids"`
	Node       string         `json:"node"`
}

// User is one static-token identity.
type User struct {
	Name  string `json:"name"`
	Token string `json:"token"`
}

type child struct {
	name string
	cmd  *exec.Cmd
}

func runUp(args []string) int {
	fs := flag.NewFlagSet("up", flag.ExitOnError)
	dir := fs.String("dir", "", "state directory (certificates, data, logs, env.json)")
	netns := fs.String("netns", "", "network namespace (name under /run/netns) the components run in")
	ipStr := fs.String("ip", "", "non-loopback address of that namespace: the API server's advertise address")
	port := fs.Int("api-port", 6443, "API server secure port")
	watch := fs.Int("watch-pid", 0, "stop everything once this process is gone")
	nusers := fs.Int("users", 64, "number of static-token test identities")
	_ = fs.Parse(args)
	ip := net.ParseIP(*ipStr)
	if *dir == "" || *netns == "" || ip == nil || ip.IsLoopback() {
		fmt.Fprintln(os.Stderr, "up: --dir, --netns and a non-loopback --ip are required")
		return 64
	}
	if err := up(*dir, *netns, ip, *port, *watch, *nusers); err != nil {
		fmt.Fprintf(os.Stderr, "up: %v\n", err)
		return 1
	}
	return 0
}

func up(dir, netns string, ip net.IP, port, watch, nusers int) error {
	for _, d := range []string{dir, filepath.Join(dir, "logs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	p, err := writePKI(dir, []net.IP{ip})
	if err != nil {
		return err
	}
	env := &Env{Version: version.Get().GitVersion, APIIP: ip.String(), APIPort: port, CAFile: p.CAFile,
		AdminToken: randomToken(), Supervisor: os.Getpid(), Pids: map[string]int{}, Node: "testenv-node"}
	tokens := []string{fmt.Sprintf("%s,admin,admin,system:masters", env.AdminToken)}
	for i := 0; i < nusers; i++ {
		u := User{Name: fmt.Sprintf("testenv-user-%02d", i), Token: randomToken()}
		env.Users = append(env.Users, u)
		tokens = append(tokens, fmt.Sprintf("%s,%s,%s,\"testenv:testers\"", u.Token, u.Name, u.Name))
	}
	tokensFile := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokensFile, []byte(strings.Join(tokens, "\n")+"\n"), 0o600); err != nil {
		return err
	}

	// The loopback proxy: the machine's own namespace reaches the API server
	// only through this listener, never through a route into the lab.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen for the API proxy: %w", err)
	}
	target := net.JoinHostPort(ip.String(), fmt.Sprint(port))
	go serveProxy(ln, filepath.Join("/run/netns", netns), target)

	env.Server = "https://" + ln.Addr().String()
	env.LabServer = "https://" + target
	env.Kubeconfig = filepath.Join(dir, "admin.kubeconfig")
	env.LabKubeconfig = filepath.Join(dir, "lab.kubeconfig")
	cpKubeconfig := filepath.Join(dir, "controlplane.kubeconfig")
	for path, server := range map[string]string{env.Kubeconfig: env.Server, env.LabKubeconfig: env.LabServer,
		cpKubeconfig: fmt.Sprintf("https://127.0.0.1:%d", port)} {
		if err := writeKubeconfig(path, server, p.CAFile, env.AdminToken); err != nil {
			return err
		}
	}

	var children []child
	stopAll := func() {
		for i := len(children) - 1; i >= 0; i-- {
			stopChild(children[i])
		}
	}
	defer stopAll()
	start := func(name string, args ...string) error {
		c, err := startChild(self, netns, dir, name, args...)
		if err != nil {
			return err
		}
		children = append(children, c)
		env.Pids[name] = c.cmd.Process.Pid
		return nil
	}

	etcdReady := filepath.Join(dir, "etcd.ready")
	_ = os.Remove(etcdReady)
	if err := start("etcd", "--dir", filepath.Join(dir, "etcd"), "--ready-file", etcdReady); err != nil {
		return err
	}
	if err := waitFor(60*time.Second, children, func() bool { _, err := os.Stat(etcdReady); return err == nil }); err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	if err := start("kube-apiserver",
		"--etcd-servers=http://127.0.0.1:2379",
		fmt.Sprintf("--secure-port=%d", port), "--bind-address=0.0.0.0", "--advertise-address="+ip.String(),
		"--tls-cert-file="+p.CertFile, "--tls-private-key-file="+p.KeyFile,
		"--service-cluster-ip-range=10.96.0.0/16",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+p.SAPubFile, "--service-account-signing-key-file="+p.SAKeyFile,
		"--token-auth-file="+tokensFile, "--authorization-mode=RBAC",
		"--profiling=false", "--cert-dir="+filepath.Join(dir, "apiserver-certs"),
		// A real node's name resolves nowhere in the lab: reach kubelets by IP.
		"--kubelet-preferred-address-types=InternalIP,Hostname",
	); err != nil {
		return err
	}
	client, err := adminClient(env.Kubeconfig)
	if err != nil {
		return err
	}
	if err := waitFor(120*time.Second, children, func() bool { return readyz(env.Server, p.CAFile, env.AdminToken) }); err != nil {
		return fmt.Errorf("kube-apiserver /readyz: %w", err)
	}
	if err := start("kube-controller-manager",
		"--kubeconfig="+cpKubeconfig, "--controllers="+strings.Join(controllers, ","),
		"--service-account-private-key-file="+p.SAKeyFile, "--root-ca-file="+p.CAFile,
		"--leader-elect=false", "--secure-port=0", "--concurrent-endpoint-syncs=5",
	); err != nil {
		return err
	}
	if err := start("kubelet", "--kubeconfig="+cpKubeconfig, "--node="+env.Node); err != nil {
		return err
	}
	ctx := context.Background()
	// The serviceaccount controller creating default/default shows KCM is
	// working; the Node shows the fake kubelet is.
	if err := waitFor(120*time.Second, children, func() bool {
		_, err1 := client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		_, err2 := client.CoreV1().Nodes().Get(ctx, env.Node, metav1.GetOptions{})
		return err1 == nil && err2 == nil
	}); err != nil {
		return fmt.Errorf("controller manager and kubelet: %w", err)
	}
	if err := writeJSONAtomic(filepath.Join(dir, "env.json"), env); err != nil {
		return err
	}
	fmt.Printf("testenv: control plane %s ready at %s (lab %s)\n", env.Version, env.Server, env.LabServer)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case s := <-sig:
			fmt.Printf("testenv: %v, stopping\n", s)
			return nil
		case <-tick.C:
			if watch > 0 && syscall.Kill(watch, 0) == syscall.ESRCH {
				fmt.Printf("testenv: watched process %d is gone, stopping\n", watch)
				return nil
			}
			for _, c := range children {
				if c.cmd.ProcessState != nil {
					return fmt.Errorf("%s exited: %v (see %s)", c.name, c.cmd.ProcessState, logPath(dir, c.name))
				}
			}
		}
	}
}

func logPath(dir, name string) string { return filepath.Join(dir, "logs", name+".log") }

// startChild runs `testenv NAME ARGS…` inside the lab namespace, logging to
// DIR/logs/NAME.log. It dies with the supervisor (parent-death signal).
func startChild(self, netns, dir, name string, args ...string) (child, error) {
	log, err := os.OpenFile(logPath(dir, name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return child{}, err
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", netns, self, name}, args...)...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		log.Close()
		return child{}, fmt.Errorf("start %s: %w", name, err)
	}
	c := child{name: name, cmd: cmd}
	go func() {
		_ = cmd.Wait()
		log.Close()
	}()
	return c, nil
}

// stopChild sends SIGTERM, and SIGKILL after 10 s.
func stopChild(c child) {
	if c.cmd.Process == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if syscall.Kill(c.cmd.Process.Pid, 0) == syscall.ESRCH || c.cmd.ProcessState != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Fprintf(os.Stderr, "testenv: %s did not stop within 10s, killing\n", c.name)
	_ = c.cmd.Process.Kill()
}

// waitFor polls cond until it holds, a child exits, or the timeout passes.
func waitFor(timeout time.Duration, children []child, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return nil
		}
		for _, c := range children {
			if c.cmd.ProcessState != nil {
				return fmt.Errorf("%s exited: %v", c.name, c.cmd.ProcessState)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not ready after %v", timeout)
}

func readyz(server, caFile, token string) bool {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return false
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, _ := http.NewRequest("GET", server+"/readyz", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	return resp.StatusCode == 200
}

func adminClient(kubeconfig string) (kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

func writeKubeconfig(path, server, caFile, token string) error {
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["testenv"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["testenv"] = &clientcmdapi.Context{Cluster: "testenv", AuthInfo: "admin", Namespace: "default"}
	cfg.CurrentContext = "testenv"
	return clientcmd.WriteToFile(*cfg, path)
}

func writeJSONAtomic(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func randomToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func resourceQty(s string) resource.Quantity { return resource.MustParse(s) }
