package deploy

import (
	"bytes"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// manifests are the objects of deploy/kubernetes, by kind and name.
type manifests struct {
	deployments map[string]*appsv1.Deployment
	daemonSets  map[string]*appsv1.DaemonSet
	services    map[string]*corev1.Service
	secrets     map[string]*corev1.Secret
	pdbs        map[string]*policyv1.PodDisruptionBudget
	namespaces  map[string]*corev1.Namespace
}

// loadManifests decodes every document of deploy/kubernetes/*.yaml
// strictly (unknown or duplicate fields fail) into its k8s.io/api type.
func loadManifests(t *testing.T) manifests {
	t.Helper()
	m := manifests{
		deployments: map[string]*appsv1.Deployment{},
		daemonSets:  map[string]*appsv1.DaemonSet{},
		services:    map[string]*corev1.Service{},
		secrets:     map[string]*corev1.Secret{},
		pdbs:        map[string]*policyv1.PodDisruptionBudget{},
		namespaces:  map[string]*corev1.Namespace{},
	}
	files, err := filepath.Glob(filepath.Join("kubernetes", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/kubernetes (%v)", err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("read %s: %v", file, err)
		}
		for i, doc := range bytes.Split(b, []byte("\n---\n")) {
			where := file + " document " + strconv.Itoa(i+1)
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal(doc, &tm); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			var name string
			switch tm.APIVersion + " " + tm.Kind {
			case "apps/v1 Deployment":
				name = decodeInto(t, where, doc, m.deployments)
			case "apps/v1 DaemonSet":
				name = decodeInto(t, where, doc, m.daemonSets)
			case "v1 Service":
				name = decodeInto(t, where, doc, m.services)
			case "v1 Secret":
				name = decodeInto(t, where, doc, m.secrets)
			case "policy/v1 PodDisruptionBudget":
				name = decodeInto(t, where, doc, m.pdbs)
			case "v1 Namespace":
				name = decodeInto(t, where, doc, m.namespaces)
			default:
				t.Fatalf("%s: unexpected apiVersion/kind %q %q", where, tm.APIVersion, tm.Kind)
			}
			if name == "" {
				t.Errorf("%s: no metadata.name", where)
			}
		}
	}
	return m
}

// decodeInto decodes doc strictly into a new T, files it under its name
// and returns the name.
func decodeInto[T any, PT interface {
	*T
	GetName() string
}](t *testing.T, where string, doc []byte, into map[string]*T) string {
	t.Helper()
	o := PT(new(T))
	strict(t, where, doc, o)
	into[o.GetName()] = o
	return o.GetName()
}

func strict(t *testing.T, where string, doc []byte, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(doc, into); err != nil {
		t.Fatalf("%s: strict decoding into %T: %v", where, into, err)
	}
}

// TestStrictDecodingRejects: the decoding used on the manifests fails on a
// misspelt field, which a lenient decoder would drop silently.
func TestStrictDecodingRejects(t *testing.T) {
	doc := []byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 2\n")
	if err := yaml.UnmarshalStrict(doc, &appsv1.Deployment{}); err == nil {
		t.Errorf("UnmarshalStrict(spec.replica) = nil, want an unknown-field error")
	}
}

// secretKey tells whether the manifests' Secret name has key.
func (m manifests) secretKey(name, key string) bool {
	s, ok := m.secrets[name]
	if !ok {
		return false
	}
	_, inString := s.StringData[key]
	_, inData := s.Data[key]
	return inString || inData
}

// checkPodSecrets: every secretKeyRef and Secret volume item names a key
// of a Secret in the manifests, and every file a flag names under
// /etc/blacktree is such a key, mounted where the flag points.
func checkPodSecrets(t *testing.T, m manifests, what string, spec corev1.PodSpec, c corev1.Container, args map[string]string) {
	t.Helper()
	for _, e := range c.Env {
		if r := e.ValueFrom; r != nil && r.SecretKeyRef != nil && !m.secretKey(r.SecretKeyRef.Name, r.SecretKeyRef.Key) {
			t.Errorf("%s: env %s refers to %s/%s, which no Secret in deploy/kubernetes has", what, e.Name, r.SecretKeyRef.Name, r.SecretKeyRef.Key)
		}
	}
	secretFiles := map[string]bool{} // path in the container -> present
	for _, vm := range c.VolumeMounts {
		for _, v := range spec.Volumes {
			if v.Name != vm.Name || v.Secret == nil {
				continue
			}
			if len(v.Secret.Items) == 0 {
				t.Errorf("%s: volume %s mounts all of Secret %s; list the items it needs", what, v.Name, v.Secret.SecretName)
			}
			for _, it := range v.Secret.Items {
				if !m.secretKey(v.Secret.SecretName, it.Key) {
					t.Errorf("%s: volume %s wants key %s of Secret %s, which has none", what, v.Name, it.Key, v.Secret.SecretName)
				}
				secretFiles[path.Join(vm.MountPath, it.Path)] = true
			}
		}
	}
	for name, value := range args {
		if strings.HasPrefix(value, "/etc/blacktree/") && !secretFiles[value] {
			t.Errorf("%s: --%s=%s is no file mounted from a Secret (mounted: %v)", what, name, value, secretFiles)
		}
	}
}

// checkEnvFlags: every BLACKTREE_* variable set is a flag's fallback.
func checkEnvFlags(t *testing.T, what string, c corev1.Container, fs flagSet) {
	t.Helper()
	for _, e := range c.Env {
		if strings.HasPrefix(e.Name, "BLACKTREE_") && !fs.hasEnv(e.Name) {
			t.Errorf("%s: env %s backs no flag of %s", what, e.Name, filepath.Base(fs.binary))
		}
	}
}

// checkGrace: the pod's grace period outlasts the binary's drain.
func checkGrace(t *testing.T, what string, spec corev1.PodSpec, fs flagSet, args map[string]string) {
	t.Helper()
	drain, err := time.ParseDuration(fs.value(args, "drain-timeout"))
	if err != nil {
		t.Fatalf("%s: --drain-timeout: %v", what, err)
	}
	var grace time.Duration
	if spec.TerminationGracePeriodSeconds != nil {
		grace = time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
	}
	if grace <= drain {
		t.Errorf("%s: terminationGracePeriodSeconds %s, want more than --drain-timeout %s", what, grace, drain)
	}
}

func checkNonRoot(t *testing.T, what string, spec corev1.PodSpec, c corev1.Container) {
	t.Helper()
	psc, sc := spec.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("%s: the pod must run as a non-root user (runAsNonRoot, runAsUser)", what)
	}
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s: want allowPrivilegeEscalation false and readOnlyRootFilesystem true", what)
	}
}

