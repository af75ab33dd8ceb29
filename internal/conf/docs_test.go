package conf_test

import (
	"encoding"
	"fmt"
	"maps"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/goim/goim/internal/allinone"
	"github.com/goim/goim/internal/comet"
	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/job"
	"github.com/goim/goim/internal/logic"
)

// This file keeps docs/configuration.md true: every key of every service's
// configuration has a row in that service's section, no row names a key
// the configuration lacks, and every documented default is the one the
// service's Default() returns.
//
// A section of the document is a heading ("## logic") followed, before the
// next heading of the same or a higher level, by one or more tables whose
// header row starts with "key | default | unit". A row of such a table is
//
//	| `[kafka] brokers` | `["127.0.0.1:9092"]` | host:port list | meaning ... |
//
// The key cell is a code span holding the key's TOML path: the bare key at
// the top level, "[section] key" inside a table, "[outer.inner] key" inside
// a nested table and "[[section]] key" inside an array of tables. The
// default cell is a code span holding the default written as a TOML value,
// in the canonical form renderDefault produces (strings quoted, durations
// as their shortest Go form such as "5s" or "2m", lists as TOML arrays,
// maps as inline tables), or, for the few host-dependent keys listed in a
// section's hostDependent, the exact phrase given there. The unit cell
// must not be empty ("—" when there is no unit).

// configDoc is the document checked, relative to this package's directory.
const configDoc = "../../docs/configuration.md"

// docSection ties a section of configDoc to the configuration it documents.
type docSection struct {
	// heading is the section heading's text, without the leading #s.
	heading string
	// defaults is the service's Default() value (a struct, not a pointer).
	defaults any
	// hostDependent maps the key cell of each key whose default depends on
	// the host (the OS hostname) to the exact prose its default cell holds
	// instead of a value. Keep it small.
	hostDependent map[string]string
}

// docSections lists every documented configuration. One line adds one.
var docSections = []docSection{
	{heading: "logic", defaults: logic.Default(), hostDependent: osHostname("host")},
	{heading: "comet", defaults: comet.Default(), hostDependent: osHostname("host")},
	{heading: "job", defaults: job.Default(), hostDependent: osHostname("host")},
	{heading: "goim (all-in-one)", defaults: allinoneOwn()},
}

// allinoneOwn is the all-in-one's own keys: its [logic], [job] and [comet]
// sections are the service tables, documented once. TestAllinoneOwn keeps
// this list complete.
func allinoneOwn() any {
	d := allinone.Default()
	return struct {
		ReadyTimeout    conf.Duration            `toml:"ready_timeout"`
		ShutdownTimeout conf.Duration            `toml:"shutdown_timeout"`
		Kafka           allinone.KafkaConfig     `toml:"kafka"`
		Redis           allinone.RedisConfig     `toml:"redis"`
		Discovery       allinone.DiscoveryConfig `toml:"discovery"`
	}{d.ReadyTimeout, d.ShutdownTimeout, d.Kafka, d.Redis, d.Discovery}
}

// TestAllinoneOwn: every key of allinone.Config but the three service
// sections is in allinoneOwn, so the doc test sees it.
func TestAllinoneOwn(t *testing.T) {
	own := reflect.TypeOf(allinoneOwn())
	have := map[string]bool{}
	for i := range own.NumField() {
		have[own.Field(i).Tag.Get("toml")] = true
	}
	full := reflect.TypeOf(allinone.Config{})
	for i := range full.NumField() {
		switch tag := full.Field(i).Tag.Get("toml"); tag {
		case "logic", "job", "comet":
		default:
			if !have[tag] {
				t.Errorf("allinone.Config key %q is missing from allinoneOwn (and so from the doc check)", tag)
			}
		}
	}
}

// osHostname documents each of keys (key cells) as defaulting to the OS
// hostname.
func osHostname(keys ...string) map[string]string {
	m := make(map[string]string, len(keys))
	for _, k := range keys {
		m[k] = "the OS hostname"
	}
	return m
}

func TestConfigurationDoc(t *testing.T) {
	data, err := os.ReadFile(configDoc)
	if err != nil {
		t.Fatal(err)
	}
	for _, sec := range docSections {
		t.Run(sec.heading, func(t *testing.T) {
			for _, p := range checkDocSection("docs/configuration.md", string(data), sec) {
				t.Error(p)
			}
		})
	}
}

