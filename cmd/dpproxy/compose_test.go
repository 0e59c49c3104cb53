package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/dpproxy/dpproxy/policy"
)

// TestComposeConfig validates docker-compose.yml with `docker compose
// config -q` where the compose plugin exists, else with Debian's
// docker-compose (scripts/lib.sh installs it, so CI always validates).
// Neither validates against an engine: images are not pulled or built.
func TestComposeConfig(t *testing.T) {
	var cmd *exec.Cmd
	if docker, err := exec.LookPath("docker"); err == nil && exec.Command(docker, "compose", "version").Run() == nil {
		cmd = exec.Command(docker, "compose", "-f", "docker-compose.yml", "config", "-q")
	} else if dc, err := exec.LookPath("docker-compose"); err == nil {
		cmd = exec.Command(dc, "-f", "docker-compose.yml", "config", "-q")
	} else if os.Getenv("CI") != "" {
		t.Fatal("neither `docker compose` nor docker-compose is installed; scripts/lib.sh ensure_packages installs docker-compose")
	} else {
		t.Skip("no compose client (apt-get install docker-compose)")
	}
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
}

// TestComposePolicy: the policy docker-compose.yml mounts is valid and is
// the demo policy from `defaults:` on (analysts, budgets, tables), so the
// README's walkthrough gives the same answers on the compose stack.
func TestComposePolicy(t *testing.T) {
	demo, err := os.ReadFile("../../demo/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	deploy, err := os.ReadFile("../../deploy/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	env := policy.Env{Getenv: func(string) string { return "host=postgres dbname=demo" }, ReadFile: os.ReadFile}
	if _, err := policy.Parse("deploy/policy.yaml", deploy, env); err != nil {
		t.Fatal(err)
	}
	tail := func(b []byte) string {
		s := string(b)
		i := strings.Index(s, "\ndefaults:")
		if i < 0 {
			t.Fatal("no defaults section")
		}
		return s[i:]
	}
	if tail(demo) != tail(deploy) {
		t.Error("deploy/policy.yaml differs from demo/policy.yaml from `defaults:` on; copy the demo policy's sections over")
	}
	compose, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"./deploy/policy.yaml:/etc/dpproxy/policy.yaml", "--appendonly\", \"yes\"", "--appendfsync\", \"always\"", `["demo", "load"]`} {
		if !strings.Contains(string(compose), want) {
			t.Errorf("docker-compose.yml lacks %s", want)
		}
	}
}

// TestOneBuildCommand: the Dockerfile, CI (scripts/test.sh) and the
// quickstart build dpproxy with the same script.
func TestOneBuildCommand(t *testing.T) {
	build, err := os.ReadFile("../../scripts/build.sh")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(build), "go build -trimpath -o \"$out/dpproxy\" ./cmd/dpproxy") {
		t.Error("scripts/build.sh no longer holds the build command line")
	}
	for file, call := range map[string]string{
		"Dockerfile":            "./scripts/build.sh /out",
		"scripts/test.sh":       "./scripts/build.sh bin",
		"scripts/quickstart.sh": "./scripts/build.sh bin",
	} {
		b, err := os.ReadFile("../../" + file)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), call) {
			t.Errorf("%s does not build with %q", file, call)
		}
	}
}
