// SPDX-License-Identifier: Apache-2.0

// dppeer plays the kubelet against flexpu-node's device plugin, for tests.
//
// It serves what the kubelet serves (the device-plugin Registration socket and
// the PodResources API), drives the plugin through the calls the kubelet makes
// (options, ListAndWatch, GetPreferredAllocation, Allocate, PreStartContainer)
// for the pods flexpu-scheduler bound to the node, and checks every answer
// against flexpu's contract. It ends with a kubelet restart, which the plugin
// must notice and register again.
//
// One line per step on stdout ("dppeer: step N NAME ok"); the first failure
// is printed on stderr and exits 1; "dppeer: all checks passed" and exit 0
// otherwise.
//
// The stubs are the official ones from k8s.io/kubelet, so the wire format is
// exactly the kubelet's.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
	podresapi "k8s.io/kubelet/pkg/apis/podresources/v1"
)

// The flexpu contract the peer checks.
const (
	resourceName  = "flexpu.io/gpu"
	slotsPerGPU   = 16
	annAllocation = "flexpu.io/allocation"
	confMountPath = "/etc/flexpu"
	sliceConfName = "slice.conf"
	bogusDeviceID = "GPU-not-a-device::0"
)

// The mounts every container response carries, and whether each is read-only.
var wantMounts = []struct {
	path     string
	readOnly bool
}{
	{"/usr/lib/flexpu/libflexpu-cuda.so", true},
	{"/etc/ld.so.preload", true},
	{confMountPath, true},
}

// Mounts no container response may carry: the node agent owns what decides
// between tenants, so no directory all slices could write is shared.
var forbiddenMounts = []string{"/run/flexpu/state"}

// The control devices every container response carries, besides one
// /dev/nvidia<minor> per GPU.
var wantControlDevices = []string{"/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"}

// Bounds of the individual waits; all of them are also cut by --timeout.
const (
	registerWait   = 30 * time.Second
	healthWait     = 15 * time.Second
	reregisterWait = 20 * time.Second
	podsWait       = 60 * time.Second
	rpcWait        = 10 * time.Second
	// The kubelet gives PreStartContainer 30 s; Allocate gets the same here.
	allocateWait = pluginapi.KubeletPreStartContainerRPCTimeoutInSecs * time.Second
)

// Unix socket paths longer than this do not fit in sockaddr_un.
const maxSocketPath = 107

type config struct {
	dir          string
	podResources string
	kubeconfig   string
	node         string
	gpus         int
	lostFile     string
	pods         int
	timeout      time.Duration
}

func main() {
	cfg, err := parseFlags()
	if err != nil {
		fmt.Fprintf(os.Stderr, "dppeer: %v\n", err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
	p := &peer{cfg: cfg, podres: newPodResourcesServer()}
	err = p.run(ctx)
	p.close()
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "dppeer: FAILED: %v\n", err)
		os.Exit(1)
	}
	fmt.Println("dppeer: all checks passed")
}