// checkDocSection compares the section sec.heading of doc, the text of the
// file name (used in the messages), with sec.defaults and returns every
// disagreement, each saying which key and what to change. Rows that do not
// parse are reported alone, before anything is compared.
func checkDocSection(name, doc string, sec docSection) []string {
	where := fmt.Sprintf("%s, section %q", name, "## "+sec.heading)
	keys, err := configKeys(sec.defaults)
	if err != nil {
		return []string{fmt.Sprintf("%s: %v", where, err)}
	}
	rows, problems := parseDocSection(doc, sec.heading)
	if problems != nil {
		for i, p := range problems {
			problems[i] = fmt.Sprintf("%s: %s", where, p)
		}
		return problems
	}
	rowAt := func(r docRow) string { return fmt.Sprintf("%s:%d: key `%s`", name, r.line, r.key) }

	byKey := make(map[string]configKey, len(keys))
	for _, k := range keys {
		byKey[k.cell] = k
	}
	for _, cell := range slices.Sorted(maps.Keys(sec.hostDependent)) {
		if _, ok := byKey[cell]; !ok {
			problems = append(problems, fmt.Sprintf("%s: hostDependent names `%s`, which %T does not have; remove it from docSections",
				where, cell, sec.defaults))
		}
	}

	documented := make(map[string]docRow, len(rows))
	for _, r := range rows {
		if first, dup := documented[r.key]; dup {
			problems = append(problems, fmt.Sprintf("%s is documented twice (first at line %d); remove one row", rowAt(r), first.line))
			continue
		}
		documented[r.key] = r
		k, ok := byKey[r.key]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s is not a key of %T; remove the row, or fix the key (closest: %s)",
				rowAt(r), sec.defaults, closestKey(r.key, keys)))
			continue
		}
		if r.unit == "" {
			problems = append(problems, fmt.Sprintf("%s has an empty unit cell; write its unit, or — when it has none", rowAt(r)))
		}
		if phrase, ok := sec.hostDependent[r.key]; ok {
			if r.literal || r.def != phrase {
				problems = append(problems, fmt.Sprintf("%s: its default depends on the host; write the default cell as the phrase %q (no backticks), not %q",
					rowAt(r), phrase, r.cellText()))
			}
			continue
		}
		if !k.value.IsValid() {
			continue // inside an array of tables: element defaults are filled in code
		}
		want, err := renderDefault(k.value)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v; teach renderDefault this type", rowAt(r), err))
			continue
		}
		switch {
		case !r.literal:
			problems = append(problems, fmt.Sprintf("%s: the default cell %q is not a code span; write `%s`", rowAt(r), r.def, want))
		case r.def != want:
			problems = append(problems, fmt.Sprintf("%s documents the default `%s`, but %T's Default() has `%s`; change the default cell to `%s`",
				rowAt(r), r.def, sec.defaults, want, want))
		}
	}

	for _, k := range keys {
		if _, ok := documented[k.cell]; ok {
			continue
		}
		def := "(filled in code)"
		if phrase, ok := sec.hostDependent[k.cell]; ok {
			def = phrase
		} else if k.value.IsValid() {
			if s, err := renderDefault(k.value); err == nil {
				def = "`" + s + "`"
			}
		}
		problems = append(problems, fmt.Sprintf("%s: no row for key `%s`; add the row | `%s` | %s | <unit> | <meaning> |",
			where, k.cell, k.cell, def))
	}
	return problems
}

// closestKey names the configuration key that shares the longest prefix
// with cell, as a hint for a misspelt row.
func closestKey(cell string, keys []configKey) string {
	best, bestLen := "", -1
	for _, k := range keys {
		n := 0
		for n < len(cell) && n < len(k.cell) && cell[n] == k.cell[n] {
			n++
		}
		if n > bestLen {
			best, bestLen = k.cell, n
		}
	}
	return "`" + best + "`"
}

// configKey is one key of a configuration, found by configKeys.
type configKey struct {
	// cell is the key as the document's key cells write it: "host",
	// "[kafka] brokers", "[logic.http] bind", "[[upstream]] name".
	cell string
	// value is the key's default; invalid inside an array of tables, whose
	// defaults are filled in code per element (see package conf).
	value reflect.Value
}

var (
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
	tomlUnmarshaler = reflect.TypeFor[toml.Unmarshaler]()
	durationType    = reflect.TypeFor[time.Duration]()
	confDuration    = reflect.TypeFor[conf.Duration]()
)

