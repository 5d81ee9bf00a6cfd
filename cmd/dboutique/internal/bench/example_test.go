package bench_test

import (
	"fmt"
	"os"

	"github.com/dboutique/dboutique/cmd/dboutique/internal/bench"
)

// Main is the whole command: it reads its flags, runs, reports and
// returns the exit code. A bad flag is refused before anything connects.
func ExampleMain() {
	code := bench.Main([]string{"--format=xml"}, os.Stdout, os.Stdout, nil)
	fmt.Println("exit code", code)
	// Output:
	// dboutique bench: --format "xml": want text or json
	// Run 'dboutique bench --help' for the flags.
	// exit code 2
}
