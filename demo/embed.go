package demo

import _ "embed"

// Policy is demo/policy.yaml, built into the binary so `dpproxy demo` works
// from any directory.
//
//go:embed policy.yaml
var Policy []byte