// configKeys walks the struct defaults as the TOML decoder does, following
// the toml tags: a struct field is a table (its keys are listed under it),
// a slice of structs is an array of tables, and every other field is a
// value: conf.Duration and anything else the decoder fills from one TOML
// value (a TextUnmarshaler or toml.Unmarshaler), strings, numbers, bools,
// lists and maps (a map is a table of arbitrary keys, one value). Untagged
// embedded structs are flattened into their parent, as the decoder does.
// It fails on an array of tables whose default is not empty.
func configKeys(defaults any) ([]configKey, error) {
	v := reflect.ValueOf(defaults)
	if v.Kind() != reflect.Struct {
		return nil, fmt.Errorf("defaults must be a struct value, got %T", defaults)
	}
	var out []configKey
	err := walkTable(v.Type(), v, "", "", &out)
	return out, err
}

// walkTable appends the keys of the table of struct type t (with defaults
// v, invalid when unknown) whose path is path and whose header in a key
// cell is header ("" at the top level, "[path]" or "[[path]]").
func walkTable(t reflect.Type, v reflect.Value, path, header string, out *[]configKey) error {
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "-" || !f.IsExported() && !f.Anonymous {
			continue
		}
		var fv reflect.Value
		if v.IsValid() {
			fv = v.Field(i)
		}
		ft := f.Type
		if ft.Kind() == reflect.Pointer && !isValue(ft) {
			ft = ft.Elem()
			if fv.IsValid() {
				if fv.IsNil() {
					fv = reflect.Value{}
				} else {
					fv = fv.Elem()
				}
			}
		}
		if f.Anonymous && name == "" && ft.Kind() == reflect.Struct && !isValue(ft) {
			if err := walkTable(ft, fv, path, header, out); err != nil {
				return err
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		key := tomlKey(name)
		sub := key
		if path != "" {
			sub = path + "." + key
		}
		switch {
		case isValue(ft):
			cell := key
			if header != "" {
				cell = header + " " + key
			}
			*out = append(*out, configKey{cell: cell, value: fv})
		case ft.Kind() == reflect.Struct:
			if err := walkTable(ft, fv, sub, "["+sub+"]", out); err != nil {
				return err
			}
		default: // an array of tables
			if fv.IsValid() && fv.Len() > 0 {
				return fmt.Errorf("array of tables %s defaults to %d elements; keep its default empty and fill element defaults in code (see package conf)",
					sub, fv.Len())
			}
			elem := ft.Elem()
			for elem.Kind() == reflect.Pointer {
				elem = elem.Elem()
			}
			if err := walkTable(elem, reflect.Value{}, sub, "[["+sub+"]]", out); err != nil {
				return err
			}
		}
	}
	return nil
}

// isValue reports whether the decoder fills a field of type t from one
// TOML value rather than from a table or an array of tables.
func isValue(t reflect.Type) bool {
	if t.Implements(textUnmarshaler) || t.Implements(tomlUnmarshaler) ||
		reflect.PointerTo(t).Implements(textUnmarshaler) || reflect.PointerTo(t).Implements(tomlUnmarshaler) {
		return true
	}
	switch t.Kind() {
	case reflect.Struct:
		return false
	case reflect.Pointer:
		return isValue(t.Elem())
	case reflect.Slice, reflect.Array:
		e := t.Elem()
		for e.Kind() == reflect.Pointer {
			e = e.Elem()
		}
		return e.Kind() != reflect.Struct || isValue(e)
	}
	return true
}

var bareKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// tomlKey writes name as a TOML key: bare when it can be, else quoted.
func tomlKey(name string) string {
	if bareKey.MatchString(name) {
		return name
	}
	return strconv.Quote(name)
}

// renderDefault writes v as the document's default cells do: the TOML
// value that sets it, in one canonical form.
func renderDefault(v reflect.Value) (string, error) {
	switch t := v.Type(); {
	case t == confDuration || t == durationType:
		return strconv.Quote(formatDuration(time.Duration(v.Int()))), nil
	case t.Implements(reflect.TypeFor[encoding.TextMarshaler]()) && v.Kind() != reflect.Pointer:
		text, err := v.Interface().(encoding.TextMarshaler).MarshalText()
		if err != nil {
			return "", err
		}
		return strconv.Quote(string(text)), nil
	}
	switch v.Kind() {
	case reflect.String:
		return strconv.Quote(v.String()), nil
	case reflect.Bool:
		return strconv.FormatBool(v.Bool()), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(v.Uint(), 10), nil
	case reflect.Float32, reflect.Float64:
		s := strconv.FormatFloat(v.Float(), 'f', -1, 64)
		if !strings.ContainsAny(s, ".eEn") { // a TOML float needs a fraction
			s += ".0"
		}
		return s, nil
	case reflect.Slice, reflect.Array:
		parts := make([]string, v.Len())
		for i := range parts {
			s, err := renderDefault(v.Index(i))
			if err != nil {
				return "", err
			}
			parts[i] = s
		}
		return "[" + strings.Join(parts, ", ") + "]", nil
	case reflect.Map:
		if v.Len() == 0 {
			return "{}", nil
		}
		var parts []string
		for _, k := range v.MapKeys() {
			if k.Kind() != reflect.String {
				return "", fmt.Errorf("no TOML form for a map keyed by %s", k.Type())
			}
			s, err := renderDefault(v.MapIndex(k))
			if err != nil {
				return "", err
			}
			parts = append(parts, tomlKey(k.String())+" = "+s)
		}
		slices.Sort(parts)
		return "{ " + strings.Join(parts, ", ") + " }", nil
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return "", fmt.Errorf("no TOML form for a nil %s", v.Type())
		}
		return renderDefault(v.Elem())
	}
	return "", fmt.Errorf("no TOML form for %s", v.Type())
}

