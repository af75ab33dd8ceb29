package monitoring_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/goim/goim/internal/admin"
	"github.com/goim/goim/internal/comet"
	"github.com/goim/goim/internal/job"
	"github.com/goim/goim/internal/logic"
)

const (
	dir        = "../../docs/monitoring/"
	rulesFile  = dir + "alerts.yml"
	rulesTests = dir + "alerts_test.yml"
	dashboard  = dir + "dashboard.json"
	operations = "../../docs/operations.md"
)

// metric is what the services export under one name.
type metric struct {
	labels  map[string]bool // variable and constant label names
	summary bool            // exposed with a quantile label
	service bool            // a goim service's own metric (not runtime)
}

// scrapeLabels are added by Prometheus to every series it scrapes.
var scrapeLabels = map[string]bool{"job": true, "instance": true}

// exported collects every metric logic, comet and job register (through a
// Registerer that records each collector's descriptions, so label vectors
// without a series yet count too) and those of the admin registry every
// service serves besides (Go runtime, process, goim_build_info), plus
// Prometheus' own up.
func exported(t *testing.T) map[string]*metric {
	t.Helper()
	out := map[string]*metric{"up": {labels: map[string]bool{}}}
	rec := &recorder{Registerer: prometheus.NewRegistry(), seen: out}

	lc := logic.Default()
	lc.Auth.Insecure, lc.RPC.Insecure, lc.HTTP.AllowAnonymous = true, true, true
	ls, err := logic.New(lc, logic.Deps{Registry: rec})
	if err != nil {
		t.Fatal(err)
	}
	cc := comet.Default()
	cc.RPC.Insecure = true
	cs, err := comet.New(cc, comet.Deps{Registry: rec})
	if err != nil {
		t.Fatal(err)
	}
	jc := job.Default()
	jc.RPC.Insecure, jc.Comets = true, map[string]string{"comet-1": "127.0.0.1:3109"}
	js, err := job.New(jc, job.Deps{Registry: rec})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = ls.Shutdown(ctx)
	_ = cs.Shutdown(ctx)
	_ = js.Shutdown(ctx)
	for _, m := range out {
		m.service = true
	}
	out["up"].service = false

	fams, err := admin.NewRegistry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		m := &metric{labels: map[string]bool{}, summary: f.GetType() == dto.MetricType_SUMMARY}
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				m.labels[l.GetName()] = true
			}
		}
		out[f.GetName()] = m
	}
	if len(out) < 50 {
		t.Fatalf("only %d metrics collected", len(out))
	}
	return out
}

// recorder registers collectors on its Registerer and records the names
// and label names of everything they describe.
type recorder struct {
	prometheus.Registerer
	seen map[string]*metric
}

var (
	descName   = regexp.MustCompile(`^Desc\{fqName: "([^"]+)"`)
	descLabels = regexp.MustCompile(`constLabels: \{(.*)\}, variableLabels: \{([^}]*)\}\}$`)
	constLabel = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="`)
)

