// Command kstatus prints the status that sigs.k8s.io/cli-utils' kstatus library computes for
// Kubernetes objects: the library Flux, kpt and kubectl-style waiters decide readiness with.
//
// It reads one object, or a List of them (as `kubectl get -o json` prints), as JSON on stdin and
// writes one JSON line per object: {"kind", "namespace", "name", "status", "message"}, where status is
// one of InProgress, Current, Failed, Terminating. The tests feed it live objects.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	Message   string `json:"message"`
}

// objects returns the items of a List, or the object itself.
func objects(input map[string]any) []map[string]any {
	items, isList := input["items"].([]any)
	if !isList {
		return []map[string]any{input}
	}
	found := make([]map[string]any, 0, len(items))
	for _, item := range items {
		if object, ok := item.(map[string]any); ok {
			found = append(found, object)
		}
	}
	return found
}

func run(stdin io.Reader, stdout io.Writer) error {
	data, err := io.ReadAll(stdin)
	if err != nil {
		return fmt.Errorf("reading stdin: %w", err)
	}
	// Kubernetes' own JSON decoding: whole numbers become int64, as kstatus expects of
	// metadata.generation and status.observedGeneration.
	var input map[string]any
	if err := utiljson.Unmarshal(data, &input); err != nil {
		return fmt.Errorf("reading a JSON object from stdin: %w", err)
	}
	encoder := json.NewEncoder(stdout)
	for _, object := range objects(input) {
		u := &unstructured.Unstructured{Object: object}
		result, err := status.Compute(u)
		if err != nil {
			return fmt.Errorf("%s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
		line := verdict{u.GetKind(), u.GetNamespace(), u.GetName(), string(result.Status), result.Message}
		if err := encoder.Encode(line); err != nil {
			return err
		}
	}
	return nil
}

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
}
