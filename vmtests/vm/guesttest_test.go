package vm

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// ev builds a test2json event.
func ev(action, test, output string) testEvent {
	return testEvent{Action: action, Test: test, Output: output}
}

// passing is a guest test with a subtest, both passing, as test2json
// reports them.
func passing(name string) []testEvent {
	return []testEvent{
		ev("run", name, ""),
		ev("output", name, "=== RUN   "+name+"\n"),
		ev("run", name+"/sub", ""),
		ev("output", name+"/sub", "=== RUN   "+name+"/sub\n"),
		ev("output", name+"/sub", "    --- PASS: "+name+"/sub (0.00s)\n"),
		ev("pass", name+"/sub", ""),
		ev("output", name, "--- PASS: "+name+" (0.01s)\n"),
		ev("pass", name, ""),
	}
}

func cat(evs ...[]testEvent) []testEvent {
	var out []testEvent
	for _, e := range evs {
		out = append(out, e...)
	}
	return out
}

// reportCases feed reportEvents. fails lists the top-level tests that must
// fail the host run; mention, what its output must name.
type reportCase struct {
	name    string
	evs     []testEvent
	fails   []string
	mention []string
}

var reportCases = []reportCase{
	{
		name: "pass",
		evs:  cat(passing("TestA"), passing("TestB"), []testEvent{ev("pass", "", "")}),
	},
	{
		name: "top-level skip",
		evs: cat(passing("TestA"), []testEvent{
			ev("run", "TestB", ""),
			ev("output", "TestB", "    b_test.go:9: no ip_tables\n"),
			ev("output", "TestB", "--- SKIP: TestB (0.00s)\n"),
			ev("skip", "TestB", ""),
			ev("pass", "", ""),
		}),
		fails:   []string{"TestB"},
		mention: []string{"skipped in the guest", "TestB", "no ip_tables"},
	},
	{
		name: "subtest skip",
		evs: []testEvent{
			ev("run", "TestA", ""),
			ev("run", "TestA/ok", ""),
			ev("pass", "TestA/ok", ""),
			ev("run", "TestA/missing_tool", ""),
			ev("output", "TestA/missing_tool", "    a_test.go:12: needs tc\n"),
			ev("output", "TestA/missing_tool", "    --- SKIP: TestA/missing_tool (0.00s)\n"),
			ev("skip", "TestA/missing_tool", ""),
			ev("output", "TestA", "--- PASS: TestA (0.00s)\n"),
			ev("pass", "TestA", ""),
			ev("pass", "", ""),
		},
		fails:   []string{"TestA"},
		mention: []string{"skipped in the guest", "TestA/missing_tool", "needs tc"},
	},
	{
		name: "nested subtest skip",
		evs: cat(passing("TestA"), []testEvent{
			ev("run", "TestB", ""),
			ev("run", "TestB/x", ""),
			ev("run", "TestB/x/y", ""),
			ev("skip", "TestB/x/y", ""),
			ev("pass", "TestB/x", ""),
			ev("pass", "TestB", ""),
		}),
		fails:   []string{"TestB"},
		mention: []string{"TestB/x/y"},
	},
	{
		name: "fail",
		evs: cat(passing("TestA"), []testEvent{
			ev("run", "TestB", ""),
			ev("output", "TestB", "    b_test.go:3: table changed\n"),
			ev("output", "TestB", "--- FAIL: TestB (0.10s)\n"),
			ev("fail", "TestB", ""),
			ev("fail", "", ""),
		}),
		fails:   []string{"TestB"},
		mention: []string{"failed in the guest", "table changed"},
	},
	{
		name: "unfinished",
		evs: cat(passing("TestA"), []testEvent{
			ev("run", "TestB", ""),
			ev("output", "TestB", "=== RUN   TestB\n"),
			ev("run", "TestB/sub", ""),
		}),
		fails:   []string{"TestB"},
		mention: []string{"did not finish in the guest", "serial.log"},
	},
}

// TestGuestResults checks the verdict on each guest test.
func TestGuestResults(t *testing.T) {
	for _, c := range reportCases {
		t.Run(c.name, func(t *testing.T) {
			fails := map[string]bool{}
			for _, n := range c.fails {
				fails[n] = true
			}
			for _, r := range guestResults(c.evs) {
				p := r.problem("serial.log")
				if got := p != ""; got != fails[r.name] {
					t.Errorf("%s: fails %v, want %v (%q)", r.name, got, fails[r.name], p)
				}
				if !fails[r.name] {
					continue
				}
				for _, m := range c.mention {
					if !strings.Contains(p, m) {
						t.Errorf("%s: %q does not mention %q", r.name, p, m)
					}
				}
			}
		})
	}
}

// reportCaseEnv names the case that TestReportEventsChild replays.
const reportCaseEnv = "BPFILTER_REPORT_CASE"

// TestReportEvents runs each case through reportEvents itself, with a real
// testing.T in a child process (this test binary, re-executed), and checks
// that the host test fails when and only when it should, naming the test.
func TestReportEvents(t *testing.T) {
	cases := append([]reportCase{{name: "no events", fails: []string{""}, mention: []string{"the guest ran no test"}}},
		reportCases...)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestReportEventsChild$", "-test.v")
			cmd.Env = append(os.Environ(), reportCaseEnv+"="+c.name)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if err != nil && !errors.As(err, &exit) {
				t.Fatal(err)
			}
			if failed := err != nil; failed != (len(c.fails) > 0) {
				t.Fatalf("host test failed: %v, want %v:\n%s", failed, len(c.fails) > 0, out)
			}
			for _, n := range c.fails {
				if n != "" && !strings.Contains(string(out), "--- FAIL: TestReportEventsChild/"+n+" ") {
					t.Errorf("%s did not fail:\n%s", n, out)
				}
			}
			for _, m := range c.mention {
				if !strings.Contains(string(out), m) {
					t.Errorf("output does not mention %q:\n%s", m, out)
				}
			}
		})
	}
}

// TestReportEventsChild is TestReportEvents' child: it replays one case
// and does nothing when run on its own.
func TestReportEventsChild(t *testing.T) {
	name := os.Getenv(reportCaseEnv)
	if name == "" {
		return
	}
	for _, c := range reportCases {
		if c.name == name {
			reportEvents(t, c.evs, "serial.log")
			return
		}
	}
	reportEvents(t, nil, "serial.log")
}

func TestRunnerProblems(t *testing.T) {
	tests := []struct {
		name    string
		errs    []runnerError
		readErr error
		want    []string
	}{
		{name: "none"},
		{
			name: "test binary exited non-zero",
			errs: []runnerError{{Binary: "/mount/9p/gotestdata/tests/iptables/iptables.test", Error: "test exited with non-zero status: exit status 2"}},
			want: []string{"iptables.test: test exited with non-zero status"},
		},
		{
			name: "runner failed",
			errs: []runnerError{{Error: "running tests failed: lstat: no such file"}},
			want: []string{"running tests failed"},
		},
		{
			name:    "no report",
			readErr: errors.New("never received the final event channel event"),
			want:    []string{"never received"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := runnerProblems(tt.errs, tt.readErr)
			if len(got) != len(tt.want) {
				t.Fatalf("got %q, want %d problems", got, len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %q does not mention %q", got[i], w)
				}
			}
		})
	}
}
