package store_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/dboutique/dboutique/node/store"
)

func ExampleStore() {
	s := store.NewStore()
	if err := s.Create("fruit"); err != nil {
		fmt.Println(err)
		return
	}
	_ = s.Put("fruit", "pear", "3")
	_ = s.Put("fruit", "apple", "5")

	v, err := s.Get("fruit", "apple")
	fmt.Println(v, err)

	_, err = s.Get("fruit", "plum")
	fmt.Println(errors.Is(err, store.ErrKeyNotFound))

	_, err = s.Get("veg", "leek")
	fmt.Println(errors.Is(err, store.ErrBucketNotFound))

	keys, _ := s.Keys("fruit")
	fmt.Println(keys)
	// Output:
	// 5 <nil>
	// true
	// true
	// [apple pear]
}

func ExampleStore_Execute() {
	s := store.NewStore()
	ctx := context.Background()
	for _, op := range []store.Op{
		{Kind: store.KindCreate, Bucket: "fruit"},
		{Kind: store.KindPut, Bucket: "fruit", Key: "apple", Value: "5"},
	} {
		if _, err := s.Execute(ctx, op); err != nil {
			fmt.Println(err)
		}
	}
	res, err := s.Execute(ctx, store.Op{Kind: store.KindGet, Bucket: "fruit", Key: "apple"})
	fmt.Printf("%q %v\n", res.Value, err)

	_, err = s.Execute(ctx, store.Op{Kind: store.KindGet, Key: "apple"})
	fmt.Println(err)
	// Output:
	// "5" <nil>
	// store: invalid operation: GET needs a bucket name
}

func ExampleOp_AppendBinary() {
	op := store.Op{Kind: store.KindPut, Bucket: "fruit", Key: "apple", Value: "5"}
	b, err := op.AppendBinary(nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("% x\n", b)

	got, err := store.DecodeOp(b)
	fmt.Println(got.Kind, got.Bucket, got.Key, got.Value, err)
	fmt.Println(got == op)

	_, err = store.DecodeOp(b[:len(b)-1])
	fmt.Println(err)
	// Output:
	// 02 05 66 72 75 69 74 05 61 70 70 6c 65 01 35
	// PUT fruit apple 5 <nil>
	// true
	// wire: corrupt encoding: length 1 exceeds the 0 bytes left
}
