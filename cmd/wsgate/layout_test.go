package main

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// TestLayout: the package arrows point down. Nothing under internal/
// imports an outer package of this module (gateway, backend, bench, cli,
// devcluster, scaler): internal packages are the leaves the rest is built on.
func TestLayout(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", "github.com/wsgate/wsgate/internal/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const mod = "github.com/wsgate/wsgate/"
	dec := json.NewDecoder(strings.NewReader(string(out)))
	n := 0
	for {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		n++
		for _, imp := range p.Imports {
			if strings.HasPrefix(imp, mod) && !strings.HasPrefix(imp, mod+"internal/") {
				t.Errorf("%s imports %s: internal packages must not import outer ones", p.ImportPath, imp)
			}
		}
	}
	if n < 5 {
		t.Fatalf("go list found %d internal packages", n)
	}
}