// formatDuration is d as Go writes it, without the zero minutes and
// seconds Go adds after hours or minutes: "5s", "2m", "1h30m", "1m30s".
func formatDuration(d time.Duration) string {
	s := d.String()
	if t, ok := strings.CutSuffix(s, "m0s"); ok {
		s = t + "m"
	}
	if t, ok := strings.CutSuffix(s, "h0m"); ok {
		s = t + "h"
	}
	return s
}

// docRow is one row of a key table.
type docRow struct {
	line    int    // 1-based line number in the document
	key     string // the key cell without its backticks
	def     string // the default cell: the code span's content, or the prose
	literal bool   // the default cell is a code span
	unit    string
}

// cellText is the default cell as written.
func (r docRow) cellText() string {
	if r.literal {
		return "`" + r.def + "`"
	}
	return r.def
}

var headingLine = regexp.MustCompile(`^(#{1,6})\s+(.*?)\s*#*\s*$`)

// parseDocSection returns the rows of the key tables under the heading
// whose text is heading, or the problems that prevent reading them.
func parseDocSection(doc, heading string) ([]docRow, []string) {
	lines := strings.Split(doc, "\n")
	start, level := -1, 0
	fenced := false
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			fenced = !fenced
		}
		if m := headingLine.FindStringSubmatch(l); !fenced && m != nil && m[2] == heading {
			start, level = i+1, len(m[1])
			break
		}
	}
	if start < 0 {
		return nil, []string{fmt.Sprintf("no heading %q; add the section with a | key | default | unit | meaning | table", "## "+heading)}
	}
	var (
		rows     []docRow
		problems []string
		tables   int
		inTable  bool // inside a key table's body
	)
	fenced = false
	for i := start; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if strings.HasPrefix(l, "```") {
			fenced = !fenced
		}
		if fenced {
			inTable = false
			continue
		}
		if m := headingLine.FindStringSubmatch(l); m != nil && len(m[1]) <= level {
			break
		}
		if !strings.HasPrefix(l, "|") {
			inTable = false
			continue
		}
		cells := splitRow(l)
		switch {
		case inTable:
			if isSeparator(cells) {
				continue
			}
			r, err := parseRow(cells, i+1)
			if err != nil {
				problems = append(problems, err.Error())
				continue
			}
			rows = append(rows, r)
		case isKeyHeader(cells):
			inTable = true
			tables++
		default:
			// Another table: skip it to its end.
			for i+1 < len(lines) && strings.HasPrefix(strings.TrimSpace(lines[i+1]), "|") {
				i++
			}
		}
	}
	if tables == 0 {
		problems = append(problems, "no table whose header is | key | default | unit | meaning |")
	}
	return rows, problems
}

// isKeyHeader reports whether cells are a key table's header row.
func isKeyHeader(cells []string) bool {
	want := []string{"key", "default", "unit"}
	if len(cells) < len(want) {
		return false
	}
	for i, w := range want {
		if !strings.EqualFold(cells[i], w) {
			return false
		}
	}
	return true
}

