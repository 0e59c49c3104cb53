package main

import (
	"runtime"
	"testing"
)

func TestTuneProcs(t *testing.T) {
	base := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(base)
	for _, tc := range []struct {
		env  string
		want int
	}{
		{env: "", want: base + 1},    // one P to spare for blocking system calls
		{env: "1", want: base},       // the operator's setting stands
		{env: "garbage", want: base}, // as Go reads it (it ignores a bad value)
	} {
		runtime.GOMAXPROCS(base)
		t.Setenv("GOMAXPROCS", tc.env)
		tuneProcs()
		if got := runtime.GOMAXPROCS(0); got != tc.want {
			t.Errorf("GOMAXPROCS=%q: got %d Ps, want %d", tc.env, got, tc.want)
		}
	}
}
