// WASI sockets from Go: an ordinary GOOS=wasip1 program serving HTTP with
// net/http on the listening socket it is given as descriptor 3.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
)

func main() {
	listener, err := net.FileListener(os.NewFile(3, "listener"))
	if err != nil {
		fmt.Println("go-server: FileListener failed:", err)
		os.Exit(1)
	}
	fmt.Println("go-server: serving HTTP on descriptor 3")
	served := 0
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		served++
		fmt.Fprintf(w, "Hello from a Go net/http program (GOOS=wasip1) on Atoll: request %d for %s\n", served, r.URL.Path)
		fmt.Printf("go-server: answered request %d for %s\n", served, r.URL.Path)
	})
	err = http.Serve(listener, nil)
	fmt.Println("go-server: Serve ended:", err)
	os.Exit(1)
}
