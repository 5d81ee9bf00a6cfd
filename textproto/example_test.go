package textproto_test

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/textproto"
)

// A single node: a store served on a loopback port, used through the Go client.
func Example() {
	srv, err := textproto.NewServer(textproto.Config{Executor: store.NewStore()})
	if err != nil {
		panic(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	defer func() {
		srv.Shutdown(context.Background())
		<-served
	}()

	ctx := context.Background()
	c, err := textproto.Dial(ctx, l.Addr().String())
	if err != nil {
		panic(err)
	}
	defer c.Close()

	_, err = c.Get(ctx, "shopping", "eggs")
	fmt.Println(errors.Is(err, store.ErrBucketNotFound))
	c.Create(ctx, "shopping")
	c.Put(ctx, "shopping", "eggs", "3")
	v, _ := c.Get(ctx, "shopping", "eggs")
	fmt.Println(v)
	keys, _ := c.Keys(ctx, "shopping")
	fmt.Println(keys)
	// Output:
	// true
	// 3
	// [eggs]
}