func (r *recorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() {
		c.Describe(ch)
		close(ch)
	}()
	for d := range ch {
		s := d.String()
		n := descName.FindStringSubmatch(s)
		l := descLabels.FindStringSubmatch(s[strings.LastIndex(s, "constLabels: {"):])
		if n == nil || l == nil {
			panic("cannot read " + s)
		}
		m := &metric{labels: map[string]bool{}}
		for _, c := range constLabel.FindAllStringSubmatch(l[1], -1) {
			m.labels[c[1]] = true
		}
		for _, v := range strings.Split(l[2], ",") {
			if v = strings.TrimSuffix(strings.TrimPrefix(v, "c("), ")"); v != "" {
				m.labels[v] = true
			}
		}
		r.seen[n[1]] = m
	}
	return r.Registerer.Register(c)
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// query is one PromQL expression and where it is.
type query struct {
	where, expr string
}

// ruleQueries are the expressions of the rules file and the series of its
// unit tests, read line by line: every expr must fit on one line.
func ruleQueries(t *testing.T) []query {
	t.Helper()
	var out []query
	for _, f := range []struct{ path, key string }{{rulesFile, "expr:"}, {rulesTests, "series:"}} {
		data, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(data), "\n") {
			v, ok := strings.CutPrefix(strings.TrimLeft(strings.TrimLeft(line, " "), "- "), f.key)
			if !ok {
				continue
			}
			v = strings.TrimSpace(v)
			if v == "|" || v == ">" || strings.HasPrefix(v, "|") || strings.HasPrefix(v, ">") {
				t.Fatalf("%s:%d: write the expression on one line (this test reads it line by line)", f.path, i+1)
			}
			if len(v) >= 2 && (v[0] == '\'' && v[len(v)-1] == '\'') {
				v = strings.ReplaceAll(v[1:len(v)-1], "''", "'")
			} else if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				if err := json.Unmarshal([]byte(v), &v); err != nil {
					t.Fatalf("%s:%d: %v", f.path, i+1, err)
				}
			}
			out = append(out, query{where: fmt.Sprintf("%s:%d", filepath.Base(f.path), i+1), expr: v})
		}
	}
	return out
}

// dashboardQueries are the expressions of every panel target.
func dashboardQueries(t *testing.T) []query {
	t.Helper()
	data, err := os.ReadFile(dashboard)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboard, err)
	}
	var out []query
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			if tg.Expr == "" {
				t.Errorf("dashboard panel %q has a target without expr", p.Title)
			}
			out = append(out, query{where: fmt.Sprintf("dashboard panel %q", p.Title), expr: tg.Expr})
		}
	}
	if len(out) == 0 {
		t.Fatal("the dashboard has no query")
	}
	return out
}

// selector is a metric name in an expression with the label names of
// its matchers.
type selector struct {
	name   string
	labels []string
}

var promKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "by": true, "without": true,
	"on": true, "ignoring": true, "group_left": true, "group_right": true, "inf": true, "nan": true, "atan2": true,
}

// promAggregations may put by (...) or without (...) between their name
// and their parenthesis.
var promAggregations = map[string]bool{
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true, "count": true,
	"count_values": true, "bottomk": true, "topk": true, "quantile": true, "limitk": true, "limit_ratio": true,
}

// selectors scans a PromQL expression for metric selectors: identifiers
// that are not keywords, not aggregations, not functions (followed by
// "("), not in a label
// list (after by, without, on, ignoring, group_left, group_right) and not
// inside a matcher, range or string.
func selectors(expr string) ([]selector, error) {
	var out []selector
	isIdent := func(c byte, first bool) bool {
		return c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || !first && '0' <= c && c <= '9'
	}
	skipSpace := func(i int) int {
		for i < len(expr) && (expr[i] == ' ' || expr[i] == '\t' || expr[i] == '\n') {
			i++
		}
		return i
	}
	// matchers reads {a="x", b=~"y"} from expr[i] == '{' and returns the
	// label names and the index after '}'.
	matchers := func(i int) ([]string, int, error) {
		var names []string
		i++
		for {
			i = skipSpace(i)
			if i >= len(expr) {
				return nil, i, fmt.Errorf("unclosed {")
			}
			if expr[i] == '}' {
				return names, i + 1, nil
			}
			j := i
			for j < len(expr) && isIdent(expr[j], j == i) {
				j++
			}
			if j == i {
				return nil, i, fmt.Errorf("bad matcher at %q", expr[i:])
			}
			names = append(names, expr[i:j])
			i = skipSpace(j)
			for i < len(expr) && strings.IndexByte("=!~", expr[i]) >= 0 {
				i++
			}
			i = skipSpace(i)
			if i >= len(expr) || expr[i] != '"' {
				return nil, i, fmt.Errorf("matcher %s without a quoted value", names[len(names)-1])
			}
			i++
			for i < len(expr) && expr[i] != '"' {
				if expr[i] == '\\' {
					i++
				}
				i++
			}
			i = skipSpace(i + 1)
			if i < len(expr) && expr[i] == ',' {
				i++
			}
		}
	}
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"':
			for i++; i < len(expr) && expr[i] != '"'; i++ {
				if expr[i] == '\\' {
					i++
				}
			}
			i++
		case c == '[':
			for i < len(expr) && expr[i] != ']' {
				i++
			}
			i++
		case c == '{':
			return nil, fmt.Errorf("a matcher without a metric name at %q", expr[i:])
		case '0' <= c && c <= '9' || c == '.':
			for i < len(expr) && (isIdent(expr[i], false) || expr[i] == '.') {
				i++
			}
		case isIdent(c, true):
			j := i
			for j < len(expr) && isIdent(expr[j], j == i) {
				j++
			}
			word := expr[i:j]
			k := skipSpace(j)
			switch {
			case word == "by" || word == "without" || word == "on" || word == "ignoring" || word == "group_left" || word == "group_right":
				if k < len(expr) && expr[k] == '(' {
					for k < len(expr) && expr[k] != ')' {
						k++
					}
					k++
				}
				i = k
			case promKeywords[strings.ToLower(word)], promAggregations[strings.ToLower(word)]:
				i = j
			case k < len(expr) && expr[k] == '(':
				i = k // a function or an aggregation
			default:
				sel := selector{name: word}
				i = j
				if k < len(expr) && expr[k] == '{' {
					names, next, err := matchers(k)
					if err != nil {
						return nil, err
					}
					sel.labels, i = names, next
				}
				out = append(out, sel)
			}
		default:
			i++
		}
	}
	return out, nil
}

