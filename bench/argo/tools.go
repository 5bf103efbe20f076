//go:build tools

// Package tools records the one command this module exists to build, so that `go mod tidy` keeps
// its dependencies in go.sum: `go build github.com/argoproj/argo-workflows/v3/cmd/workflow-controller`.
package tools

import _ "github.com/argoproj/argo-workflows/v3/cmd/workflow-controller"
