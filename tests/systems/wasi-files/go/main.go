// WASI files from Go: an ordinary GOOS=wasip1 program using os.ReadFile,
// os.WriteFile, os.ReadDir, os.Rename and friends on its preopened
// directory, printing PASS/FAIL lines.
package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

var failures int

func check(ok bool, what string) {
	if ok {
		fmt.Println("PASS", what)
	} else {
		fmt.Println("FAIL", what)
		failures++
	}
}

func main() {
	check(os.MkdirAll("go/nested", 0o755) == nil, "MkdirAll go/nested")
	check(os.WriteFile("go/data.txt", []byte("written by Go\n"), 0o644) == nil, "WriteFile")
	data, err := os.ReadFile("go/data.txt")
	check(err == nil && string(data) == "written by Go\n", "ReadFile what was written")
	input, err := os.ReadFile("INPUT.TXT")
	check(err == nil && strings.HasPrefix(string(input), "made on the host"), "ReadFile the host's INPUT.TXT")
	check(os.Rename("go/data.txt", "go/nested/Renamed by Go.txt") == nil, "Rename across directories")
	entries, err := os.ReadDir("go/nested")
	names := []string{}
	for _, entry := range entries {
		names = append(names, entry.Name())
	}
	check(err == nil && len(names) == 1 && names[0] == "Renamed by Go.txt", fmt.Sprintf("ReadDir go/nested: %v", names))
	info, err := os.Stat("go/nested/Renamed by Go.txt")
	check(err == nil && info.Size() == 14 && !info.IsDir(), "Stat the renamed file")
	_, err = os.ReadFile("go/missing.txt")
	check(errors.Is(err, fs.ErrNotExist), "a missing file: ErrNotExist")
	check(os.Remove("go/nested") != nil, "Remove of a non-empty directory fails")
	check(os.WriteFile("go.done", []byte("done\n"), 0o644) == nil, "go.done written")
	fmt.Printf("go-files: %d failures\n", failures)
	if failures != 0 {
		os.Exit(1)
	}
}