func containerPort(t *testing.T, what string, c corev1.Container, name string) int32 {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	t.Fatalf("%s: no container port named %s", what, name)
	return 0
}

// matches tells whether selector selects labels.
func matches(selector *metav1.LabelSelector, labels map[string]string) bool {
	if selector == nil || len(selector.MatchLabels) == 0 || len(selector.MatchExpressions) > 0 {
		return false
	}
	for k, v := range selector.MatchLabels {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// checkPod checks what every Blacktree pod needs: its controller selects
// it; one container that runs image (as make images tags it) with args of
// the binary's flags; BLACKTREE_* variables, Secret references, grace period
// and security context as the check* functions want. It returns the
// container and its parsed args.
func checkPod(t *testing.T, m manifests, what string, selector *metav1.LabelSelector, tmpl corev1.PodTemplateSpec, fs flagSet, image string) (corev1.Container, map[string]string) {
	t.Helper()
	if !matches(selector, tmpl.Labels) {
		t.Errorf("%s: selector %v does not select its pods' labels %v", what, selector, tmpl.Labels)
	}
	if len(tmpl.Spec.Containers) != 1 {
		t.Fatalf("%s: %d containers, want 1", what, len(tmpl.Spec.Containers))
	}
	c := tmpl.Spec.Containers[0]
	if c.Image != image {
		t.Errorf("%s: image %s, want %s, the one make images builds", what, c.Image, image)
	}
	if len(c.Command) != 0 {
		t.Errorf("%s: command %v overrides the image's entrypoint; use args", what, c.Command)
	}
	args, err := fs.parseArgs(c.Args)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	checkEnvFlags(t, what, c, fs)
	checkPodSecrets(t, m, what, tmpl.Spec, c, args)
	checkGrace(t, what, tmpl.Spec, fs, args)
	checkNonRoot(t, what, tmpl.Spec, c)
	return c, args
}

// TestKubernetesHub: the hub Deployment, its Service and its
// PodDisruptionBudget agree with each other and with blacktree-hub's
// flags and listen ports.
func TestKubernetesHub(t *testing.T) {
	m := loadManifests(t)
	hubFlags := readFlags(t, bins.Hub)
	d, ok := m.deployments["blacktree-hub"]
	if !ok {
		t.Fatalf("no Deployment blacktree-hub in deploy/kubernetes")
	}
	const what = "Deployment blacktree-hub"
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("%s: replicas %v, want 2", what, d.Spec.Replicas)
	}
	tmpl := d.Spec.Template
	c, args := checkPod(t, m, what, d.Spec.Selector, tmpl, hubFlags, "blacktree/hub:dev")
	if args["tls-cert"] == "" || args["tls-key"] == "" {
		t.Errorf("%s: the hub listens beyond loopback: want --tls-cert and --tls-key", what)
	}

	// The ports the hub listens on, from its args or defaults, are the
	// container's named ports, and what the probes, the scrape
	// annotations and the Service point at.
	grpcPort := port(t, hubFlags.value(args, "grpc-addr"))
	httpPort := port(t, hubFlags.value(args, "http-addr"))
	if got := containerPort(t, what, c, "grpc"); got != grpcPort {
		t.Errorf("%s: container port grpc %d, but the hub listens for gRPC on %d", what, got, grpcPort)
	}
	if got := containerPort(t, what, c, "http"); got != httpPort {
		t.Errorf("%s: container port http %d, but the hub serves HTTP on %d", what, got, httpPort)
	}
	for _, p := range []struct {
		name, path string
		probe      *corev1.Probe
	}{{"readinessProbe", "/readyz", c.ReadinessProbe}, {"livenessProbe", "/healthz", c.LivenessProbe}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s: no %s httpGet", what, p.name)
			continue
		}
		g := p.probe.HTTPGet
		if g.Path != p.path || !targetsPort(g.Port, "http", httpPort) {
			t.Errorf("%s: %s GET %s on port %s, want %s on the HTTP port %d", what, p.name, g.Path, g.Port.String(), p.path, httpPort)
		}
	}
	ann := tmpl.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/path"] != "/metrics" || ann["prometheus.io/port"] != strconv.Itoa(int(httpPort)) {
		t.Errorf("%s: scrape annotations %v, want scrape true, path /metrics, port %d", what, ann, httpPort)
	}

	svc, ok := m.services["blacktree-hub"]
	if !ok {
		t.Fatalf("no Service blacktree-hub")
	}
	if !matches(&metav1.LabelSelector{MatchLabels: svc.Spec.Selector}, tmpl.Labels) {
		t.Errorf("Service blacktree-hub: selector %v does not select the hub's pods %v", svc.Spec.Selector, tmpl.Labels)
	}
	want := map[string]int32{"grpc": grpcPort, "http": httpPort}
	for _, p := range svc.Spec.Ports {
		target, ok := want[p.Name]
		if !ok {
			t.Errorf("Service blacktree-hub: unexpected port %s", p.Name)
			continue
		}
		delete(want, p.Name)
		if !targetsPort(p.TargetPort, p.Name, target) {
			t.Errorf("Service blacktree-hub: port %s targets %s, want the hub's %s port %d", p.Name, p.TargetPort.String(), p.Name, target)
		}
	}
	if len(want) > 0 {
		t.Errorf("Service blacktree-hub: missing ports %v", want)
	}

	var pdbs int
	for name, pdb := range m.pdbs {
		if matches(pdb.Spec.Selector, tmpl.Labels) {
			pdbs++
			if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() < 1 || pdb.Spec.MinAvailable.IntValue() >= int(*d.Spec.Replicas) {
				t.Errorf("PodDisruptionBudget %s: minAvailable %v, want at least 1 and fewer than the %d replicas", name, pdb.Spec.MinAvailable, *d.Spec.Replicas)
			}
		}
	}
	if pdbs != 1 {
		t.Errorf("%d PodDisruptionBudgets select the hub's pods, want 1", pdbs)
	}
}

