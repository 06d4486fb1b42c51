package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

// PodIPAnnotation names the IP the fake kubelet reports for a pod. The lab
// sets it to the address of the network namespace that plays the pod.
const PodIPAnnotation = "testenv.patroni-rs.io/pod-ip"

// NotReadyAnnotation, when "true", keeps a pod Running but not Ready.
const NotReadyAnnotation = "testenv.patroni-rs.io/not-ready"

// fakeKubelet plays the node agent for the lab's pods (those with
// PodIPAnnotation), which no real kubelet runs: it binds them to its Node,
// marks them Running/Ready at their IP and force-deletes them when they are
// terminating (a bound pod never finishes deleting without a kubelet). Pods
// for a real node are left to kube-scheduler and that node's kubelet.
type fakeKubelet struct {
	client kubernetes.Interface
	node   string
	// fallbackNet hands out addresses to pods without PodIPAnnotation.
	fallbackNet net.IP
	mu          sync.Mutex
	next        int
	assigned    map[types.UID]string
}

func runKubelet(args []string) int {
	fs := flag.NewFlagSet("kubelet", flag.ExitOnError)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig with node-agent rights")
	node := fs.String("node", "testenv-node", "name of the Node to create and bind pods to")
	fallback := fs.String("fallback-net", "10.213.250.0", "first address handed to pods without an IP annotation (a /24)")
	_ = fs.Parse(args)
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kubelet: load kubeconfig: %v\n", err)
		return 64
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kubelet: client: %v\n", err)
		return 1
	}
	ip := net.ParseIP(*fallback).To4()
	if ip == nil {
		fmt.Fprintf(os.Stderr, "kubelet: --fallback-net: not an IPv4 address: %q\n", *fallback)
		return 64
	}
	k := &fakeKubelet{client: client, node: *node, fallbackNet: ip, next: 1, assigned: map[types.UID]string{}}

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	if err := k.ensureNode(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "kubelet: create node: %v\n", err)
		return 1
	}
	k.run(ctx)
	return 0
}

func (k *fakeKubelet) ensureNode(ctx context.Context) error {
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		// Tainted so that kube-scheduler (which runs with a real node) never
		// places a pod here: this kubelet runs only the lab's own pods.
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: k.node, Labels: map[string]string{"kubernetes.io/hostname": k.node}},
			Spec: corev1.NodeSpec{Taints: []corev1.Taint{{
				Key: "testenv.patroni-rs.io/fake-kubelet", Effect: corev1.TaintEffectNoSchedule,
			}}},
		}
		_, err := k.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			klog.Warningf("create node: %v", err)
			return false, nil
		}
		now := metav1.Now()
		patch := map[string]any{"status": map[string]any{
			"conditions": []corev1.NodeCondition{{
				Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
				LastHeartbeatTime: now, LastTransitionTime: now,
			}},
			"capacity":    corev1.ResourceList{"cpu": resourceQty("64"), "memory": resourceQty("256Gi"), "pods": resourceQty("500")},
			"allocatable": corev1.ResourceList{"cpu": resourceQty("64"), "memory": resourceQty("256Gi"), "pods": resourceQty("500")},
		}}
		body, _ := json.Marshal(patch)
		if _, err := k.client.CoreV1().Nodes().Patch(ctx, k.node, types.StrategicMergePatchType, body, metav1.PatchOptions{}, "status"); err != nil {
			klog.Warningf("patch node status: %v", err)
			return false, nil
		}
		return true, nil
	})
}

func (k *fakeKubelet) run(ctx context.Context) {
	factory := informers.NewSharedInformerFactory(k.client, 0)
	pods := factory.Core().V1().Pods()
	queue := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			queue.Add(key)
		}
	}
	_, _ = pods.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
	})
	factory.Start(ctx.Done())
	cache.WaitForCacheSync(ctx.Done(), pods.Informer().HasSynced)
	go func() {
		<-ctx.Done()
		queue.ShutDown()
	}()
	for {
		key, quit := queue.Get()
		if quit {
			return
		}
		ns, name, _ := cache.SplitMetaNamespaceKey(key)
		pod, err := pods.Lister().Pods(ns).Get(name)
		if err == nil {
			err = k.sync(ctx, pod)
		} else if apierrors.IsNotFound(err) {
			err = nil
		}
		if err != nil && !apierrors.IsNotFound(err) {
			klog.Warningf("sync pod %s: %v", key, err)
			queue.AddRateLimited(key)
		} else {
			queue.Forget(key)
		}
		queue.Done(key)
	}
}

// sync drives one pod one step towards what a kubelet would report.
func (k *fakeKubelet) sync(ctx context.Context, pod *corev1.Pod) error {
	pods := k.client.CoreV1().Pods(pod.Namespace)
	// A pod of a real node (scheduled by kube-scheduler, run by a real
	// kubelet) is never touched: only the lab's own pods, which carry the IP
	// annotation, are bound here, and only pods bound here are deleted.
	_, labPod := pod.Annotations[PodIPAnnotation]
	mine := pod.Spec.NodeName == k.node || (pod.Spec.NodeName == "" && labPod)
	switch {
	case !mine:
		return nil
	case pod.DeletionTimestamp != nil:
		zero := int64(0)
		uid := pod.UID
		return pods.Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid}})
	case pod.Spec.NodeName == "":
		binding := &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID},
			Target:     corev1.ObjectReference{Kind: "Node", Name: k.node},
		}
		return pods.Bind(ctx, binding, metav1.CreateOptions{})
	}
	ip := k.podIP(pod)
	ready := pod.Annotations[NotReadyAnnotation] != "true"
	if podIsAt(pod, ip, ready) {
		return nil
	}
	status := corev1.ConditionTrue
	if !ready {
		status = corev1.ConditionFalse
	}
	now := metav1.Now()
	var containers []corev1.ContainerStatus
	for _, c := range pod.Spec.Containers {
		containers = append(containers, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: c.Image, Ready: ready, Started: &ready,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	updated := pod.DeepCopy()
	updated.Status = corev1.PodStatus{
		Phase:  corev1.PodRunning,
		HostIP: ip, HostIPs: []corev1.HostIP{{IP: ip}},
		PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
		StartTime: &now,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: status, LastTransitionTime: now},
			{Type: corev1.PodReady, Status: status, LastTransitionTime: now},
		},
		ContainerStatuses: containers,
	}
	_, err := pods.UpdateStatus(ctx, updated, metav1.UpdateOptions{})
	return err
}

func podIsAt(pod *corev1.Pod, ip string, ready bool) bool {
	if pod.Status.Phase != corev1.PodRunning || pod.Status.PodIP != ip {
		return false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return (c.Status == corev1.ConditionTrue) == ready
		}
	}
	return false
}

// podIP returns the annotated address, or a stable one from the fallback /24.
func (k *fakeKubelet) podIP(pod *corev1.Pod) string {
	if ip := net.ParseIP(pod.Annotations[PodIPAnnotation]); ip != nil {
		return ip.String()
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if ip, ok := k.assigned[pod.UID]; ok {
		return ip
	}
	ip := make(net.IP, 4)
	copy(ip, k.fallbackNet)
	ip[3] = byte(k.next)
	k.next = k.next%253 + 1
	k.assigned[pod.UID] = ip.String()
	return ip.String()
}