// lookup finds the metric a selector's name refers to: the name itself,
// or a histogram's or summary's series (_bucket, _sum, _count).
func lookup(all map[string]*metric, name string) (*metric, string) {
	if m, ok := all[name]; ok {
		return m, ""
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suf); ok {
			if m, ok := all[base]; ok {
				return m, suf
			}
		}
	}
	return nil, ""
}

// TestMetricsExist: every metric a rule, a rule test or a dashboard panel
// names is one the services export, and every label its matchers name is
// one of that metric's (or job, instance, le for a histogram's buckets,
// quantile for a summary).
func TestMetricsExist(t *testing.T) {
	all := exported(t)
	used := map[string]bool{}
	for _, q := range append(ruleQueries(t), dashboardQueries(t)...) {
		sels, err := selectors(q.expr)
		if err != nil {
			t.Errorf("%s: %q: %v", q.where, q.expr, err)
			continue
		}
		if len(sels) == 0 {
			t.Errorf("%s: %q names no metric", q.where, q.expr)
		}
		for _, s := range sels {
			m, suf := lookup(all, s.name)
			if m == nil {
				t.Errorf("%s: metric %s does not exist (no service registers it)", q.where, s.name)
				continue
			}
			used[strings.TrimSuffix(s.name, suf)] = true
			for _, l := range s.labels {
				ok := m.labels[l] || scrapeLabels[l] || l == "__name__" || l == "le" && suf == "_bucket" || l == "quantile" && m.summary && suf == ""
				if !ok {
					t.Errorf("%s: metric %s has no label %q (it has %v)", q.where, s.name, l, slices.Sorted(maps.Keys(m.labels)))
				}
			}
		}
	}
	if !used["goim_build_info"] {
		t.Error("nothing shows goim_build_info")
	}
}

// TestDashboardComplete: every metric of logic, comet and job has a panel
// (a new metric gets one in the same change).
func TestDashboardComplete(t *testing.T) {
	all := exported(t)
	shown := map[string]bool{}
	for _, q := range dashboardQueries(t) {
		sels, _ := selectors(q.expr)
		for _, s := range sels {
			if _, suf := lookup(all, s.name); suf != "" {
				shown[strings.TrimSuffix(s.name, suf)] = true
			}
			shown[s.name] = true
		}
	}
	for _, name := range slices.Sorted(maps.Keys(all)) {
		if all[name].service && !shown[name] {
			t.Errorf("no dashboard panel shows %s; add one to docs/monitoring/dashboard.json", name)
		}
	}
}