// targetsPort tells whether a probe's or Service's port (a name or a
// number) is the named container port with number n.
func targetsPort(p intstr.IntOrString, name string, n int32) bool {
	if p.Type == intstr.String {
		return p.StrVal == name
	}
	return p.IntVal == n
}

// TestKubernetesWorker: the worker DaemonSet uses blacktree-worker's
// flags, reaches the hub through the hub's Service on its gRPC port, and
// has the engine's socket and its group.
func TestKubernetesWorker(t *testing.T) {
	m := loadManifests(t)
	workerFlags := readFlags(t, bins.Worker)
	hubFlags := readFlags(t, bins.Hub)
	ds, ok := m.daemonSets["blacktree-worker"]
	if !ok {
		t.Fatalf("no DaemonSet blacktree-worker in deploy/kubernetes")
	}
	const what = "DaemonSet blacktree-worker"
	tmpl := ds.Spec.Template
	c, args := checkPod(t, m, what, ds.Spec.Selector, tmpl, workerFlags, "blacktree/worker:dev")
	if args["insecure"] == "true" || args["tls-ca"] == "" {
		t.Errorf("%s: want TLS to the hub (--tls-ca, no --insecure)", what)
	}

	// --hub names the hub's Service and its gRPC port.
	d := m.deployments["blacktree-hub"]
	if d == nil || len(d.Spec.Template.Spec.Containers) == 0 {
		t.Fatalf("no hub Deployment to check --hub against")
	}
	hubArgs, err := hubFlags.parseArgs(d.Spec.Template.Spec.Containers[0].Args)
	if err != nil {
		t.Fatalf("hub args: %v", err)
	}
	hubGRPC := port(t, hubFlags.value(hubArgs, "grpc-addr"))
	for _, addr := range strings.Split(workerFlags.value(args, "hub"), ",") {
		host := strings.Split(addr, ":")[0]
		svc, ok := m.services[strings.Split(host, ".")[0]]
		if !ok {
			t.Errorf("%s: --hub %s names no Service in deploy/kubernetes", what, addr)
			continue
		}
		found := false
		for _, p := range svc.Spec.Ports {
			if strconv.Itoa(int(p.Port)) == strings.TrimPrefix(addr, host+":") && targetsPort(p.TargetPort, "grpc", hubGRPC) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: --hub %s is no port of Service %s that reaches the hub's gRPC port %d", what, addr, svc.Name, hubGRPC)
		}
	}

	// The engine's socket, from the node, and the group that may use it.
	socket := ""
	for _, vm := range c.VolumeMounts {
		for _, v := range tmpl.Spec.Volumes {
			if v.Name == vm.Name && v.HostPath != nil && v.HostPath.Path == "/var/run/docker.sock" {
				socket = vm.MountPath
			}
		}
	}
	if socket != "/var/run/docker.sock" {
		t.Errorf("%s: the node's /var/run/docker.sock is not mounted at /var/run/docker.sock (got %q)", what, socket)
	}
	if sc := tmpl.Spec.SecurityContext; sc == nil || len(sc.SupplementalGroups) == 0 {
		t.Errorf("%s: no supplementalGroups: a non-root worker cannot use the root:docker 0660 socket", what)
	}
	// Writable directories: the root file system is read-only, so the
	// state and work directories must be volumes.
	for _, flag := range []string{"state-dir", "work-dir"} {
		dir := workerFlags.value(args, flag)
		mounted := false
		for _, vm := range c.VolumeMounts {
			mounted = mounted || (vm.MountPath == dir && !vm.ReadOnly)
		}
		if !mounted {
			t.Errorf("%s: --%s %q is not a writable volume mount", what, flag, dir)
		}
	}
}

// TestKubernetesNamespaces: every object lives in a namespace the
// manifests create.
func TestKubernetesNamespaces(t *testing.T) {
	m := loadManifests(t)
	check := func(kind string, o metav1.Object) {
		if _, ok := m.namespaces[o.GetNamespace()]; !ok {
			t.Errorf("%s %s: namespace %q is not created by deploy/kubernetes", kind, o.GetName(), o.GetNamespace())
		}
	}
	for _, o := range m.deployments {
		check("Deployment", o)
	}
	for _, o := range m.daemonSets {
		check("DaemonSet", o)
	}
	for _, o := range m.services {
		check("Service", o)
	}
	for _, o := range m.secrets {
		check("Secret", o)
	}
	for _, o := range m.pdbs {
		check("PodDisruptionBudget", o)
	}
}
