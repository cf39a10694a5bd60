// SPDX-License-Identifier: Apache-2.0

// podresources asks a kubelet's PodResources API (the official
// podresources/v1 stubs) what it has given to pods, for tests: it prints the
// List answer as JSON, one object per pod with the devices of each
// container, and exits 1 when the socket does not answer within --timeout.
//
//	podresources --socket ROOT/pod-resources/kubelet.sock [--timeout 10]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	podresapi "k8s.io/kubelet/pkg/apis/podresources/v1"
)

type container struct {
	Name string `json:"name"`
	// Device IDs by resource name, sorted; the kubelet's answer splits them
	// over several entries (one per device and NUMA node), merged here.
	Devices map[string][]string `json:"devices"`
	// How many entries the kubelet sent for them.
	Entries int `json:"entries"`
}

type pod struct {
	Namespace  string      `json:"namespace"`
	Name       string      `json:"name"`
	Containers []container `json:"containers"`
}

func main() {
	socket := flag.String("socket", "", "the kubelet's PodResources socket")
	timeout := flag.Int("timeout", 10, "seconds to wait for the answer")
	flag.Parse()
	if *socket == "" || flag.NArg() != 0 || *timeout < 1 {
		fmt.Fprintln(os.Stderr, "usage: podresources --socket PATH [--timeout SECONDS]")
		os.Exit(2)
	}
	conn, err := grpc.NewClient("unix://"+*socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintf(os.Stderr, "podresources: %v\n", err)
		os.Exit(1)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(*timeout)*time.Second)
	defer cancel()
	resp, err := podresapi.NewPodResourcesListerClient(conn).List(ctx, &podresapi.ListPodResourcesRequest{},
		grpc.WaitForReady(true))
	if err != nil {
		fmt.Fprintf(os.Stderr, "podresources: List: %v\n", err)
		os.Exit(1)
	}
	out := []pod{}
	for _, pr := range resp.PodResources {
		p := pod{Namespace: pr.Namespace, Name: pr.Name, Containers: []container{}}
		for _, c := range pr.Containers {
			ct := container{Name: c.Name, Devices: map[string][]string{}}
			for _, d := range c.Devices {
				ct.Devices[d.ResourceName] = append(ct.Devices[d.ResourceName], d.DeviceIds...)
				ct.Entries++
			}
			for _, ids := range ct.Devices {
				sort.Strings(ids)
			}
			p.Containers = append(p.Containers, ct)
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Namespace+"/"+out[i].Name < out[j].Namespace+"/"+out[j].Name
	})
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(out); err != nil {
		fmt.Fprintf(os.Stderr, "podresources: %v\n", err)
		os.Exit(1)
	}
}
