package deadline_test

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/dboutique/dboutique/p2p/deadline"
)

// A peer that stops reading holds a write for no longer than the Timeout.
func ExampleWriter() {
	client, server := net.Pipe() // nobody reads server
	defer server.Close()
	defer client.Close()
	bw := bufio.NewWriter(&deadline.Writer{W: client, Timeout: 50 * time.Millisecond})
	_, _ = bw.WriteString("PUT fruit apple red\r\n")
	err := bw.Flush()
	fmt.Println(errors.Is(err, os.ErrDeadlineExceeded))
	// Output: true
}