var separatorCell = regexp.MustCompile(`^:?-+:?$`)

func isSeparator(cells []string) bool {
	for _, c := range cells {
		if !separatorCell.MatchString(c) {
			return false
		}
	}
	return len(cells) > 0
}

// parseRow reads one row of a key table.
func parseRow(cells []string, line int) (docRow, error) {
	if len(cells) < 3 {
		return docRow{}, fmt.Errorf("line %d: a key row needs key, default and unit cells, got %d cells", line, len(cells))
	}
	key, ok := codeSpan(cells[0])
	if !ok || key == "" {
		return docRow{}, fmt.Errorf("line %d: the key cell %q must be a code span such as `[kafka] brokers`", line, cells[0])
	}
	r := docRow{line: line, key: key, unit: cells[2]}
	r.def, r.literal = codeSpan(cells[1])
	if !r.literal {
		r.def = cells[1]
	}
	return r, nil
}

// codeSpan returns the content of s when s is one code span.
func codeSpan(s string) (string, bool) {
	if len(s) >= 2 && s[0] == '`' && s[len(s)-1] == '`' && !strings.Contains(s[1:len(s)-1], "`") {
		return s[1 : len(s)-1], true
	}
	return s, false
}

// splitRow splits a table row into its trimmed cells. A pipe inside a
// code span or escaped as \| does not split.
func splitRow(l string) []string {
	l = strings.TrimSpace(l)
	l = strings.TrimPrefix(l, "|")
	if strings.HasSuffix(l, "|") && !strings.HasSuffix(l, `\|`) {
		l = l[:len(l)-1]
	}
	var (
		cells []string
		cell  strings.Builder
		code  bool
	)
	for i := 0; i < len(l); i++ {
		switch c := l[i]; {
		case c == '\\' && i+1 < len(l) && l[i+1] == '|':
			cell.WriteByte('|')
			i++
		case c == '`':
			code = !code
			cell.WriteByte(c)
		case c == '|' && !code:
			cells = append(cells, strings.TrimSpace(cell.String()))
			cell.Reset()
		default:
			cell.WriteByte(c)
		}
	}
	return append(cells, strings.TrimSpace(cell.String()))
}

// The walk, the rendering and the checks themselves, on a configuration
// made for the purpose.

type walkConfig struct {
	Host     string            `toml:"host"`
	Timeout  conf.Duration     `toml:"timeout"`
	Peers    map[string]string `toml:"peers"`
	Ratio    float64           `toml:"ratio"`
	Off      bool              `toml:"off"`
	Skipped  int               `toml:"-"`
	hidden   int
	TCP      walkTCP       `toml:"tcp"`
	Upstream []walkUpstr   `toml:"upstream"`
	Opt      *walkOptional `toml:"opt"`
	walkEmbedded
}

type walkTCP struct {
	Bind []string `toml:"bind"`
	TLS  struct {
		Cert string `toml:"cert"`
	} `toml:"tls"`
}

type walkUpstr struct {
	Name    string        `toml:"name"`
	Timeout conf.Duration `toml:"timeout"`
	Limits  struct {
		Max int `toml:"max"`
	} `toml:"limits"`
}

type walkOptional struct {
	Level int `toml:"level"`
}

type walkEmbedded struct {
	Flat string `toml:"flat"`
}

func walkDefault() walkConfig {
	c := walkConfig{
		Host:    "h-1",
		Timeout: conf.Duration(90 * time.Minute),
		Ratio:   1,
		TCP:     walkTCP{Bind: []string{":1", ":2"}},
	}
	c.Flat = "yes"
	c.hidden = 1
	return c
}

