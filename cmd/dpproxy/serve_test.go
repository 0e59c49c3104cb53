package main

import (
	"runtime"
	"testing"
)

func TestTuneProcs(t *testing.T) {
	base := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(base)
	n := runtime.NumCPU()
	for _, tc := range []struct {
		env   string
		start int // Go's default
		want  int
	}{
		{env: "", start: n, want: n + 1},     // one P to spare for blocking system calls
		{env: "", start: n - 1, want: n - 1}, // under a CPU quota Go's choice stands
		{env: "1", start: n, want: n},        // the operator's setting stands
		{env: "garbage", start: n, want: n},  // left to Go (it ignores a bad value)
	} {
		if tc.start < 1 {
			continue // one CPU: no quota below it to mimic
		}
		runtime.GOMAXPROCS(tc.start)
		t.Setenv("GOMAXPROCS", tc.env)
		tuneProcs()
		if got := runtime.GOMAXPROCS(0); got != tc.want {
			t.Errorf("GOMAXPROCS=%q, default %d: got %d Ps, want %d", tc.env, tc.start, got, tc.want)
		}
	}
}
