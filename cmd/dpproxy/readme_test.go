package main

import (
	"os"
	"strings"
	"testing"

	"github.com/dpproxy/dpproxy/pgerror"
)

// TestReadmeErrorTable keeps the README's refusal table in sync with the
// catalogue it is generated from.
func TestReadmeErrorTable(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range pgerror.Catalogue {
		row := "| " + r.ID + " | " + r.Code + " | " + r.Summary + " |"
		if !strings.Contains(string(readme), row) {
			t.Errorf("README lacks the row for %s; regenerate it with `dpproxy errors --markdown`", r.ID)
		}
	}
}
