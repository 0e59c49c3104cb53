package pgerror

import (
	"errors"
	"fmt"
	"regexp"
	"testing"
)

func TestCodeWalksWrapChain(t *testing.T) {
	base := RefusePrivateColumn.New("column %q is private", "age")
	wrapped := fmt.Errorf("planning: %w", base)
	if got := Code(wrapped); got != CodeInsufficientPrivilege {
		t.Fatalf("Code(wrapped) = %q, want %q", got, CodeInsufficientPrivilege)
	}
	if got := Code(errors.New("plain")); got != CodeInternalError {
		t.Fatalf("Code(plain) = %q, want %q", got, CodeInternalError)
	}
	if pe := As(errors.New("upstream said: secret 42")); pe.Message == "upstream said: secret 42" {
		t.Fatal("As must not expose the text of unclassified errors")
	}
}

func TestCatalogueIsWellFormed(t *testing.T) {
	idRe := regexp.MustCompile(`^DP\d{3}$`)
	codeRe := regexp.MustCompile(`^[0-9A-Z]{5}$`)
	seen := map[string]bool{}
	for i, r := range Catalogue {
		if !idRe.MatchString(r.ID) {
			t.Errorf("entry %d: bad ID %q", i, r.ID)
		}
		if want := fmt.Sprintf("DP%03d", i+1); r.ID != want {
			t.Errorf("entry %d: ID %q out of order, want %q", i, r.ID, want)
		}
		if seen[r.ID] {
			t.Errorf("duplicate ID %q", r.ID)
		}
		seen[r.ID] = true
		if !codeRe.MatchString(r.Code) {
			t.Errorf("%s: bad SQLSTATE %q", r.ID, r.Code)
		}
		if r.Summary == "" {
			t.Errorf("%s: empty summary", r.ID)
		}
	}
}