func TestConfigKeys(t *testing.T) {
	keys, err := configKeys(walkDefault())
	if err != nil {
		t.Fatal(err)
	}
	type kv struct{ cell, def string }
	var got []kv
	for _, k := range keys {
		def := "-"
		if k.value.IsValid() {
			if def, err = renderDefault(k.value); err != nil {
				t.Fatalf("%s: %v", k.cell, err)
			}
		}
		got = append(got, kv{cell: k.cell, def: def})
	}
	want := []kv{
		{cell: "host", def: `"h-1"`},
		{cell: "timeout", def: `"1h30m"`},
		{cell: "peers", def: `{}`},
		{cell: "ratio", def: `1.0`},
		{cell: "off", def: `false`},
		{cell: "[tcp] bind", def: `[":1", ":2"]`},
		{cell: "[tcp.tls] cert", def: `""`},
		{cell: "[[upstream]] name", def: "-"},
		{cell: "[[upstream]] timeout", def: "-"},
		{cell: "[upstream.limits] max", def: "-"},
		{cell: "[opt] level", def: "-"},
		{cell: "flat", def: `"yes"`},
	}
	if !slices.Equal(got, want) {
		t.Errorf("configKeys:\n got %v\nwant %v", got, want)
	}

	bad := walkDefault()
	bad.Upstream = []walkUpstr{{Name: "a"}}
	if _, err := configKeys(bad); err == nil || !strings.Contains(err.Error(), "upstream") {
		t.Errorf("configKeys with a non-empty array of tables: error %v, want one naming upstream", err)
	}
}