func parseFlags() (config, error) {
	var c config
	var timeout int
	flag.StringVar(&c.dir, "dir", "", "device-plugin directory (kubelet.sock and the plugin's socket)")
	flag.StringVar(&c.podResources, "podresources", "", "socket to serve the PodResources API on")
	flag.StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig of the API server")
	flag.StringVar(&c.node, "node", "", "name of the node the plugin runs for")
	flag.IntVar(&c.gpus, "gpus", 0, "number of GPUs the plugin must advertise")
	flag.StringVar(&c.lostFile, "lost-file", "", "fake NVML file listing the indices of lost GPUs")
	flag.IntVar(&c.pods, "pods", 0, "number of flexpu pods bound to --node to expect")
	flag.IntVar(&timeout, "timeout", 120, "overall limit in seconds")
	flag.Parse()
	if flag.NArg() != 0 {
		return c, fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	for _, f := range []struct{ name, value string }{{"--dir", c.dir},
		{"--podresources", c.podResources}, {"--kubeconfig", c.kubeconfig}, {"--node", c.node},
		{"--lost-file", c.lostFile}} {
		if f.value == "" {
			return c, fmt.Errorf("%s is required", f.name)
		}
	}
	if c.gpus < 1 || c.pods < 0 || timeout < 1 {
		return c, errors.New("--gpus must be at least 1, --pods at least 0, --timeout at least 1")
	}
	c.timeout = time.Duration(timeout) * time.Second
	// Absolute paths: the gRPC unix target needs one, and the plugin's
	// endpoint is resolved relative to --dir.
	var err error
	if c.dir, err = filepath.Abs(c.dir); err != nil {
		return c, err
	}
	if c.podResources, err = filepath.Abs(c.podResources); err != nil {
		return c, err
	}
	return c, nil
}

// peer holds what the fake kubelet knows between the steps.
type peer struct {
	cfg      config
	reg      *registrar
	podres   *podResourcesServer
	podresGS *grpc.Server

	// The plugin as registered last.
	endpoint string
	conn     *grpc.ClientConn
	plugin   pluginapi.DevicePluginClient
	watch    *deviceWatch

	lostIndex int    // the GPU index written to --lost-file
	lostUUID  string // the GPU that turned Unhealthy for it
	lostDirty bool   // --lost-file holds an index that must be cleared on exit
}

func (p *peer) run(ctx context.Context) error {
	steps := []struct {
		name string
		fn   func(context.Context) (string, error)
	}{
		{"registration", p.stepRegister},
		{"options", p.stepOptions},
		{"list-and-watch", p.stepListAndWatch},
		{"health", p.stepHealth},
		{"pods", p.stepPods},
		{"unknown-device", p.stepUnknownDevice},
		{"kubelet-restart", p.stepKubeletRestart},
	}
	for i, s := range steps {
		note, err := s.fn(ctx)
		if err != nil {
			return fmt.Errorf("step %d %s: %w", i+1, s.name, err)
		}
		if note != "" {
			note = " (" + note + ")"
		}
		fmt.Printf("dppeer: step %d %s ok%s\n", i+1, s.name, note)
	}
	return nil
}

// close stops the servers and leaves the fake NVML reporting every GPU
// healthy, so a failed run does not leave a GPU lost for whatever runs next.
func (p *peer) close() {
	if p.lostDirty {
		_ = os.WriteFile(p.cfg.lostFile, nil, 0o644)
	}
	p.dropPlugin()
	if p.reg != nil {
		p.reg.stop()
	}
	if p.podresGS != nil {
		p.podresGS.Stop()
	}
}

// ---- step 1: registration ----

func (p *peer) stepRegister(ctx context.Context) (string, error) {
	for _, path := range []string{p.kubeletSocket(), p.cfg.podResources} {
		if len(path) > maxSocketPath {
			return "", fmt.Errorf("socket path %s is longer than %d bytes", path, maxSocketPath)
		}
	}
	gs, err := serveUnix(p.cfg.podResources, func(s *grpc.Server) {
		podresapi.RegisterPodResourcesListerServer(s, p.podres)
	})
	if err != nil {
		return "", fmt.Errorf("PodResources server: %w", err)
	}
	p.podresGS = gs
	if p.reg, err = startRegistrar(p.kubeletSocket()); err != nil {
		return "", err
	}
	req, err := p.reg.wait(ctx, registerWait)
	if err != nil {
		return "", err
	}
	if err := checkRegisterRequest(req); err != nil {
		return "", err
	}
	p.endpoint = req.Endpoint
	return "endpoint " + req.Endpoint, nil
}

func (p *peer) kubeletSocket() string { return filepath.Join(p.cfg.dir, "kubelet.sock") }

// checkRegisterRequest checks a Register call against the contract.
func checkRegisterRequest(r *pluginapi.RegisterRequest) error {
	if r.Version != pluginapi.Version {
		return fmt.Errorf("Register: version %q, want %q", r.Version, pluginapi.Version)
	}
	if r.ResourceName != resourceName {
		return fmt.Errorf("Register: resource_name %q, want %q", r.ResourceName, resourceName)
	}
	// The kubelet joins the endpoint to its own directory, so it must be a
	// bare file name.
	if r.Endpoint == "" || strings.Contains(r.Endpoint, "/") || r.Endpoint == "." ||
		r.Endpoint == ".." || r.Endpoint == "kubelet.sock" {
		return fmt.Errorf("Register: endpoint %q is not a bare socket file name", r.Endpoint)
	}
	o := r.Options
	if o == nil || !o.PreStartRequired || !o.GetPreferredAllocationAvailable {
		return fmt.Errorf("Register: options %s, want pre_start_required and "+
			"get_preferred_allocation_available both true", optionsString(o))
	}
	return nil
}

// registrar is the kubelet's Registration service on DIR/kubelet.sock.
type registrar struct {
	pluginapi.UnimplementedRegistrationServer
	server   *grpc.Server
	path     string
	requests chan *pluginapi.RegisterRequest
}

func startRegistrar(path string) (*registrar, error) {
	r := &registrar{path: path, requests: make(chan *pluginapi.RegisterRequest, 16)}
	gs, err := serveUnix(path, func(s *grpc.Server) { pluginapi.RegisterRegistrationServer(s, r) })
	if err != nil {
		return nil, fmt.Errorf("Registration server: %w", err)
	}
	r.server = gs
	return r, nil
}

// Register queues the request for the step that waits for it and answers at
// once, as the kubelet does (it dials the plugin afterwards).
func (r *registrar) Register(_ context.Context, req *pluginapi.RegisterRequest) (*pluginapi.Empty, error) {
	select {
	case r.requests <- req:
	default: // a plugin registering in a loop must not block here
	}
	return &pluginapi.Empty{}, nil
}

func (r *registrar) wait(ctx context.Context, bound time.Duration) (*pluginapi.RegisterRequest, error) {
	wctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	select {
	case req := <-r.requests:
		return req, nil
	case <-wctx.Done():
		return nil, fmt.Errorf("no Register call on %s %s", r.path, within(ctx, bound))
	}
}

// stop closes the server; closing the listener also unlinks the socket.
func (r *registrar) stop() {
	r.server.Stop()
	_ = removeIfExists(r.path)
}

// serveUnix serves a new gRPC server on a unix socket, replacing a stale
// socket file left by an earlier run.
func serveUnix(path string, register func(*grpc.Server)) (*grpc.Server, error) {
	if err := removeIfExists(path); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	s := grpc.NewServer()
	register(s)
	go func() { _ = s.Serve(lis) }()
	return s, nil
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// ---- step 2: options ----

func (p *peer) stepOptions(ctx context.Context) (string, error) {
	if err := p.dialPlugin(); err != nil {
		return "", err
	}
	return "", p.checkOptions(ctx)
}

func (p *peer) dialPlugin() error {
	path := filepath.Join(p.cfg.dir, p.endpoint)
	conn, err := grpc.NewClient("unix://"+path,
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("dial %s: %w", path, err)
	}
	p.conn = conn
	p.plugin = pluginapi.NewDevicePluginClient(conn)
	return nil
}

// dropPlugin closes the connection to the plugin, which also ends the
// ListAndWatch stream on it.
func (p *peer) dropPlugin() {
	if p.conn != nil {
		_ = p.conn.Close()
	}
	p.conn, p.plugin, p.watch = nil, nil, nil
}

func (p *peer) checkOptions(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, rpcWait)
	defer cancel()
	// WaitForReady: the plugin may register a moment before it accepts.
	o, err := p.plugin.GetDevicePluginOptions(ctx, &pluginapi.Empty{}, grpc.WaitForReady(true))
	if err != nil {
		return fmt.Errorf("GetDevicePluginOptions: %w", err)
	}
	if !o.PreStartRequired || !o.GetPreferredAllocationAvailable {
		return fmt.Errorf("GetDevicePluginOptions: %s, want pre_start_required and "+
			"get_preferred_allocation_available both true", optionsString(o))
	}
	return nil
}

// ---- step 3: ListAndWatch ----

func (p *peer) stepListAndWatch(ctx context.Context) (string, error) {
	w, err := p.startWatch(ctx)
	if err != nil {
		return "", err
	}
	first, err := w.first(ctx, rpcWait)
	if err != nil {
		return "", err
	}
	inv, err := checkInventory(first, p.cfg.gpus)
	if err != nil {
		return "", fmt.Errorf("first ListAndWatch message: %w", err)
	}
	if bad := inv.unhealthy(); len(bad) != 0 {
		return "", fmt.Errorf("first ListAndWatch message: GPUs %v are not Healthy", bad)
	}
	return fmt.Sprintf("%d devices on GPUs %s", len(first), strings.Join(inv.uuids, ",")), nil
}

// startWatch opens ListAndWatch on the current connection and keeps reading
// it in the background, as the kubelet does for the plugin's whole life.
func (p *peer) startWatch(ctx context.Context) (*deviceWatch, error) {
	stream, err := p.plugin.ListAndWatch(ctx, &pluginapi.Empty{}, grpc.WaitForReady(true))
	if err != nil {
		return nil, fmt.Errorf("ListAndWatch: %w", err)
	}
	w := &deviceWatch{changed: make(chan struct{})}
	go w.run(stream)
	p.watch = w
	return w, nil
}

// deviceWatch keeps the latest ListAndWatch message (each one is the full
// device list) for the steps to wait on.
type deviceWatch struct {
	mu       sync.Mutex
	firstMsg []*pluginapi.Device
	latest   []*pluginapi.Device
	count    int           // messages received
	err      error         // why the stream ended, once it has
	changed  chan struct{} // closed, and replaced, on every message or end
}

func (w *deviceWatch) run(stream grpc.ServerStreamingClient[pluginapi.ListAndWatchResponse]) {
	for {
		resp, err := stream.Recv()
		w.mu.Lock()
		if err != nil {
			w.err = err
		} else {
			if w.count == 0 {
				w.firstMsg = resp.Devices
			}
			w.latest = resp.Devices
			w.count++
		}
		close(w.changed)
		w.changed = make(chan struct{})
		w.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func (w *deviceWatch) snapshot() (latest, first []*pluginapi.Device, count int, err error, changed chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.latest, w.firstMsg, w.count, w.err, w.changed
}

// first waits for the stream's first message.
func (w *deviceWatch) first(ctx context.Context, bound time.Duration) ([]*pluginapi.Device, error) {
	wctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	for {
		_, first, count, err, changed := w.snapshot()
		if count > 0 {
			return first, nil
		}
		if err != nil {
			return nil, fmt.Errorf("ListAndWatch ended before its first message: %w", err)
		}
		select {
		case <-changed:
		case <-wctx.Done():
			return nil, fmt.Errorf("no ListAndWatch message %s", within(ctx, bound))
		}
	}
}

// until waits for a message that passes check and returns that message; on
// timeout the error says why the latest message did not pass.
func (w *deviceWatch) until(ctx context.Context, bound time.Duration,
	check func([]*pluginapi.Device) error) ([]*pluginapi.Device, error) {
	wctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	why := errors.New("no ListAndWatch message yet")
	for {
		latest, _, count, err, changed := w.snapshot()
		if count > 0 {
			if why = check(latest); why == nil {
				return latest, nil
			}
		}
		if err != nil {
			return nil, fmt.Errorf("ListAndWatch ended (%v); the latest message: %w", err, why)
		}
		select {
		case <-changed:
		case <-wctx.Done():
			return nil, fmt.Errorf("not %s; the latest ListAndWatch message: %w", within(ctx, bound), why)
		}
	}
}

// inventory is a device list checked against the contract.
type inventory struct {
	uuids  []string          // the GPUs, sorted
	health map[string]string // GPU UUID -> the health all its slots share
}

func (inv inventory) unhealthy() []string {
	var bad []string
	for _, u := range inv.uuids {
		if inv.health[u] != pluginapi.Healthy {
			bad = append(bad, u)
		}
	}
	return bad
}

// checkInventory checks that a device list is gpus GPUs of 16 slots each,
// "<UUID>::<k>" for k = 0..15, with one NUMA node each, and that the slots
// of a GPU share its health.
func checkInventory(devs []*pluginapi.Device, gpus int) (inventory, error) {
	inv := inventory{health: map[string]string{}}
	if len(devs) != gpus*slotsPerGPU {
		return inv, fmt.Errorf("%d devices, want %d (%d GPUs x %d)", len(devs), gpus*slotsPerGPU,
			gpus, slotsPerGPU)
	}
	slots := map[string]map[int]bool{}
	for _, d := range devs {
		uuid, k, err := parseDeviceID(d.ID)
		if err != nil {
			return inv, err
		}
		if slots[uuid] == nil {
			slots[uuid] = map[int]bool{}
			inv.health[uuid] = d.Health
		}
		if slots[uuid][k] {
			return inv, fmt.Errorf("device %q listed twice", d.ID)
		}
		slots[uuid][k] = true
		if d.Health != pluginapi.Healthy && d.Health != pluginapi.Unhealthy {
			return inv, fmt.Errorf("device %q: health %q", d.ID, d.Health)
		}
		if d.Health != inv.health[uuid] {
			return inv, fmt.Errorf("GPU %s: its slots differ in health (%q is %s, another %s)",
				uuid, d.ID, d.Health, inv.health[uuid])
		}
		if d.Topology == nil || len(d.Topology.Nodes) != 1 {
			return inv, fmt.Errorf("device %q: topology %v, want one NUMA node", d.ID, d.Topology)
		}
	}
	if len(slots) != gpus {
		return inv, fmt.Errorf("%d distinct GPUs, want %d", len(slots), gpus)
	}
	for uuid, ks := range slots {
		if len(ks) != slotsPerGPU {
			return inv, fmt.Errorf("GPU %s has %d slots, want %d", uuid, len(ks), slotsPerGPU)
		}
		inv.uuids = append(inv.uuids, uuid)
	}
	sort.Strings(inv.uuids)
	return inv, nil
}

// parseDeviceID splits "<UUID>::<k>", k a canonical decimal from 0 to 15.
func parseDeviceID(id string) (uuid string, k int, err error) {
	uuid, ks, ok := strings.Cut(id, "::")
	if ok {
		k, err = strconv.Atoi(ks)
	}
	if !ok || uuid == "" || err != nil || k < 0 || k >= slotsPerGPU || strconv.Itoa(k) != ks {
		return "", 0, fmt.Errorf("device ID %q is not \"<GPU-UUID>::<0-%d>\"", id, slotsPerGPU-1)
	}
	return uuid, k, nil
}

func gpuOf(id string) string {
	uuid, _, _ := strings.Cut(id, "::")
	return uuid
}

// ---- step 4: health ----

func (p *peer) stepHealth(ctx context.Context) (string, error) {
	// Index 1 when there is one, so the check also catches a plugin that
	// only ever watches GPU 0.
	p.lostIndex = 1
	if p.cfg.gpus < 2 {
		p.lostIndex = 0
	}
	p.lostDirty = true
	if err := os.WriteFile(p.cfg.lostFile, []byte(fmt.Sprintf("%d\n", p.lostIndex)), 0o644); err != nil {
		return "", err
	}
	_, err := p.watch.until(ctx, healthWait, func(devs []*pluginapi.Device) error {
		inv, err := checkInventory(devs, p.cfg.gpus)
		if err != nil {
			return err
		}
		bad := inv.unhealthy()
		if len(bad) != 1 {
			return fmt.Errorf("%d GPUs Unhealthy (%v), want exactly one", len(bad), bad)
		}
		p.lostUUID = bad[0]
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("GPU index %d written to %s: %w", p.lostIndex, p.cfg.lostFile, err)
	}
	if err := os.WriteFile(p.cfg.lostFile, nil, 0o644); err != nil {
		return "", err
	}
	p.lostDirty = false
	_, err = p.watch.until(ctx, healthWait, func(devs []*pluginapi.Device) error {
		inv, err := checkInventory(devs, p.cfg.gpus)
		if err != nil {
			return err
		}
		if bad := inv.unhealthy(); len(bad) != 0 {
			return fmt.Errorf("GPUs %v still Unhealthy", bad)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("%s emptied: %w", p.cfg.lostFile, err)
	}
	return fmt.Sprintf("index %d lost and back: %s", p.lostIndex, p.lostUUID), nil
}

// ---- step 5: pods ----

// allocation is the flexpu.io/allocation annotation flexpu-scheduler writes
// at binding.
type allocation struct {
	GPUs []allocGPU `json:"gpus"`
}

type allocGPU struct {
	UUID   string `json:"uuid"`
	Index  int    `json:"index"`
	Cores  int    `json:"cores"`  // percent
	Memory int64  `json:"memory"` // bytes; 0: none
}

// boundPod is a pod as the fake kubelet admits it.
type boundPod struct {
	pod     *corev1.Pod
	alloc   allocation
	ids     []string // the device IDs GetPreferredAllocation chose
	confDir string   // the host directory Allocate mounted at /etc/flexpu
	keys    string   // the spelling of the slice.conf keys (see confValue)
}

func (b *boundPod) String() string { return b.pod.Namespace + "/" + b.pod.Name }

func (p *peer) stepPods(ctx context.Context) (string, error) {
	pods, err := p.waitForPods(ctx)
	if err != nil {
		return "", err
	}
	if err := p.checkLostIndex(pods); err != nil {
		return "", err
	}
	// The kubelet admits pods one at a time, so the preferred allocations
	// are asked serially, each from what is still free.
	allocated := map[string]bool{}
	for _, b := range pods {
		if err := p.prefer(ctx, b, allocated); err != nil {
			return "", fmt.Errorf("pod %s: %w", b, err)
		}
	}
	// Containers start concurrently: Allocate and PreStartContainer race.
	errs := p.startAll(ctx, pods)
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	if err := distinctConfDirs(pods); err != nil {
		return "", err
	}
	spellings := map[string]bool{}
	for _, b := range pods {
		spellings[b.keys] = true
	}
	return fmt.Sprintf("%d pods, %d PodResources calls, slice.conf keys %s", len(pods),
		p.podres.calls.Load(), strings.Join(keys(spellings), "+")), nil
}

// waitForPods waits until exactly --pods pods bound to --node carry an
// allocation, and returns them oldest first (then by name: creation times
// have a one-second grain).
func (p *peer) waitForPods(ctx context.Context) ([]*boundPod, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", p.cfg.kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	client, err := corev1client.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, podsWait)
	defer cancel()
	why := errors.New("no answer from the API server yet")
	for {
		pods, err := listBoundPods(wctx, client, p.cfg.node)
		switch {
		case err != nil:
			why = err
		case len(pods) > p.cfg.pods:
			return nil, fmt.Errorf("%d pods with %s are bound to %s, want %d", len(pods),
				annAllocation, p.cfg.node, p.cfg.pods)
		case len(pods) == p.cfg.pods:
			return parsePods(pods, p.cfg.gpus)
		default:
			why = fmt.Errorf("%d of %d pods with %s bound to %s so far", len(pods), p.cfg.pods,
				annAllocation, p.cfg.node)
		}
		select {
		case <-time.After(500 * time.Millisecond):
		case <-wctx.Done():
			return nil, fmt.Errorf("not %s: %w", within(ctx, podsWait), why)
		}
	}
}

func listBoundPods(ctx context.Context, c *corev1client.CoreV1Client, node string) ([]corev1.Pod, error) {
	list, err := c.Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		return nil, fmt.Errorf("list pods: %w", err)
	}
	var out []corev1.Pod
	for _, pod := range list.Items {
		if _, ok := pod.Annotations[annAllocation]; ok && pod.DeletionTimestamp == nil {
			out = append(out, pod)
		}
	}
	return out, nil
}

func parsePods(pods []corev1.Pod, gpus int) ([]*boundPod, error) {
	sort.SliceStable(pods, func(i, j int) bool {
		ti, tj := pods[i].CreationTimestamp.Time, pods[j].CreationTimestamp.Time
		if !ti.Equal(tj) {
			return ti.Before(tj)
		}
		if pods[i].Name != pods[j].Name {
			return pods[i].Name < pods[j].Name
		}
		return pods[i].Namespace < pods[j].Namespace
	})
	out := make([]*boundPod, 0, len(pods))
	for i := range pods {
		b := &boundPod{pod: &pods[i]}
		if err := parseAllocation(pods[i].Annotations[annAllocation], gpus, &b.alloc); err != nil {
			return nil, fmt.Errorf("pod %s: %w", b, err)
		}
		if len(pods[i].Spec.Containers) == 0 {
			return nil, fmt.Errorf("pod %s has no containers", b)
		}
		out = append(out, b)
	}
	return out, nil
}

func parseAllocation(text string, gpus int, a *allocation) error {
	if err := json.Unmarshal([]byte(text), a); err != nil {
		return fmt.Errorf("%s %q: %w", annAllocation, text, err)
	}
	if len(a.GPUs) == 0 || len(a.GPUs) > gpus {
		return fmt.Errorf("%s %q: %d GPUs, want 1 to %d", annAllocation, text, len(a.GPUs), gpus)
	}
	seen := map[string]bool{}
	for _, g := range a.GPUs {
		if g.UUID == "" || seen[g.UUID] || g.Index < 0 || g.Index >= gpus ||
			g.Cores < 0 || g.Cores > 100 || g.Memory < 0 {
			return fmt.Errorf("%s %q: bad or repeated GPU entry %+v", annAllocation, text, g)
		}
		seen[g.UUID] = true
	}
	return nil
}

// checkLostIndex checks that the GPU the fake NVML lost in step 4 is the one
// the scheduler calls by that index, when an allocation names it: the plugin
// and the scheduler must agree on what an index is.
func (p *peer) checkLostIndex(pods []*boundPod) error {
	for _, b := range pods {
		for _, g := range b.alloc.GPUs {
			if g.Index == p.lostIndex && g.UUID != p.lostUUID {
				return fmt.Errorf("pod %s: the allocation has GPU index %d = %s, but losing index "+
					"%d made %s Unhealthy", b, g.Index, g.UUID, p.lostIndex, p.lostUUID)
			}
		}
	}
	return nil
}

// prefer asks GetPreferredAllocation for one pod, from the healthy devices
// not yet allocated, and marks the answer allocated.
func (p *peer) prefer(ctx context.Context, b *boundPod, allocated map[string]bool) error {
	latest, _, _, _, _ := p.watch.snapshot()
	var available []string
	for _, d := range latest {
		if d.Health == pluginapi.Healthy && !allocated[d.ID] {
			available = append(available, d.ID)
		}
	}
	size := len(b.alloc.GPUs)
	ctx, cancel := context.WithTimeout(ctx, rpcWait)
	defer cancel()
	resp, err := p.plugin.GetPreferredAllocation(ctx, &pluginapi.PreferredAllocationRequest{
		ContainerRequests: []*pluginapi.ContainerPreferredAllocationRequest{{
			AvailableDeviceIDs: available,
			AllocationSize:     int32(size),
		}},
	})
	if err != nil {
		return fmt.Errorf("GetPreferredAllocation: %w", err)
	}
	if len(resp.ContainerResponses) != 1 {
		return fmt.Errorf("GetPreferredAllocation: %d container responses, want 1",
			len(resp.ContainerResponses))
	}
	ids := resp.ContainerResponses[0].DeviceIDs
	if err := checkPreferred(ids, size, available, b.alloc); err != nil {
		return fmt.Errorf("GetPreferredAllocation answered %v: %w", ids, err)
	}
	for _, id := range ids {
		allocated[id] = true
	}
	b.ids = ids
	return nil
}

// checkPreferred checks a preferred allocation: size IDs from available, on
// size distinct GPUs, which are the GPUs of the pod's allocation.
func checkPreferred(ids []string, size int, available []string, a allocation) error {
	if len(ids) != size {
		return fmt.Errorf("%d IDs, want %d", len(ids), size)
	}
	free := map[string]bool{}
	for _, id := range available {
		free[id] = true
	}
	got := map[string]bool{}
	for _, id := range ids {
		if !free[id] {
			return fmt.Errorf("%q was not offered as available", id)
		}
		if got[gpuOf(id)] {
			return fmt.Errorf("two IDs on GPU %s", gpuOf(id))
		}
		got[gpuOf(id)] = true
	}
	want := map[string]bool{}
	for _, g := range a.GPUs {
		want[g.UUID] = true
	}
	if !sameSet(got, want) {
		return fmt.Errorf("GPUs %v, but the allocation names %v", keys(got), keys(want))
	}
	return nil
}

// startAll runs Allocate, then PreStartContainer, for every pod at once:
// the goroutines wait on a barrier so the calls really overlap.
func (p *peer) startAll(ctx context.Context, pods []*boundPod) []error {
	errs := make([]error, len(pods))
	barrier := make(chan struct{})
	var wg sync.WaitGroup
	for i, b := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-barrier
			if err := p.startPod(ctx, b); err != nil {
				errs[i] = fmt.Errorf("pod %s: %w", b, err)
			}
		}()
	}
	close(barrier)
	wg.Wait()
	return errs
}

// startPod is what the kubelet does for one container: Allocate at
// admission, recorded in the PodResources API, then PreStartContainer just
// before the container starts.
func (p *peer) startPod(ctx context.Context, b *boundPod) error {
	actx, cancel := context.WithTimeout(ctx, allocateWait)
	defer cancel()
	resp, err := p.plugin.Allocate(actx, &pluginapi.AllocateRequest{
		ContainerRequests: []*pluginapi.ContainerAllocateRequest{{DevicesIds: b.ids}},
	})
	if err != nil {
		return fmt.Errorf("Allocate %v: %w", b.ids, err)
	}
	p.podres.add(b.pod, b.ids)
	if b.confDir, err = checkAllocateResponse(resp, b.alloc); err != nil {
		return fmt.Errorf("Allocate %v: %w", b.ids, err)
	}
	pctx, cancel2 := context.WithTimeout(ctx, allocateWait)
	defer cancel2()
	if _, err := p.plugin.PreStartContainer(pctx,
		&pluginapi.PreStartContainerRequest{DevicesIds: b.ids}); err != nil {
		return fmt.Errorf("PreStartContainer %v: %w", b.ids, err)
	}
	conf := filepath.Join(b.confDir, sliceConfName)
	if b.keys, err = checkSliceConf(conf, string(b.pod.UID), b.alloc); err != nil {
		return fmt.Errorf("after PreStartContainer: %s: %w", conf, err)
	}
	return nil
}

// checkAllocateResponse checks one container's devices, mounts and
// environment, and returns the host directory mounted at /etc/flexpu.
func checkAllocateResponse(resp *pluginapi.AllocateResponse, a allocation) (string, error) {
	if len(resp.ContainerResponses) != 1 {
		return "", fmt.Errorf("%d container responses, want 1", len(resp.ContainerResponses))
	}
	c := resp.ContainerResponses[0]
	if err := checkDevices(c.Devices, a); err != nil {
		return "", err
	}
	confDir, err := checkMounts(c.Mounts)
	if err != nil {
		return "", err
	}
	return confDir, checkEnvs(c.Envs, a)
}

var gpuNode = regexp.MustCompile(`^/dev/nvidia[0-9]+$`)

func checkDevices(devs []*pluginapi.DeviceSpec, a allocation) error {
	got := map[string]bool{}
	gpus := map[string]bool{}
	for _, d := range devs {
		if d.HostPath == "" {
			return fmt.Errorf("device %s has no host_path", d.ContainerPath)
		}
		got[d.ContainerPath] = true
		if gpuNode.MatchString(d.ContainerPath) {
			gpus[d.ContainerPath] = true
		}
	}
	for _, want := range wantControlDevices {
		if !got[want] {
			return fmt.Errorf("no device %s", want)
		}
	}
	want := map[string]bool{}
	for _, g := range a.GPUs {
		want[fmt.Sprintf("/dev/nvidia%d", g.Index)] = true
	}
	if !sameSet(gpus, want) {
		return fmt.Errorf("GPU devices %v, want %v", keys(gpus), keys(want))
	}
	return nil
}

func checkMounts(mounts []*pluginapi.Mount) (string, error) {
	byPath := map[string]*pluginapi.Mount{}
	for _, m := range mounts {
		byPath[m.ContainerPath] = m
	}
	for _, w := range wantMounts {
		m := byPath[w.path]
		switch {
		case m == nil:
			return "", fmt.Errorf("no mount at %s", w.path)
		case !filepath.IsAbs(m.HostPath):
			return "", fmt.Errorf("mount at %s: host_path %q is not absolute", w.path, m.HostPath)
		case m.ReadOnly != w.readOnly:
			return "", fmt.Errorf("mount at %s: read_only %v, want %v", w.path, m.ReadOnly, w.readOnly)
		}
	}
	for _, f := range forbiddenMounts {
		if m := byPath[f]; m != nil {
			return "", fmt.Errorf("mount at %s (host %s): the shared state directory is mounted into the slice", f, m.HostPath)
		}
	}
	return byPath[confMountPath].HostPath, nil
}

func checkEnvs(envs map[string]string, a allocation) error {
	if envs["FLEXPU_ALLOCATION"] == "" {
		return errors.New("FLEXPU_ALLOCATION is not set")
	}
	visible, ok := envs["NVIDIA_VISIBLE_DEVICES"]
	got := map[string]bool{}
	for _, u := range strings.Split(visible, ",") {
		if got[u] {
			return fmt.Errorf("NVIDIA_VISIBLE_DEVICES %q repeats %s", visible, u)
		}
		got[u] = true
	}
	want := map[string]bool{}
	for _, g := range a.GPUs {
		want[g.UUID] = true
	}
	if !ok || !sameSet(got, want) {
		return fmt.Errorf("NVIDIA_VISIBLE_DEVICES %q, want the UUIDs %v", visible, keys(want))
	}
	return nil
}

// checkSliceConf checks the slice configuration the plugin wrote for a pod
// and returns the spelling of its keys.
func checkSliceConf(path, podUID string, a allocation) (string, error) {
	conf, err := readSliceConf(path)
	if err != nil {
		return "", err
	}
	tenant, spelling, err := confValue(conf, "tenant")
	if err != nil {
		return "", err
	}
	if tenant != podUID {
		return "", fmt.Errorf("tenant = %q, want the pod UID %q", tenant, podUID)
	}
	share, _, err := confValue(conf, "compute_share")
	if err != nil {
		return "", err
	}
	if err := checkShare(share, a); err != nil {
		return "", err
	}
	// The scheduler gives every GPU of a pod the same memory (the pod's
	// request), so the first entry speaks for all.
	want := a.GPUs[0].Memory
	mem, _, err := confValue(conf, "memory_limit")
	switch {
	case want == 0 && err == nil:
		return "", fmt.Errorf("memory_limit = %q, but the allocation has no memory", mem)
	case want != 0 && err != nil:
		return "", err
	case want != 0 && mem != strconv.FormatInt(want, 10):
		return "", fmt.Errorf("memory_limit = %q, want %d (bytes)", mem, want)
	}
	return spelling, nil
}

// confValue looks a setting up by the key flexpu's runtime reads from
// /etc/flexpu/slice.conf (src/runtime/config.c rejects any other spelling and
// then refuses CUDA, so an environment-style FLEXPU_* key is an error here).
func confValue(conf map[string]string, key string) (value, spelling string, err error) {
	if v, ok := conf[key]; ok {
		return v, "runtime", nil
	}
	if _, ok := conf["FLEXPU_"+strings.ToUpper(key)]; ok {
		return "", "", fmt.Errorf("slice.conf spells %s as FLEXPU_%s, which the runtime rejects", key, strings.ToUpper(key))
	}
	return "", "", fmt.Errorf("slice.conf has no %s", key)
}

// checkShare checks compute_share against the allocation's cores. The file
// holds one share while the scheduler places cores per GPU (they can differ
// in a multi-GPU allocation); the contract does not say which one the file
// then holds, so any of them passes.
func checkShare(got string, a allocation) error {
	var want []string
	for _, g := range a.GPUs {
		want = append(want, strconv.Itoa(g.Cores))
	}
	for _, w := range want {
		if got == w {
			return nil
		}
	}
	return fmt.Errorf("compute_share = %q, want the allocation's cores %s", got,
		strings.Join(want, " or "))
}

// readSliceConf reads `KEY = value` lines; '#' starts a comment.
func readSliceConf(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	conf := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" {
			return nil, fmt.Errorf("line %d: %q is not `KEY = value`", n, sc.Text())
		}
		if _, dup := conf[k]; dup {
			return nil, fmt.Errorf("line %d: %s appears twice", n, k)
		}
		conf[k] = v
	}
	return conf, sc.Err()
}

// distinctConfDirs checks that no two pods share the directory behind
// /etc/flexpu: each one's slice.conf names its own tenant.
func distinctConfDirs(pods []*boundPod) error {
	owner := map[string]*boundPod{}
	for _, b := range pods {
		dir := filepath.Clean(b.confDir)
		if o := owner[dir]; o != nil {
			return fmt.Errorf("pods %s and %s share the %s host directory %s", o, b, confMountPath, dir)
		}
		owner[dir] = b
	}
	return nil
}

// podResourcesServer is the kubelet's PodResources API over the pods the
// peer has allocated so far.
type podResourcesServer struct {
	podresapi.UnimplementedPodResourcesListerServer
	mu    sync.Mutex
	pods  map[string]*podresapi.PodResources // by namespace/name; never changed once added
	calls atomic.Int64
}

func newPodResourcesServer() *podResourcesServer {
	return &podResourcesServer{pods: map[string]*podresapi.PodResources{}}
}

// add records a pod's devices as the kubelet lists them: an entry per device
// (pkg/kubelet/cm/container_manager.go, containerDevicesFromResourceDeviceInstances),
// not one entry holding all of a container's IDs.
func (s *podResourcesServer) add(pod *corev1.Pod, ids []string) {
	var devs []*podresapi.ContainerDevices
	for _, id := range ids {
		devs = append(devs, &podresapi.ContainerDevices{ResourceName: resourceName, DeviceIds: []string{id}})
	}
	r := &podresapi.PodResources{
		Name:      pod.Name,
		Namespace: pod.Namespace,
		Containers: []*podresapi.ContainerResources{{
			Name:    pod.Spec.Containers[0].Name,
			Devices: devs,
		}},
	}
	s.mu.Lock()
	s.pods[pod.Namespace+"/"+pod.Name] = r
	s.mu.Unlock()
}

func (s *podResourcesServer) List(context.Context, *podresapi.ListPodResourcesRequest) (*podresapi.ListPodResourcesResponse, error) {
	s.calls.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := &podresapi.ListPodResourcesResponse{}
	for _, k := range keys(s.pods) {
		resp.PodResources = append(resp.PodResources, s.pods[k])
	}
	return resp, nil
}

func (s *podResourcesServer) Get(_ context.Context, req *podresapi.GetPodResourcesRequest) (*podresapi.GetPodResourcesResponse, error) {
	s.calls.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.pods[req.PodNamespace+"/"+req.PodName]
	if r == nil {
		// The kubelet's answer for a pod it does not know.
		return nil, status.Errorf(codes.NotFound, "pod %s in namespace %s not found",
			req.PodName, req.PodNamespace)
	}
	return &podresapi.GetPodResourcesResponse{PodResources: r}, nil
}

func (s *podResourcesServer) GetAllocatableResources(context.Context, *podresapi.AllocatableResourcesRequest) (*podresapi.AllocatableResourcesResponse, error) {
	s.calls.Add(1)
	return &podresapi.AllocatableResourcesResponse{}, nil
}

// ---- step 6: unknown device ----

func (p *peer) stepUnknownDevice(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, rpcWait)
	defer cancel()
	_, err := p.plugin.Allocate(ctx, &pluginapi.AllocateRequest{
		ContainerRequests: []*pluginapi.ContainerAllocateRequest{{DevicesIds: []string{bogusDeviceID}}},
	})
	st := status.Convert(err)
	switch {
	case err == nil:
		return "", fmt.Errorf("Allocate %q succeeded", bogusDeviceID)
	case !strings.Contains(st.Message(), bogusDeviceID):
		return "", fmt.Errorf("Allocate %q: the error %q does not name the device", bogusDeviceID,
			st.Message())
	}
	return st.Code().String(), nil
}

