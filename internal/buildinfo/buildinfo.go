// Package buildinfo says which build of goim is running: the module
// version, the VCS revision and whether the tree was modified, and the Go
// version, as the Go toolchain stamped them into the binary
// (runtime/debug.ReadBuildInfo). Every command prints it for -version and
// every service exports it as the goim_build_info metric (package admin).
//
// A binary built by `go build` in a git checkout carries the revision and
// the modified flag; `go install module@version` carries the version. A
// field the binary lacks (a test binary, a build with -buildvcs=false) is
// "unknown".
package buildinfo

import (
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

// Unknown is a field the binary does not carry.
const Unknown = "unknown"

// Info is one build's identity.
type Info struct {
	// Version is the main module's version: a tag such as "v1.2.0", a
	// pseudo-version (with "+dirty" for a modified tree), "(devel)", or
	// Unknown.
	Version string
	// Commit is the VCS revision (a full git hash), or Unknown.
	Commit string
	// Modified reports uncommitted changes in the tree the binary was
	// built from.
	Modified bool
	// Go is the Go toolchain's version, such as "go1.26.8".
	Go string
}

// Read returns the running binary's build information.
func Read() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Info{Version: Unknown, Commit: Unknown, Go: runtime.Version()}
	}
	return fromBuildInfo(bi)
}

func fromBuildInfo(bi *debug.BuildInfo) Info {
	in := Info{Version: bi.Main.Version, Commit: Unknown, Go: bi.GoVersion}
	if in.Version == "" {
		in.Version = Unknown
	}
	if in.Go == "" {
		in.Go = runtime.Version()
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if s.Value != "" {
				in.Commit = s.Value
			}
		case "vcs.modified":
			in.Modified = s.Value == "true"
		}
	}
	return in
}

// CommitLabel is the commit as the goim_build_info metric labels it: the
// revision, with "-modified" appended for a modified tree.
func (in Info) CommitLabel() string {
	if in.Modified && in.Commit != Unknown {
		return in.Commit + "-modified"
	}
	return in.Commit
}

// String is the one-line form -version prints:
// "v1.2.0 commit 0123abcd… (modified) go1.26.8".
func (in Info) String() string {
	var b strings.Builder
	b.WriteString(in.Version)
	b.WriteString(" commit ")
	b.WriteString(in.Commit)
	if in.Modified {
		b.WriteString(" (modified)")
	}
	b.WriteString(" ")
	b.WriteString(in.Go)
	return b.String()
}

// Version is Read().String().
func Version() string { return Read().String() }

// Flag is a command's -version flag. Register it with [AddFlag] before
// parsing, then call [Flag.Print] after:
//
//	version := buildinfo.AddFlag(fs)
//	if err := fs.Parse(args); err != nil { ... }
//	if version.Print(os.Stdout, "logic") { return nil }
type Flag struct{ set bool }

// AddFlag registers -version on fs.
func AddFlag(fs *flag.FlagSet) *Flag {
	f := &Flag{}
	fs.BoolVar(&f.set, "version", false, "print the version, commit and Go version, and exit")
	return f
}

// Print reports whether -version was given; when it was, it first writes
// "<name> <version line>" to w.
func (f *Flag) Print(w io.Writer, name string) bool {
	if !f.set {
		return false
	}
	fmt.Fprintln(w, name, Version())
	return true
}
