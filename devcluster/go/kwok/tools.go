//go:build tools

// Package tools pins the KWOK controller; build it with `go build sigs.k8s.io/kwok/cmd/kwok`.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