// ---- step 7: kubelet restart ----

// stepKubeletRestart does what a restarting kubelet does to the plugin
// directory: its connections drop, the plugin sockets go, and a new
// kubelet.sock appears. The plugin must register again.
func (p *peer) stepKubeletRestart(ctx context.Context) (string, error) {
	p.dropPlugin()
	p.reg.stop()
	if err := removeIfExists(filepath.Join(p.cfg.dir, p.endpoint)); err != nil {
		return "", err
	}
	var err error
	if p.reg, err = startRegistrar(p.kubeletSocket()); err != nil {
		return "", err
	}
	req, err := p.reg.wait(ctx, reregisterWait)
	if err != nil {
		return "", fmt.Errorf("after the restart: %w", err)
	}
	if err := checkRegisterRequest(req); err != nil {
		return "", fmt.Errorf("after the restart: %w", err)
	}
	p.endpoint = req.Endpoint
	if err := p.dialPlugin(); err != nil {
		return "", err
	}
	if err := p.checkOptions(ctx); err != nil {
		return "", fmt.Errorf("after the restart: %w", err)
	}
	// The kubelet opens ListAndWatch on the new endpoint at once.
	w, err := p.startWatch(ctx)
	if err != nil {
		return "", fmt.Errorf("after the restart: %w", err)
	}
	first, err := w.first(ctx, rpcWait)
	if err != nil {
		return "", fmt.Errorf("after the restart: %w", err)
	}
	if _, err := checkInventory(first, p.cfg.gpus); err != nil {
		return "", fmt.Errorf("after the restart: first ListAndWatch message: %w", err)
	}
	return "endpoint " + req.Endpoint, nil
}

// ---- small helpers ----

// within says which limit a wait bounded by bound under ctx ran into.
func within(ctx context.Context, bound time.Duration) string {
	if ctx.Err() != nil {
		return "before the overall --timeout ran out"
	}
	return fmt.Sprintf("within %v", bound)
}

// optionsString shows device-plugin options whatever the proto printer does.
func optionsString(o *pluginapi.DevicePluginOptions) string {
	if o == nil {
		return "none"
	}
	return fmt.Sprintf("pre_start_required=%v get_preferred_allocation_available=%v",
		o.PreStartRequired, o.GetPreferredAllocationAvailable)
}

func sameSet(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