// TestAlertsFromOperations: every metric docs/operations.md says to alert
// on (its "Alert on ..." paragraphs) has a rule in alerts.yml.
func TestAlertsFromOperations(t *testing.T) {
	data, err := os.ReadFile(operations)
	if err != nil {
		t.Fatal(err)
	}
	var wanted []string
	for _, para := range strings.Split(string(data), "\n\n") {
		if !strings.HasPrefix(strings.TrimSpace(para), "Alert on") {
			continue
		}
		for _, m := range regexp.MustCompile("`(goim_[a-z0-9_]+)").FindAllStringSubmatch(para, -1) {
			wanted = append(wanted, m[1])
		}
	}
	if len(wanted) < 10 {
		t.Fatalf("found %d metrics in docs/operations.md's \"Alert on\" paragraphs, want the whole list", len(wanted))
	}
	ruled := map[string]bool{}
	for _, q := range ruleQueries(t) {
		if !strings.HasPrefix(q.where, "alerts.yml") {
			continue
		}
		sels, _ := selectors(q.expr)
		for _, s := range sels {
			ruled[s.name] = true
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				ruled[strings.TrimSuffix(s.name, suf)] = true
			}
		}
	}
	for _, w := range wanted {
		if !ruled[w] {
			t.Errorf("docs/operations.md says to alert on %s, but no rule in alerts.yml uses it", w)
		}
	}
}

// TestSelectors checks the expression scanner itself.
func TestSelectors(t *testing.T) {
	tests := []struct {
		expr string
		want []selector
	}{
		{expr: `sum by (job, instance) (rate(a_total{reason="x",code=~"-5.."}[5m])) > 0.1`,
			want: []selector{{name: "a_total", labels: []string{"reason", "code"}}}},
		{expr: `sum(b) > 1000 and deriv(sum(b)[10m:1m]) > 0`, want: []selector{{name: "b"}, {name: "b"}}},
		{expr: `histogram_quantile(0.99, sum by (le) (rate(c_bucket{x="a,b}"}[5m])))`,
			want: []selector{{name: "c_bucket", labels: []string{"x"}}}},
		{expr: `up{job=~"goim-logic|goim-comet"} == 0`, want: []selector{{name: "up", labels: []string{"job"}}}},
		{expr: `count(count by (version) (d)) > 1 unless on (job) e offset 5m`, want: []selector{{name: "d"}, {name: "e"}}},
		{expr: `f{a="1"}`, want: []selector{{name: "f", labels: []string{"a"}}}},
	}
	for _, tt := range tests {
		got, err := selectors(tt.expr)
		if err != nil {
			t.Errorf("%q: %v", tt.expr, err)
			continue
		}
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("selectors(%q) = %v, want %v", tt.expr, got, tt.want)
		}
	}
	for _, bad := range []string{`{a="b"}`, `f{a="b"`, `f{a}`} {
		if _, err := selectors(bad); err == nil {
			t.Errorf("selectors(%q) accepted it", bad)
		}
	}
}

// TestPromtool runs promtool on the rules, their unit tests and the
// dashboard's queries (as recording rules, which promtool parses): skipped
// when promtool is not installed, unless GOIM_REQUIRE_PROMTOOL=1 (CI,
// through make monitoring-check, which installs Debian's prometheus).
func TestPromtool(t *testing.T) {
	bin, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("GOIM_REQUIRE_PROMTOOL") == "1" {
			t.Fatal("promtool not found and GOIM_REQUIRE_PROMTOOL=1")
		}
		t.Skip("promtool not installed (Debian: apt-get install prometheus)")
	}
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, q := range dashboardQueries(t) {
		e, _ := json.Marshal(q.expr) // a JSON string is a YAML string
		fmt.Fprintf(&b, "      - record: dashboard:query%d\n        expr: %s\n", i, e)
	}
	dash := filepath.Join(t.TempDir(), "dashboard-queries.yml")
	if err := os.WriteFile(dash, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"check", "rules", rulesFile},
		{"test", "rules", rulesTests},
		{"check", "rules", dash},
	} {
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
