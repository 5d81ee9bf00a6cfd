package node_test

import (
	"context"
	"fmt"
	"time"

	"github.com/dboutique/dboutique/node"
	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/ring"
)

// Two nodes on an in-memory network: the second joins through the first,
// and either answers for any bucket, forwarding to the bucket's primary.
func ExampleNode() {
	net := newMemNet()
	table, _ := ring.ParseRanges("a-m=first,n-z=second")
	start := func(name string, join ...string) *node.Node {
		n, err := node.New(node.Config{
			Name:      name,
			Transport: &memTransport{net: net, id: "id-" + name},
			Placement: table,
			Join:      join,
			Replicas:  1,
		})
		if err != nil {
			panic(err)
		}
		n.Start()
		return n
	}
	first := start("first")
	defer first.Close()
	second := start("second", "/mem/id-first")
	defer second.Close()
	// Poll, within a deadline, until each sees the other alive.
	for deadline := time.Now().Add(10 * time.Second); first.Epoch() != second.Epoch() || len(first.Members()) != 2; {
		if time.Now().After(deadline) {
			fmt.Println("the nodes did not find each other")
			return
		}
		time.Sleep(10 * time.Millisecond)
	}

	ctx := context.Background()
	for _, op := range []store.Op{
		{Kind: store.KindCreate, Bucket: "notes"},
		{Kind: store.KindPut, Bucket: "notes", Key: "monday", Value: "laundry"},
	} {
		if _, err := first.Execute(ctx, op); err != nil {
			fmt.Println(err)
			return
		}
	}
	res, err := second.Execute(ctx, store.Op{Kind: store.KindGet, Bucket: "notes", Key: "monday"})
	owners, _ := first.Owners("notes")
	fmt.Println(res.Value, err, owners[0].Name)
	// Output: laundry <nil> second
}
