package policy

import (
	"errors"

	"github.com/goccy/go-yaml/token"
)

// tokenOf returns the position of a go-yaml error, or nil.
func tokenOf(err error) *token.Position {
	var te interface{ GetToken() *token.Token }
	if errors.As(err, &te) {
		if tk := te.GetToken(); tk != nil && tk.Position != nil {
			return tk.Position
		}
	}
	return nil
}
