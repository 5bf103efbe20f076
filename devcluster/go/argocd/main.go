// Command argocd-health computes Argo CD's health of Kubernetes objects with Argo CD's own code:
// its settings manager reads the resource customizations of an argocd-cm ConfigMap, and
// gitops-engine's health package runs their Lua in Argo CD's Lua VM (util/lua), as Argo CD's
// application controller does.
//
//	argocd-health test DIR
//
// runs every health_test.yaml under DIR, laid out as Argo CD's resource_customizations are
// (<group>/<Kind>/health.lua, health_test.yaml, testdata/), twice: as Argo CD's own test of its
// resource_customizations runs them (the Lua standard libraries open), and as the application
// controller runs a script from argocd-cm (closed: only base, table and a safe os). One JSON line
// per case; exit status 1 if any case does not give the expected health.
//
//	argocd-health eval -kubeconfig FILE -namespace NS
//
// reads objects as JSON on stdin (one, or a List as `kubectl get -o json` prints) and prints one
// JSON line per object with the health that the argocd-cm ConfigMap in namespace NS (labelled
// app.kubernetes.io/part-of=argocd, as Argo CD requires) gives it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/argoproj/argo-cd/v3/pkg/apis/application/v1alpha1"
	"github.com/argoproj/argo-cd/v3/util/lua"
	"github.com/argoproj/argo-cd/v3/util/settings"
	"github.com/argoproj/gitops-engine/pkg/health"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"
)

// healthTests is a health_test.yaml: the health each testdata object must get.
type healthTests struct {
	Tests []struct {
		InputPath    string              `json:"inputPath"`
		HealthStatus health.HealthStatus `json:"healthStatus"`
	} `json:"tests"`
}

type caseResult struct {
	Script   string `json:"script"`
	Input    string `json:"input"`
	Libs     string `json:"libs"`
	Want     string `json:"want"`
	Got      string `json:"got"`
	Passed   bool   `json:"passed"`
	Problem  string `json:"problem,omitempty"`
	Expected string `json:"expectedMessage"`
	Message  string `json:"message"`
}

type objectHealth struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	Message   string `json:"message"`
}

func readObject(path string) (*unstructured.Unstructured, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	object := map[string]any{}
	if err := yaml.Unmarshal(data, &object); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &unstructured.Unstructured{Object: object}, nil
}

// healthWithOpenLibs is how Argo CD's own test of resource_customizations runs a script.
func healthWithOpenLibs(object *unstructured.Unstructured, script string) (*health.HealthStatus, error) {
	return lua.VM{UseOpenLibs: true}.ExecuteHealthLua(object, script)
}

// healthAsConfigured is how the application controller runs a health script from argocd-cm:
// gitops-engine's GetResourceHealth with Argo CD's overrides, the script found by the object's
// group and kind, the standard libraries closed (useOpenLibs unset).
func healthAsConfigured(object *unstructured.Unstructured, script string) (*health.HealthStatus, error) {
	key := lua.GetConfigMapKey(object.GroupVersionKind())
	overrides := lua.ResourceHealthOverrides{key: v1alpha1.ResourceOverride{HealthLua: script}}
	return health.GetResourceHealth(object, overrides)
}

func runCase(dir, script, input string, want health.HealthStatus, libs string) caseResult {
	result := caseResult{Script: dir, Input: input, Libs: libs, Want: string(want.Status), Expected: want.Message}
	object, err := readObject(filepath.Join(dir, input))
	if err == nil {
		compute := healthAsConfigured
		if libs == "open" {
			compute = healthWithOpenLibs
		}
		var got *health.HealthStatus
		got, err = compute(object, script)
		if got != nil {
			result.Got, result.Message = string(got.Status), got.Message
		}
	}
	if err != nil {
		result.Problem = err.Error()
	}
	result.Passed = err == nil && result.Got == result.Want && result.Message == result.Expected
	return result
}

func testDir(root string, stdout io.Writer) (bool, error) {
	passed, found := true, 0
	encoder := json.NewEncoder(stdout)
	err := filepath.WalkDir(root, func(path string, entry fs.DirEntry, err error) error {
		if err != nil || entry.IsDir() || entry.Name() != "health.lua" {
			return err
		}
		dir := filepath.Dir(path)
		script, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(filepath.Join(dir, "health_test.yaml"))
		if err != nil {
			return err
		}
		var tests healthTests
		if err := yaml.Unmarshal(data, &tests); err != nil {
			return fmt.Errorf("%s: %w", filepath.Join(dir, "health_test.yaml"), err)
		}
		for _, test := range tests.Tests {
			for _, libs := range []string{"open", "closed"} {
				result := runCase(dir, string(script), test.InputPath, test.HealthStatus, libs)
				passed = passed && result.Passed
				found++
				if err := encoder.Encode(result); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err == nil && found == 0 {
		err = fmt.Errorf("no health.lua with tests under %s", root)
	}
	return passed, err
}

func objects(stdin io.Reader) ([]*unstructured.Unstructured, error) {
	data, err := io.ReadAll(stdin)
	if err != nil {
		return nil, err
	}
	input := map[string]any{}
	if err := utiljson.Unmarshal(data, &input); err != nil {
		return nil, fmt.Errorf("reading a JSON object from stdin: %w", err)
	}
	items, isList := input["items"].([]any)
	if !isList {
		return []*unstructured.Unstructured{{Object: input}}, nil
	}
	found := make([]*unstructured.Unstructured, 0, len(items))
	for _, item := range items {
		if object, ok := item.(map[string]any); ok {
			found = append(found, &unstructured.Unstructured{Object: object})
		}
	}
	return found, nil
}

func eval(kubeconfig, namespace string, stdin io.Reader, stdout io.Writer) error {
	config, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	clientset, err := kubernetes.NewForConfig(config)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	overrides, err := settings.NewSettingsManager(ctx, clientset, namespace).GetResourceOverrides()
	if err != nil {
		return fmt.Errorf("reading the resource customizations of argocd-cm in %s: %w", namespace, err)
	}
	found, err := objects(stdin)
	if err != nil {
		return err
	}
	encoder := json.NewEncoder(stdout)
	for _, object := range found {
		got, err := health.GetResourceHealth(object, lua.ResourceHealthOverrides(overrides))
		if err != nil {
			return err
		}
		line := objectHealth{Kind: object.GetKind(), Namespace: object.GetNamespace(), Name: object.GetName()}
		if got != nil {
			line.Status, line.Message = string(got.Status), got.Message
		}
		if err := encoder.Encode(line); err != nil {
			return err
		}
	}
	return nil
}

func run(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 2 && args[0] == "test" {
		passed, err := testDir(args[1], stdout)
		if err == nil && !passed {
			err = errors.New("some health checks did not give the expected health")
		}
		return err
	}
	if len(args) > 0 && args[0] == "eval" {
		flags := flag.NewFlagSet("eval", flag.ContinueOnError)
		kubeconfig := flags.String("kubeconfig", "", "the kubeconfig of the cluster that holds argocd-cm")
		namespace := flags.String("namespace", "", "the namespace of argocd-cm")
		if err := flags.Parse(args[1:]); err != nil {
			return err
		}
		if *kubeconfig == "" || *namespace == "" {
			return errors.New("eval needs -kubeconfig and -namespace")
		}
		return eval(*kubeconfig, *namespace, stdin, stdout)
	}
	return errors.New("usage: argocd-health test DIR | argocd-health eval -kubeconfig FILE -namespace NS")
}

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "argocd-health:", err)
		os.Exit(1)
	}
}
