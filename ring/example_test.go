package ring_test

import (
	"errors"
	"fmt"

	"github.com/dboutique/dboutique/ring"
)

// A consistent-hash placement over three peers: Owners(bucket, 2) gives the
// bucket's first owner and the member that holds its second copy. The answer
// depends only on the members, not on their order.
func ExampleNewConsistent() {
	placement, err := ring.NewConsistent(ring.ConsistentConfig{}) // defaults
	if err != nil {
		panic(err)
	}
	fmt.Println(placement)

	r, err := placement.Place([]string{"peer-c", "peer-a", "peer-b"})
	if err != nil {
		panic(err)
	}
	fmt.Println(r.Members())
	owners, err := r.Owners("shopping", 2)
	if err != nil {
		panic(err)
	}
	fmt.Println(owners)

	empty, _ := placement.Place(nil)
	_, err = empty.Owners("shopping", 1)
	fmt.Println(errors.Is(err, ring.ErrNoOwner))
	// Output:
	// consistent(partitions=271,replication=20,load=1.25)
	// [peer-a peer-b peer-c]
	// [peer-b peer-c]
	// true
}

// The original D-Boutique's letter ranges. When node h-n is not a member,
// its buckets go to the node of the next range.
func ExampleParseRanges() {
	table, err := ring.ParseRanges("a-g=a-g, h-n=h-n, o-u=o-u, v-z=v-z")
	if err != nil {
		panic(err)
	}
	fmt.Println(table)
	fmt.Println(table.Names())

	all, _ := table.Place(table.Names())
	owners, _ := all.Owners("hello", 2)
	fmt.Println(owners)

	some, _ := table.Place([]string{"a-g", "o-u", "v-z"})
	owners, _ = some.Owners("hello", 2)
	fmt.Println(owners)

	_, err = some.Owners("Hello", 1)
	fmt.Println(err)
	// Output:
	// a-g=a-g,h-n=h-n,o-u=o-u,v-z=v-z
	// [a-g h-n o-u v-z]
	// [h-n o-u]
	// [o-u v-z]
	// ring: no node owns the bucket: bucket "Hello": no range covers its first byte
}
