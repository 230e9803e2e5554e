#!/usr/bin/env bash
# A Go 1.19 server (Debian 12's golang-go), tests/servers/httpd.go, built here:
# `http.ListenAndServe(":80", ...)` under `sockbroker run --`, after trying
# net.Listen(":81"), which is not in the policy and must fail with errno 13.
#
# Why the policy grants 0.0.0.0:80 and not [::]:80: before its first listen,
# Go probes IPv6 by binding [::1]:0 and [::ffff:127.0.0.1]:0 (net's
# ipStackCapabilities). Under supervised bind those binds match no policy
# socket and fail (audited as denials), so Go concludes the host has no
# IPv4-mapped IPv6 and listens on ":80" as AF_INET 0.0.0.0:80.
#
# Usage: go.sh SOCKBROKERD SOCKBROKER
source "$(dirname "$0")/lib.sh"
servers_init go "$@"
require_program /usr/bin/go golang-go

step "go build tests/servers/httpd.go"
mkdir "$work/go"
(
  cd "$servers_dir"
  # No module, no network, nothing written outside $work/go. cgo stays on (the
  # default): Go 1.19 ships its standard library compiled that way, so the
  # build takes half a second instead of six (gcc is in build-essential).
  HOME=$work/go GOCACHE=$work/go/cache GOPATH=$work/go/path GOFLAGS='' GO111MODULE=off GOPROXY=off \
    /usr/bin/go build -o "$work/bin/httpd-go" httpd.go
) >"$work/logs/go-build.log" 2>&1 || fail "go build failed"
rm -rf "$work/go"

printf '[socket.web]\nlisten = "0.0.0.0:80"\n\n[[socket.web.allow]]\nuser = 65534\n' | write_policy
start_broker

step "httpd-go :80, after trying :81"
serve -- "$work/bin/httpd-go" :80 :81
wait_http http://127.0.0.1:80/ "hello from go"
if supervised_only "Go's own report of EACCES for :81"; then
  expect_log "$server_log" "forbidden :81: errno 13 " "net.Listen of an address outside the policy must fail with EACCES"
fi
expect_audit grant 0.0.0.0 80
supervised_only "audit deny of 0.0.0.0:81" && expect_audit deny 0.0.0.0 81
stop_server TERM
pass
