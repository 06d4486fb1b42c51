package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

// ProvisionerName is the StorageClass provisioner this command serves.
const ProvisionerName = "testenv.patroni-rs.io/hostpath"

// StorageClassName is the lab's default StorageClass.
const StorageClassName = "lab-hostpath"

// runProvisioner is a dynamic provisioner for a single-node lab, as
// rancher's local-path-provisioner: each PVC of the default StorageClass
// gets a directory under --root (mode 0777, so any pod user can write to
// it; fsGroup does not apply to hostPath) and a hostPath PersistentVolume
// pre-bound to it. Volumes are retained; the lab removes --root when it
// goes down.
func runProvisioner(args []string) int {
	fs := flag.NewFlagSet("provisioner", flag.ExitOnError)
	kubeconfig := fs.String("kubeconfig", "", "admin kubeconfig")
	root := fs.String("root", "", "directory the volumes are made in")
	_ = fs.Parse(args)
	if *kubeconfig == "" || *root == "" {
		fmt.Fprintln(os.Stderr, "provisioner: --kubeconfig and --root are required")
		return 64
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fmt.Fprintf(os.Stderr, "provisioner: load kubeconfig: %v\n", err)
		return 64
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "provisioner: %v\n", err)
		return 1
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	if err := ensureStorageClass(ctx, client); err != nil {
		fmt.Fprintf(os.Stderr, "provisioner: storage class: %v\n", err)
		return 1
	}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := provisionPending(ctx, client, *root); err != nil && ctx.Err() == nil {
			klog.Warningf("provision: %v", err)
		}
		select {
		case <-ctx.Done():
			return 0
		case <-tick.C:
		}
	}
}

func ensureStorageClass(ctx context.Context, client kubernetes.Interface) error {
	// Provisioned once the scheduler picked the node (it then waits for the
	// binding), as for local volumes; Immediate left pods unschedulable when
	// the claim was bound just after their first scheduling attempt.
	bind := storagev1.VolumeBindingWaitForFirstConsumer
	retain := corev1.PersistentVolumeReclaimRetain
	sc := &storagev1.StorageClass{
		ObjectMeta: metav1.ObjectMeta{
			Name:        StorageClassName,
			Annotations: map[string]string{"storageclass.kubernetes.io/is-default-class": "true"},
		},
		Provisioner:       ProvisionerName,
		VolumeBindingMode: &bind,
		ReclaimPolicy:     &retain,
	}
	_, err := client.StorageV1().StorageClasses().Create(ctx, sc, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// provisionPending makes a volume for every unbound claim of ours.
func provisionPending(ctx context.Context, client kubernetes.Interface, root string) error {
	claims, err := client.CoreV1().PersistentVolumeClaims("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for i := range claims.Items {
		pvc := &claims.Items[i]
		if pvc.Spec.VolumeName != "" || pvc.DeletionTimestamp != nil {
			continue
		}
		if pvc.Annotations["volume.kubernetes.io/storage-provisioner"] != ProvisionerName &&
			pvc.Annotations["volume.beta.kubernetes.io/storage-provisioner"] != ProvisionerName {
			continue
		}
		if err := provision(ctx, client, root, pvc); err != nil {
			klog.Warningf("provision %s/%s: %v", pvc.Namespace, pvc.Name, err)
		}
	}
	return nil
}

func provision(ctx context.Context, client kubernetes.Interface, root string, pvc *corev1.PersistentVolumeClaim) error {
	name := "pvc-" + string(pvc.UID)
	dir := filepath.Join(root, fmt.Sprintf("%s_%s_%s", pvc.Namespace, pvc.Name, pvc.UID))
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		return err
	}
	size := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	hostPathType := corev1.HostPathDirectory
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{"pv.kubernetes.io/provisioned-by": ProvisionerName},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: size},
			AccessModes:                   pvc.Spec.AccessModes,
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			StorageClassName:              StorageClassName,
			VolumeMode:                    pvc.Spec.VolumeMode,
			ClaimRef: &corev1.ObjectReference{
				Kind: "PersistentVolumeClaim", APIVersion: "v1",
				Namespace: pvc.Namespace, Name: pvc.Name, UID: pvc.UID,
			},
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: dir, Type: &hostPathType},
			},
		},
	}
	_, err := client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	if err == nil {
		klog.Infof("provisioned %s for %s/%s at %s", name, pvc.Namespace, pvc.Name, dir)
	}
	return err
}
