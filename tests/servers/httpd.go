// The Go server of tests/servers/go.sh: what `http.ListenAndServe(":80", h)`
// does, plus one more net.Listen of an address the policy does not grant, to
// show from inside the program what a bind outside the policy gets.
//
// Usage: httpd-go LISTEN [FORBIDDEN]
//   LISTEN     the address for http.ListenAndServe, e.g. ":80"
//   FORBIDDEN  an address to try net.Listen on first; its outcome is printed as
//              "forbidden FORBIDDEN: errno N (text)" or "forbidden FORBIDDEN: bound"
package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"syscall"
)

func main() {
	if len(os.Args) < 2 || len(os.Args) > 3 {
		fmt.Fprintln(os.Stderr, "usage: httpd-go LISTEN [FORBIDDEN]")
		os.Exit(64)
	}
	if len(os.Args) == 3 {
		forbidden := os.Args[2]
		l, err := net.Listen("tcp", forbidden)
		var errno syscall.Errno
		switch {
		case err == nil:
			fmt.Printf("forbidden %s: bound\n", forbidden)
			l.Close()
		case errors.As(err, &errno):
			fmt.Printf("forbidden %s: errno %d (%v)\n", forbidden, int(errno), err)
		default:
			fmt.Printf("forbidden %s: error without errno (%v)\n", forbidden, err)
		}
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from go %s\n", r.Host)
	})
	fmt.Printf("serving %s\n", os.Args[1])
	err := http.ListenAndServe(os.Args[1], nil)
	fmt.Fprintf(os.Stderr, "httpd-go: %v\n", err)
	os.Exit(1)
}
