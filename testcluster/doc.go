// Package testcluster runs a D-Boutique cluster inside one test process, so
// that tests read like prose:
//
//	c := testcluster.New(t, 4, testcluster.WithRanges("a-g=a-g,h-n=h-n,o-u=o-u,v-z=v-z"))
//	c.Client(0).Create(ctx, "hello") // stored on h-n, reached through a-g
//	c.Kill(1)                        // h-n crashes
//	c.WaitConverged()                // the others have taken it out of the ring
//	c.Restart(1)                     // same name, same peer ID
//
// Every node is real: a libp2p host on loopback with the node-to-node
// request protocol, a node.Node, and a text server on a 127.0.0.1:0
// listener. Nodes join through bootstrap addresses, never mDNS. Every wait
// polls with a deadline (WaitTimeout). Cleanup stops every node and then
// checks that no goroutine outlived them.
package testcluster
