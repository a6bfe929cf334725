// hello-go: an unmodified Go program (GOOS=wasip1) run as an Atoll service
// through the kernel's WASI preview1 subset: fmt output, arguments and
// environment from system.toml, a timed sleep, and exit status 7.
package main

import (
	"fmt"
	"os"
	"strings"
	"time"
)

func main() {
	fmt.Printf("hello from Go %s: args %s\n", "wasip1", strings.Join(os.Args, " "))
	fmt.Printf("GREETING=%s\n", os.Getenv("GREETING"))
	start := time.Now()
	time.Sleep(20 * time.Millisecond)
	if time.Since(start) >= 20*time.Millisecond {
		fmt.Println("slept at least 20 ms")
	} else {
		fmt.Println("slept too little")
	}
	fmt.Fprintln(os.Stderr, "exiting with status 7")
	os.Exit(7)
}
