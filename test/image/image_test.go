// Package image checks the agent image's recipe without a docker engine:
// the Dockerfile builds the pinned restic and the agent, the final stage
// installs hack/image/agent.env's packages and runs as the rendered
// Deployment's non-root user with a MySQL/MariaDB client and both binaries
// on PATH, .dockerignore lets in what the build copies, and `make image`
// tags the image the plugin deploys by default. archive_test.go builds the
// images `make image` builds and runs what is inside them.
package image

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/kubectl-stash/kubectl-stash/pkg/render"
	"github.com/kubectl-stash/kubectl-stash/pkg/version"
	"github.com/kubectl-stash/kubectl-stash/test/testenv"
)

const versionPkg = "github.com/kubectl-stash/kubectl-stash/pkg/version"

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	Cmd  string // upper case: FROM, RUN, COPY, ...
	Args string
	Line int
}

type stage struct {
	Image, Name string
	Instrs      []instruction
}

// all returns the stage's instructions named cmd.
func (s stage) all(cmd string) []instruction {
	var out []instruction
	for _, in := range s.Instrs {
		if in.Cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// text is the stage's instructions, one per line, for substring checks.
func (s stage) text() string {
	var b strings.Builder
	for _, in := range s.Instrs {
		fmt.Fprintf(&b, "%s %s\n", in.Cmd, in.Args)
	}
	return b.String()
}

func parseDockerfile(t *testing.T, file string) []stage {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		stages  []stage
		cur     strings.Builder
		curLine int
	)
	flush := func() {
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		if text == "" {
			return
		}
		cmd, args, _ := strings.Cut(text, " ")
		in := instruction{Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args), Line: curLine}
		if in.Cmd == "FROM" {
			fields := strings.Fields(in.Args)
			for len(fields) > 0 && strings.HasPrefix(fields[0], "--") {
				fields = fields[1:] // --platform=...
			}
			if len(fields) == 0 {
				t.Fatalf("%s:%d: FROM without an image", file, in.Line)
			}
			st := stage{Image: fields[0]}
			if len(fields) == 3 && strings.EqualFold(fields[1], "AS") {
				st.Name = fields[2]
			}
			stages = append(stages, st)
			return
		}
		if len(stages) == 0 {
			if in.Cmd != "ARG" {
				t.Fatalf("%s:%d: %s before the first FROM", file, in.Line, in.Cmd)
			}
			return
		}
		stages[len(stages)-1].Instrs = append(stages[len(stages)-1].Instrs, in)
	}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue // comments (also inside continuations) and blank lines
		}
		if cur.Len() == 0 {
			curLine = n
		}
		if strings.HasSuffix(trimmed, `\`) {
			cur.WriteString(strings.TrimSuffix(trimmed, `\`) + " ")
			continue
		}
		cur.WriteString(trimmed)
		flush()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	flush()
	return stages
}

// goModRequire returns the version gomod requires of module, and its go directive.
func goModRequire(t *testing.T, gomod, module string) (req, goVersion string) {
	t.Helper()
	b, err := os.ReadFile(gomod)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), "require "))
		if len(f) >= 2 && f[0] == module {
			req = f[1]
		}
		if len(f) == 2 && f[0] == "go" {
			goVersion = f[1]
		}
	}
	if req == "" && module != "" {
		t.Fatalf("%s does not require %s", gomod, module)
	}
	return req, goVersion
}

// minorOf returns "1.26" of "1.26", "1.26.3" or "1.26-bookworm".
func minorOf(v string) (int, int, bool) {
	m := regexp.MustCompile(`^(\d+)\.(\d+)`).FindStringSubmatch(v)
	if m == nil {
		return 0, 0, false
	}
	a, _ := strconv.Atoi(m[1])
	b, _ := strconv.Atoi(m[2])
	return a, b, true
}

// outputOf returns the -o argument of a go build command line.
func outputOf(run string) string {
	m := regexp.MustCompile(`(?:^|\s)-o[ =](\S+)`).FindStringSubmatch(run)
	if m == nil {
		return ""
	}
	return m[1]
}

// copyDest says whether the final stage copies src from stage from to dst
// (given as the full path, or as a directory ending in /).
func copyDest(s stage, from, src, dst string) bool {
	for _, in := range s.all("COPY") {
		f := strings.Fields(in.Args)
		if len(f) < 3 || f[0] != "--from="+from {
			continue
		}
		srcs, d := f[1:len(f)-1], f[len(f)-1]
		for _, from := range srcs {
			if from != src {
				continue
			}
			if d == dst || (strings.HasSuffix(d, "/") && d+filepath.Base(src) == dst) {
				return true
			}
		}
	}
	return false
}

func TestDockerfile(t *testing.T) {
	root := testenv.RepoRoot()
	stages := parseDockerfile(t, filepath.Join(root, "Dockerfile"))
	if len(stages) < 2 {
		t.Fatalf("want a multi-stage Dockerfile, got %d stage(s)", len(stages))
	}
	names := map[string]bool{}
	for i, s := range stages {
		if names[s.Image] {
			continue // FROM an earlier stage
		}
		_, tag, hasTag := strings.Cut(s.Image, ":")
		if strings.Contains(s.Image, "@sha256:") {
			hasTag, tag = true, "digest"
		}
		if !hasTag || tag == "" || tag == "latest" || strings.Contains(s.Image, "$") {
			t.Errorf("stage %d: base image %q is not pinned by a tag or digest", i, s.Image)
		}
		if s.Name != "" {
			names[s.Name] = true
		}
	}

	// restic, from the pin hack/tools.sh builds the tests' restic from.
	resticMod := filepath.Join(root, "hack", "tools", "restic", "go.mod")
	resticVersion, resticGo := goModRequire(t, resticMod, "github.com/restic/restic")
	_, rootGo := goModRequire(t, filepath.Join(root, "go.mod"), "")
	var resticStage, agentStage *stage
	var resticOut, agentOut string
	for i := range stages[:len(stages)-1] {
		s := &stages[i]
		for _, run := range s.all("RUN") {
			switch {
			case strings.Contains(run.Args, "github.com/restic/restic/cmd/restic"):
				resticStage, resticOut = s, outputOf(run.Args)
				if !regexp.MustCompile(`(^|\s|&&)cd hack/tools/restic(\s|$)`).MatchString(run.Args) || !strings.Contains(run.Args, "go build") {
					t.Errorf("line %d: restic must be built with `go build` in hack/tools/restic, the pinned module: %s", run.Line, run.Args)
				}
				if want := "-X main.version=" + strings.TrimPrefix(resticVersion, "v"); !strings.Contains(run.Args, want) {
					t.Errorf("line %d: restic build does not stamp %q (hack/tools/restic/go.mod pins %s)", run.Line, want, resticVersion)
				}
				if !strings.Contains(run.Args, "-trimpath") {
					t.Errorf("line %d: restic build without -trimpath", run.Line)
				}
			case strings.Contains(run.Args, "./cmd/agent"):
				agentStage, agentOut = s, outputOf(run.Args)
				if !strings.Contains(run.Args, "go build") || !strings.Contains(run.Args, "-trimpath") {
					t.Errorf("line %d: the agent must be built with go build -trimpath: %s", run.Line, run.Args)
				}
				if want := "-X " + versionPkg + ".Version=${VERSION}"; !strings.Contains(run.Args, want) {
					t.Errorf("line %d: the agent build does not stamp %q", run.Line, want)
				}
			}
		}
	}
	if resticStage == nil || agentStage == nil {
		t.Fatalf("want builder stages running go build for github.com/restic/restic/cmd/restic and ./cmd/agent (restic: %v, agent: %v)", resticStage != nil, agentStage != nil)
	}
	builders := []*stage{resticStage}
	if agentStage != resticStage {
		builders = append(builders, agentStage)
	}
	for _, s := range builders {
		if s.Name == "" {
			t.Fatalf("builder stage FROM %s has no name to copy from", s.Image)
		}
		if !strings.Contains(s.text(), "CGO_ENABLED=0") {
			t.Errorf("stage %s does not build with CGO_ENABLED=0", s.Name)
		}
		if strings.HasPrefix(s.Image, "golang:") {
			// The builder's Go must be at least what both modules declare.
			tag := strings.TrimPrefix(s.Image, "golang:")
			for mod, need := range map[string]string{resticMod: resticGo, "go.mod": rootGo} {
				hm, hn, ok1 := minorOf(tag)
				nm, nn, ok2 := minorOf(need)
				if !ok1 || !ok2 || hm < nm || (hm == nm && hn < nn) {
					t.Errorf("builder %s is older than go %s in %s", s.Image, need, mod)
				}
			}
		}
	}
	copiesRestic := false
	for _, in := range resticStage.all("COPY") {
		if f := strings.Fields(in.Args); len(f) >= 2 && strings.TrimSuffix(f[0], "/") == "hack/tools/restic" {
			copiesRestic = true
		}
	}
	if !copiesRestic {
		t.Errorf("stage %s does not COPY hack/tools/restic (its go.mod and go.sum pin restic %s)", resticStage.Name, resticVersion)
	}
	hasArg := false
	for _, in := range agentStage.all("ARG") {
		if strings.HasPrefix(in.Args, "VERSION") {
			hasArg = true
		}
	}
	if !hasArg {
		t.Errorf("stage %s has no ARG VERSION for `make image`'s --build-arg", agentStage.Name)
	}

	final := stages[len(stages)-1]
	t.Run("final stage", func(t *testing.T) {
		if !strings.HasPrefix(final.Image, "debian:") || !strings.HasSuffix(final.Image, "-slim") {
			t.Errorf("final stage FROM %s, want a Debian slim image", final.Image)
		}
		// The recipe `make image` builds from is the one the stage installs.
		spec := recipe(t, root, "agent")
		specCopy := ""
		for _, in := range final.all("COPY") {
			if f := strings.Fields(in.Args); len(f) == 2 && f[0] == "hack/image/agent.env" {
				specCopy = f[1]
			}
		}
		if specCopy == "" {
			t.Fatal("final stage does not COPY hack/image/agent.env, the package list `make image` installs too")
		}
		pkgs := " " + spec["PACKAGES"] + " "
		if !regexp.MustCompile(` (mariadb-client|default-mysql-client|mysql-client) `).MatchString(pkgs) {
			t.Errorf("agent.env PACKAGES %q has no MySQL/MariaDB client (mysqldump/mariadb-dump, mysql/mariadb)", spec["PACKAGES"])
		}
		if !strings.Contains(pkgs, " ca-certificates ") {
			t.Errorf("agent.env PACKAGES %q lacks ca-certificates: restic talks TLS to the clouds", spec["PACKAGES"])
		}
		installs := false
		for _, run := range final.all("RUN") {
			a := run.Args
			if !strings.Contains(a, "apt-get install") {
				continue
			}
			installs = true
			for _, want := range []string{". " + specCopy, "apt-get update", "--no-install-recommends", "-y", "$PACKAGES", "rm -rf /var/lib/apt/lists/*", "$REMOVE"} {
				if !strings.Contains(a, want) {
					t.Errorf("line %d: the apt-get RUN lacks %q", run.Line, want)
				}
			}
		}
		if !installs {
			t.Error("final stage runs no apt-get install of agent.env's PACKAGES")
		}
		// Both binaries where agent.env puts them, in a PATH directory; the
		// agent under the name the Deployment's command uses.
		files := map[string]string{} // source -> destination
		for _, f := range strings.Fields(spec["FILES"]) {
			dest, src, _ := strings.Cut(f, "=")
			files[src] = dest
		}
		if dest := files["go:./cmd/agent"]; dest != "/usr/local/bin/"+render.AgentCommand {
			t.Errorf("agent.env puts ./cmd/agent at %q, want /usr/local/bin/%s", dest, render.AgentCommand)
		}
		if dest := files["tool:restic"]; dest != "/usr/local/bin/restic" {
			t.Errorf("agent.env puts restic at %q, want /usr/local/bin/restic", dest)
		}
		if !copyDest(final, agentStage.Name, agentOut, files["go:./cmd/agent"]) {
			t.Errorf("final stage does not COPY --from=%s %s to %s", agentStage.Name, agentOut, files["go:./cmd/agent"])
		}
		if !copyDest(final, resticStage.Name, resticOut, files["tool:restic"]) {
			t.Errorf("final stage does not COPY --from=%s %s to %s", resticStage.Name, resticOut, files["tool:restic"])
		}
		path := ""
		for _, env := range final.all("ENV") {
			if strings.HasPrefix(env.Args, "PATH=") {
				path = strings.TrimPrefix(env.Args, "PATH=")
			}
		}
		if path != spec["IMAGE_PATH"] || !strings.Contains(":"+path+":", ":/usr/local/bin:") {
			t.Errorf("final stage ENV PATH=%s, agent.env IMAGE_PATH=%s (with /usr/local/bin)", path, spec["IMAGE_PATH"])
		}
		users := final.all("USER")
		if len(users) == 0 {
			t.Fatal("final stage has no USER: the image would run as root")
		}
		u := users[len(users)-1]
		if want := fmt.Sprintf("%d:%d", render.AgentUID, render.AgentUID); u.Args != want || spec["IMAGE_USER"] != want {
			t.Errorf("line %d: USER %s, agent.env IMAGE_USER %s, want %s, the rendered Deployment's runAsUser (numeric, so runAsNonRoot can verify it)", u.Line, u.Args, spec["IMAGE_USER"], want)
		}
		for i, in := range final.Instrs {
			if in.Cmd == "USER" && in.Line == u.Line {
				for _, later := range final.Instrs[i+1:] {
					if later.Cmd == "RUN" {
						t.Errorf("line %d: RUN after the last USER", later.Line)
					}
				}
			}
		}
		eps := final.all("ENTRYPOINT")
		var argv []string
		if len(eps) > 0 {
			_ = json.Unmarshal([]byte(eps[len(eps)-1].Args), &argv)
		}
		if len(argv) == 0 || argv[0] != render.AgentCommand || strings.Join(argv, " ") != spec["ENTRYPOINT"] {
			t.Errorf("ENTRYPOINT %v, want the exec form of agent.env's %q, starting with %q", argv, spec["ENTRYPOINT"], render.AgentCommand)
		}
	})

	t.Run(".dockerignore", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
		if err != nil {
			t.Fatal(err)
		}
		var allowed []string
		excludesAll := false
		for _, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			switch {
			case line == "*":
				excludesAll = true
			case strings.HasPrefix(line, "!"):
				allowed = append(allowed, strings.TrimSuffix(strings.TrimPrefix(line, "!"), "/"))
			}
		}
		if !excludesAll {
			t.Fatal(".dockerignore should start from `*` (send nothing) and let the copied paths back in with `!`")
		}
		for _, s := range stages {
			for _, in := range s.all("COPY") {
				f := strings.Fields(in.Args)
				if len(f) < 2 || strings.HasPrefix(f[0], "--from=") {
					continue
				}
				for _, src := range f[:len(f)-1] {
					if strings.HasPrefix(src, "--") {
						continue
					}
					src = strings.TrimSuffix(src, "/")
					if _, err := os.Stat(filepath.Join(root, src)); err != nil {
						t.Errorf("line %d: COPY %s: %v", in.Line, src, err)
					}
					ok := false
					for _, a := range allowed {
						if src == a || strings.HasPrefix(src, a+"/") {
							ok = true
						}
					}
					if !ok {
						t.Errorf("line %d: COPY %s, but .dockerignore keeps it out of the build context", in.Line, src)
					}
				}
			}
		}
	})
}

// TestMakefileImageIsThePluginDefault evaluates the Makefile's variables
// with make itself: the image `make image` builds and tags must be the one
// the plugin renders by default for the same VERSION.
func TestMakefileImageIsThePluginDefault(t *testing.T) {
	root := testenv.RepoRoot()
	const v, c = "v9.8.7", "abc1234"
	vars := makeVars(t, root, v, c, "IMAGE_REPO", "IMAGE", "LDFLAGS", "IMAGE_BUILD")
	if vars["IMAGE_REPO"] != version.DefaultAgentImageRepo {
		t.Errorf("Makefile IMAGE_REPO = %q, pkg/version.DefaultAgentImageRepo = %q", vars["IMAGE_REPO"], version.DefaultAgentImageRepo)
	}
	// make build and make dist stamp the plugin with VERSION ...
	if want := "-X " + versionPkg + ".Version=" + v; !strings.Contains(vars["LDFLAGS"], want) {
		t.Errorf("Makefile LDFLAGS %q does not stamp %s", vars["LDFLAGS"], want)
	}
	// ... so the plugin's default image is IMAGE_REPO:VERSION, which make image builds.
	saved := version.Version
	version.Version = v
	defaultImage := version.AgentImage()
	version.Version = saved
	if vars["IMAGE"] != defaultImage {
		t.Errorf("Makefile IMAGE = %q, the plugin stamped %s deploys %q", vars["IMAGE"], v, defaultImage)
	}
	for _, want := range []string{"docker build", "--build-arg VERSION=" + v, "--build-arg COMMIT=" + c, "-t " + defaultImage + " "} {
		if !strings.Contains(vars["IMAGE_BUILD"]+" ", want) {
			t.Errorf("Makefile IMAGE_BUILD %q lacks %q", vars["IMAGE_BUILD"], want)
		}
	}
}

// TestMakeImage: `make image` needs no docker engine: it installs
// mmdebstrap and runs hack/image with the Makefile's version, ldflags and
// image reference, and agent.env's reference is the plugin's default.
func TestMakeImage(t *testing.T) {
	root := testenv.RepoRoot()
	const v, c = "v9.8.7", "abc1234"
	cmd := exec.Command("make", "-n", "--no-print-directory", "-C", root, "image", "VERSION="+v, "COMMIT="+c)
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make -n image: %v\n%s", err, out)
	}
	saved := version.Version
	version.Version = v
	defaultImage := version.AgentImage()
	version.Version = saved
	ldflags := makeVars(t, root, v, c, "LDFLAGS")["LDFLAGS"]
	text := strings.Join(strings.Fields(string(out)), " ")
	for _, want := range []string{"hack/install-image-tools.sh", "go run ./hack/image", "-version '" + v + "'",
		"-ldflags '" + ldflags + "'", "-ref agent='" + defaultImage + "'", "-images 'agent,mariadb'"} {
		if !strings.Contains(text, want) {
			t.Errorf("make image does not run %q:\n%s", want, out)
		}
	}
	if strings.Contains(text, "docker") {
		t.Errorf("make image still runs docker:\n%s", out)
	}
	if ref := strings.ReplaceAll(recipe(t, root, "agent")["REF"], "${VERSION}", v); ref != defaultImage {
		t.Errorf("agent.env REF gives %q for %s, the plugin deploys %q", ref, v, defaultImage)
	}
}

// recipe sources hack/image/<name>.env with /bin/sh, as the Dockerfile
// does, and returns its variables.
func recipe(t *testing.T, root, name string) map[string]string {
	t.Helper()
	keys := []string{"NAME", "REF", "PACKAGES", "ACCOUNTS", "DIRS", "REMOVE", "FILES", "IMAGE_USER", "ENTRYPOINT", "IMAGE_PATH"}
	script := `. "$1"`
	for _, k := range keys {
		script += fmt.Sprintf(` && printf '%%s=%%s\n' %s "$%s"`, k, k)
	}
	out, err := exec.Command("/bin/sh", "-c", script, "sh", filepath.Join(root, "hack", "image", name+".env")).CombinedOutput()
	if err != nil {
		t.Fatalf("sh cannot source hack/image/%s.env: %v\n%s", name, err, out)
	}
	vars := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		k, val, _ := strings.Cut(line, "=")
		vars[k] = val
	}
	return vars
}

// makeVars prints Makefile variables as make expands them.
func makeVars(t *testing.T, root, v, c string, names ...string) map[string]string {
	t.Helper()
	rule := "_print-vars: ; @:"
	for _, n := range names {
		rule += fmt.Sprintf(" $(info %s=$(%s))", n, n)
	}
	cmd := exec.Command("make", "-s", "--no-print-directory", "-C", root, "--eval", rule, "_print-vars", "VERSION="+v, "COMMIT="+c)
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make: %v\n%s", err, out)
	}
	vars := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if k, val, ok := strings.Cut(line, "="); ok {
			vars[k] = strings.Join(strings.Fields(val), " ")
		}
	}
	for _, n := range names {
		if _, ok := vars[n]; !ok {
			t.Fatalf("make printed no %s:\n%s", n, out)
		}
	}
	return vars
}

// cleanEnv is the environment without the Makefile's variables, which
// would override its defaults.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "VERSION", "COMMIT", "IMAGE", "IMAGE_REPO", "IMAGE_BUILD", "LDFLAGS", "MAKEFLAGS", "MFLAGS":
			continue
		}
		env = append(env, kv)
	}
	return env
}
