// Package testcluster runs a D-Boutique cluster inside one test process, so
// that tests read like prose:
//
//	c := testcluster.New(t, 4, testcluster.WithRanges("a-g=a-g,h-n=h-n,o-u=o-u,v-z=v-z"))
//	c.Client(0).Create(ctx, "hello") // stored on h-n (and o-u), reached through a-g
//	c.Kill(1)                        // h-n crashes
//	c.WaitReplicated()               // o-u serves hello; v-z holds the second copy
//	c.Restart(1)                     // same name, same peer ID: h-n gets hello back
//	c.Partition([]int{0, 1}, []int{2, 3})
//	c.Heal()
//	c.Leave(3)                       // graceful: v-z hands its buckets off
//
// Every node is real: a libp2p host on loopback with the node-to-node
// request protocol, a node.Node, and a text server on a 127.0.0.1:0
// listener. Partition cuts the network with each host's connection gater
// and closes the connections across the cut, so faults are real too. Nodes join through bootstrap addresses, never mDNS. Every wait
// polls with a deadline (WaitTimeout). Cleanup stops every node and then
// checks that no goroutine outlived them.
package testcluster
