// SPDX-License-Identifier: Apache-2.0

// fakecri is a container runtime for a real kubelet in tests: it serves the
// CRI RuntimeService and ImageService on a unix socket and runs nothing.
//
// The services are the official fakes of k8s.io/cri-client/pkg/fake (over
// the in-memory FakeRuntimeService and FakeImageService of
// k8s.io/cri-api/pkg/apis/testing), so sandboxes and containers have the
// states the kubelet expects: created, running once started, exited once
// stopped. fakecri adds a record of what the kubelet asked for: one JSON line
// per call that creates, starts, stops or removes a container or sandbox,
// appended to --record. A CreateContainer line holds the container's devices,
// mounts, environment, annotations and labels, and the pod it belongs to;
// with --read-file-mounted-at PATH it also holds the content, at that
// moment, of the file the container would see at PATH/--read-file-name
// (flexpu's slice.conf: it shows whether the device plugin's
// PreStartContainer ran before the container was created).
//
// The state lives as long as the process, so a kubelet restarted against the
// same fakecri finds its containers running, as it would with containerd.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-client/pkg/fake"
)

// recorder appends JSON lines to a file, one write per line, so a reader
// never sees half a record.
type recorder struct {
	mu sync.Mutex
	f  *os.File
}

func (r *recorder) write(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		fmt.Fprintf(os.Stderr, "fakecri: record: %v\n", err)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := r.f.Write(append(b, '\n')); err != nil {
		fmt.Fprintf(os.Stderr, "fakecri: record: %v\n", err)
	}
}

// The record of one call.
type event struct {
	Time    string   `json:"time"` // RFC 3339 with nanoseconds
	Call    string   `json:"call"`
	ID      string   `json:"id,omitempty"` // container or sandbox ID
	Error   string   `json:"error,omitempty"`
	Pod     *pod     `json:"pod,omitempty"`
	Created *created `json:"create,omitempty"`
}

type pod struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	UID       string `json:"uid"`
}

type created struct {
	Container   string            `json:"container"`
	Attempt     uint32            `json:"attempt"`
	Image       string            `json:"image"`
	Devices     []device          `json:"devices"`
	Mounts      []mount           `json:"mounts"`
	Envs        map[string]string `json:"envs"`
	Annotations map[string]string `json:"annotations"`
	Labels      map[string]string `json:"labels"`
	// The content of the watched file, as the container would see it.
	File      *string `json:"file,omitempty"`
	FileError string  `json:"file_error,omitempty"`
}

type device struct {
	ContainerPath string `json:"container_path"`
	HostPath      string `json:"host_path"`
	Permissions   string `json:"permissions"`
}

type mount struct {
	ContainerPath string `json:"container_path"`
	HostPath      string `json:"host_path"`
	ReadOnly      bool   `json:"readonly"`
}

// runtime is the official fake with the record added; every method it does
// not define is the fake's.
type runtime struct {
	*fake.RemoteRuntime
	rec      *recorder
	fileDir  string // the container path of the mount that holds the file
	fileName string
}

func now() string { return time.Now().UTC().Format(time.RFC3339Nano) }

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func podOf(md *runtimeapi.PodSandboxMetadata) *pod {
	if md == nil {
		return nil
	}
	return &pod{Name: md.Name, Namespace: md.Namespace, UID: md.Uid}
}

func (r *runtime) RunPodSandbox(ctx context.Context, req *runtimeapi.RunPodSandboxRequest) (*runtimeapi.RunPodSandboxResponse, error) {
	resp, err := r.RemoteRuntime.RunPodSandbox(ctx, req)
	e := event{Time: now(), Call: "RunPodSandbox", Error: errString(err),
		Pod: podOf(req.GetConfig().GetMetadata())}
	if resp != nil {
		e.ID = resp.PodSandboxId
	}
	r.rec.write(e)
	return resp, err
}

func (r *runtime) StopPodSandbox(ctx context.Context, req *runtimeapi.StopPodSandboxRequest) (*runtimeapi.StopPodSandboxResponse, error) {
	resp, err := r.RemoteRuntime.StopPodSandbox(ctx, req)
	r.rec.write(event{Time: now(), Call: "StopPodSandbox", ID: req.PodSandboxId, Error: errString(err)})
	return resp, err
}

func (r *runtime) RemovePodSandbox(ctx context.Context, req *runtimeapi.RemovePodSandboxRequest) (*runtimeapi.RemovePodSandboxResponse, error) {
	resp, err := r.RemoteRuntime.RemovePodSandbox(ctx, req)
	r.rec.write(event{Time: now(), Call: "RemovePodSandbox", ID: req.PodSandboxId, Error: errString(err)})
	return resp, err
}