func TestRenderDefault(t *testing.T) {
	tests := []struct {
		name string
		v    any
		want string
	}{
		{name: "seconds", v: conf.Duration(5 * time.Second), want: `"5s"`},
		{name: "minutes", v: conf.Duration(2 * time.Minute), want: `"2m"`},
		{name: "hours", v: conf.Duration(time.Hour), want: `"1h"`},
		{name: "minutes and seconds", v: conf.Duration(90 * time.Second), want: `"1m30s"`},
		{name: "milliseconds", v: conf.Duration(5 * time.Millisecond), want: `"5ms"`},
		{name: "zero duration", v: conf.Duration(0), want: `"0s"`},
		{name: "time.Duration", v: 10 * time.Minute, want: `"10m"`},
		{name: "string", v: "a \"b\"", want: `"a \"b\""`},
		{name: "empty list", v: []string{}, want: `[]`},
		{name: "nil list", v: []string(nil), want: `[]`},
		{name: "whole float", v: 0.0, want: `0.0`},
		{name: "float", v: 1.8, want: `1.8`},
		{name: "map", v: map[string]string{"b": "2", "a-1": "1"}, want: `{ a-1 = "1", b = "2" }`},
		{name: "int list", v: []int{1, 2}, want: `[1, 2]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := renderDefault(reflect.ValueOf(tt.v))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("renderDefault(%#v) = %s, want %s", tt.v, got, tt.want)
			}
		})
	}
}

// driftDoc documents walkDefault() correctly; the cases below break it.
const driftDoc = "# Title\n\n## walk\n\nText, and a table that is not a key table:\n\n" +
	"| a | b |\n|---|---|\n| `x` | y |\n\n" +
	"| key | default | unit | meaning |\n|---|---|---|---|\n" +
	"| `host` | the OS hostname | — | name |\n" +
	"| `timeout` | `\"1h30m\"` | duration | t |\n" +
	"| `peers` | `{}` | table | p |\n" +
	"| `ratio` | `1.0` | fraction | r |\n" +
	"| `off` | `false` | bool | o |\n" +
	"| `flat` | `\"yes\"` | — | f |\n\n" +
	"```\n## walk\n| key | default | unit |\n```\n\n" +
	"### walk: sections\n\n| key | default | unit | meaning |\n|---|---|---|---|\n" +
	"| `[tcp] bind` | `[\":1\", \":2\"]` | host:port list | b |\n" +
	"| `[tcp.tls] cert` | `\"\"` | path | c |\n" +
	"| `[[upstream]] name` | none | — | n |\n" +
	"| `[[upstream]] timeout` | `\"1s\"` | duration | t |\n" +
	"| `[upstream.limits] max` | `0` | count | m |\n" +
	"| `[opt] level` | `0` | level | l |\n\n" +
	"## next\n\n| key | default | unit | meaning |\n|---|---|---|---|\n| `other` | `1` | — | not in walk |\n"

func TestCheckDocSection(t *testing.T) {
	sec := docSection{heading: "walk", defaults: walkDefault(), hostDependent: osHostname("host")}
	tests := []struct {
		name string
		old  string // replaced in driftDoc by new; "" checks driftDoc as it is
		new  string
		want []string // one problem containing each, in order; nil: no problem
	}{
		{name: "in step"},
		{
			name: "default differs",
			old:  "`\"1h30m\"`", new: "`\"90m\"`",
			want: []string{"key `timeout` documents the default `\"90m\"`, but conf_test.walkConfig's Default() has `\"1h30m\"`; change the default cell to `\"1h30m\"`"},
		},
		{
			name: "default not a code span",
			old:  "| `ratio` | `1.0` |", new: "| `ratio` | one |",
			want: []string{"key `ratio`: the default cell \"one\" is not a code span; write `1.0`"},
		},
		{
			name: "key missing",
			old:  "| `[tcp.tls] cert` | `\"\"` | path | c |\n", new: "",
			want: []string{"no row for key `[tcp.tls] cert`; add the row | `[tcp.tls] cert` | `\"\"` |"},
		},
		{
			name: "key the config lacks",
			old:  "`[tcp] bind`", new: "`[tcp] binds`",
			want: []string{"key `[tcp] binds` is not a key of conf_test.walkConfig; remove the row, or fix the key (closest: `[tcp] bind`)",
				"no row for key `[tcp] bind`"},
		},
		{
			name: "documented twice",
			old:  "| `off` | `false` | bool | o |\n", new: "| `off` | `false` | bool | o |\n| `off` | `false` | bool | again |\n",
			want: []string{"key `off` is documented twice"},
		},
		{
			name: "host-dependent default written as a value",
			old:  "| `host` | the OS hostname |", new: "| `host` | `\"h-1\"` |",
			want: []string{"key `host`: its default depends on the host; write the default cell as the phrase \"the OS hostname\""},
		},
		{
			name: "empty unit",
			old:  "| `flat` | `\"yes\"` | — |", new: "| `flat` | `\"yes\"` |  |",
			want: []string{"key `flat` has an empty unit cell"},
		},
		{
			name: "key cell not a code span",
			old:  "| `off` |", new: "| off |",
			want: []string{"the key cell \"off\" must be a code span"},
		},
		{
			name: "no section",
			old:  "## walk\n\nText", new: "## walks\n\nText",
			want: []string{"no heading \"## walk\""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := driftDoc
			if tt.old != "" {
				if !strings.Contains(doc, tt.old) {
					t.Fatalf("driftDoc does not contain %q", tt.old)
				}
				doc = strings.Replace(doc, tt.old, tt.new, 1)
			}
			got := checkDocSection("doc.md", doc, sec)
			if len(got) != len(tt.want) {
				t.Fatalf("%d problems, want %d:\n%s", len(got), len(tt.want), strings.Join(got, "\n"))
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d is\n  %s\nwant it to contain\n  %s", i, got[i], w)
				}
			}
		})
	}
	sec.hostDependent = osHostname("host", "name")
	if got := checkDocSection("doc.md", driftDoc, sec); len(got) != 1 || !strings.Contains(got[0], "hostDependent names `name`") {
		t.Errorf("a stale hostDependent entry: problems %q, want one naming it", got)
	}
}

// TestConfigKeysDecode checks the walk against the decoder: every key it
// finds, set to its rendered default in a file of its own, decodes
// strictly (no unknown key) and reads back as the same rendering.
func TestConfigKeysDecode(t *testing.T) {
	secs := append([]docSection{{heading: "walk", defaults: walkDefault()}}, docSections...)
	for _, sec := range secs {
		t.Run(sec.heading, func(t *testing.T) {
			keys, err := configKeys(sec.defaults)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range keys {
				if !k.value.IsValid() {
					continue
				}
				val, err := renderDefault(k.value)
				if err != nil {
					t.Fatalf("%s: %v", k.cell, err)
				}
				file := tomlAssignment(k.cell, val)
				ptr := reflect.New(reflect.TypeOf(sec.defaults))
				if err := conf.Decode("key.toml", file, ptr.Interface()); err != nil {
					t.Errorf("key %s: %q does not decode: %v", k.cell, file, err)
					continue
				}
				back, err := configKeys(ptr.Elem().Interface())
				if err != nil {
					t.Fatal(err)
				}
				i := slices.IndexFunc(back, func(b configKey) bool { return b.cell == k.cell })
				if got, err := renderDefault(back[i].value); err != nil || got != val {
					t.Errorf("key %s: %q reads back as %s (%v), want %s", k.cell, file, got, err, val)
				}
			}
		})
	}
}

// tomlAssignment is a TOML file that sets the key of cell to val.
func tomlAssignment(cell, val string) string {
	if header, key, ok := strings.Cut(cell, "] "); ok && strings.HasPrefix(cell, "[") {
		return header + "]\n" + key + " = " + val + "\n"
	}
	return cell + " = " + val + "\n"
}