func (r *runtime) CreateContainer(ctx context.Context, req *runtimeapi.CreateContainerRequest) (*runtimeapi.CreateContainerResponse, error) {
	c := req.GetConfig()
	rec := &created{
		Container:   c.GetMetadata().GetName(),
		Attempt:     c.GetMetadata().GetAttempt(),
		Image:       c.GetImage().GetImage(),
		Devices:     []device{},
		Mounts:      []mount{},
		Envs:        map[string]string{},
		Annotations: c.GetAnnotations(),
		Labels:      c.GetLabels(),
	}
	for _, d := range c.GetDevices() {
		rec.Devices = append(rec.Devices, device{d.ContainerPath, d.HostPath, d.Permissions})
	}
	for _, m := range c.GetMounts() {
		rec.Mounts = append(rec.Mounts, mount{m.ContainerPath, m.HostPath, m.Readonly})
		if r.fileDir != "" && filepath.Clean(m.ContainerPath) == r.fileDir {
			b, err := os.ReadFile(filepath.Join(m.HostPath, r.fileName))
			if err != nil {
				rec.FileError = err.Error()
			} else {
				s := string(b)
				rec.File = &s
			}
		}
	}
	for _, kv := range c.GetEnvs() {
		rec.Envs[kv.Key] = string(kv.Value)
	}
	sort.Slice(rec.Mounts, func(i, j int) bool { return rec.Mounts[i].ContainerPath < rec.Mounts[j].ContainerPath })
	resp, err := r.RemoteRuntime.CreateContainer(ctx, req)
	e := event{Time: now(), Call: "CreateContainer", Error: errString(err),
		Pod: podOf(req.GetSandboxConfig().GetMetadata()), Created: rec}
	if resp != nil {
		e.ID = resp.ContainerId
	}
	r.rec.write(e)
	return resp, err
}

func (r *runtime) StartContainer(ctx context.Context, req *runtimeapi.StartContainerRequest) (*runtimeapi.StartContainerResponse, error) {
	resp, err := r.RemoteRuntime.StartContainer(ctx, req)
	r.rec.write(event{Time: now(), Call: "StartContainer", ID: req.ContainerId, Error: errString(err)})
	return resp, err
}

func (r *runtime) StopContainer(ctx context.Context, req *runtimeapi.StopContainerRequest) (*runtimeapi.StopContainerResponse, error) {
	resp, err := r.RemoteRuntime.StopContainer(ctx, req)
	r.rec.write(event{Time: now(), Call: "StopContainer", ID: req.ContainerId, Error: errString(err)})
	return resp, err
}

func (r *runtime) RemoveContainer(ctx context.Context, req *runtimeapi.RemoveContainerRequest) (*runtimeapi.RemoveContainerResponse, error) {
	resp, err := r.RemoteRuntime.RemoveContainer(ctx, req)
	r.rec.write(event{Time: now(), Call: "RemoveContainer", ID: req.ContainerId, Error: errString(err)})
	return resp, err
}

func main() {
	socket := flag.String("socket", "", "unix socket to serve the CRI on")
	record := flag.String("record", "", "file to append the JSON record of calls to")
	fileDir := flag.String("read-file-mounted-at", "", "container path of a mount whose file to record at CreateContainer")
	fileName := flag.String("read-file-name", "", "the file's name in that mount")
	flag.Parse()
	if *socket == "" || *record == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: fakecri --socket PATH --record FILE [--read-file-mounted-at DIR --read-file-name NAME]")
		os.Exit(2)
	}
	f, err := os.OpenFile(*record, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintf(os.Stderr, "fakecri: %v\n", err)
		os.Exit(1)
	}
	r := &runtime{RemoteRuntime: fake.NewFakeRemoteRuntime(), rec: &recorder{f: f},
		fileName: *fileName}
	if *fileDir != "" {
		r.fileDir = filepath.Clean(*fileDir)
	}
	// What fake.RemoteRuntime.Start sets, for our own server.
	r.RuntimeService.FakeStatus = &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{
		{Type: runtimeapi.RuntimeReady, Status: true},
		{Type: runtimeapi.NetworkReady, Status: true},
	}}
	// Every image "pulled" has a size: the kubelet refuses an image whose
	// status says 0 bytes as not really there.
	r.ImageService.FakeImageSize = 1 << 20
	// An image filesystem with room, so the kubelet's image GC and eviction
	// manager see no pressure.
	r.ImageService.FakeFilesystemUsage = []*runtimeapi.FilesystemUsage{{
		Timestamp:  time.Now().UnixNano(),
		FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: filepath.Dir(*socket)},
		UsedBytes:  &runtimeapi.UInt64Value{Value: 1 << 20},
		InodesUsed: &runtimeapi.UInt64Value{Value: 16},
	}}

	_ = os.Remove(*socket)
	lis, err := net.Listen("unix", *socket)
	if err != nil {
		fmt.Fprintf(os.Stderr, "fakecri: %v\n", err)
		os.Exit(1)
	}
	s := grpc.NewServer()
	runtimeapi.RegisterRuntimeServiceServer(s, r)
	runtimeapi.RegisterImageServiceServer(s, r)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		s.Stop()
	}()
	fmt.Printf("fakecri: serving on %s, recording to %s\n", *socket, *record)
	if err := s.Serve(lis); err != nil {
		fmt.Fprintf(os.Stderr, "fakecri: %v\n", err)
		os.Exit(1)
	}
	_ = os.Remove(*socket)
}
