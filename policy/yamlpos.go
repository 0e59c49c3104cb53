package policy

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/token"
)

// This file decodes the YAML syntax tree by hand rather than through struct
// tags, so that every value keeps its own line and column: a problem points
// at the value that is wrong (or at the key that is unknown, or at the
// mapping that lacks a key), and decoding goes on after a problem so that
// all of them are reported at once.

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

// maxSteps bounds the work of resolving aliases and merge keys, so that a
// file of nested aliases ("billion laughs") is refused instead of expanded.
const maxSteps = 200_000

// pos is a position in the policy file.
type pos struct{ line, col int }

// decoder collects problems while walking the syntax tree.
type decoder struct {
	file     string
	errs     Problems
	warns    Problems
	anchors  map[string]ast.Node
	steps    int
	tooDeep  bool
	topLevel pos
}

func (d *decoder) errorf(at pos, format string, args ...any) {
	d.errs = append(d.errs, Problem{File: d.file, Line: at.line, Column: at.col, Message: fmt.Sprintf(format, args...)})
}

func (d *decoder) warnf(at pos, format string, args ...any) {
	d.warns = append(d.warns, Problem{File: d.file, Line: at.line, Column: at.col, Message: fmt.Sprintf(format, args...), Warning: true})
}

// posOf is where a node starts. A block mapping starts at its first key
// (go-yaml positions it at the first ':').
func posOf(n ast.Node) pos {
	switch v := n.(type) {
	case nil:
		return pos{1, 1}
	case *ast.MappingNode:
		if !v.IsFlowStyle && len(v.Values) > 0 {
			return posOf(v.Values[0])
		}
	case *ast.MappingValueNode:
		if v.Key != nil {
			return posOf(v.Key)
		}
	case *ast.AnchorNode:
		if v.Start != nil && v.Start.Position != nil {
			return pos{v.Start.Position.Line, v.Start.Position.Column}
		}
	case *ast.LiteralNode:
		if v.Start != nil && v.Start.Position != nil {
			return pos{v.Start.Position.Line, v.Start.Position.Column}
		}
	}
	if tk := n.GetToken(); tk != nil && tk.Position != nil {
		return pos{tk.Position.Line, tk.Position.Column}
	}
	return pos{1, 1}
}

// collectAnchors records every anchor before decoding, which does not visit
// the tree in document order.
func (d *decoder) collectAnchors(n ast.Node) {
	ast.Walk(anchorVisitor{d}, n)
}

type anchorVisitor struct{ d *decoder }

func (v anchorVisitor) Visit(n ast.Node) ast.Visitor {
	if a, ok := n.(*ast.AnchorNode); ok && a.Name != nil {
		if _, dup := v.d.anchors[a.Name.GetToken().Value]; !dup {
			v.d.anchors[a.Name.GetToken().Value] = a.Value
		}
	}
	return v
}

// step counts work; false once the budget is spent.
func (d *decoder) step(at pos) bool {
	d.steps++
	if d.steps > maxSteps {
		if !d.tooDeep {
			d.tooDeep = true
			d.errorf(at, "the policy expands to too many values through aliases (&anchor / *alias); write the repeated parts out")
		}
		return false
	}
	return true
}

// resolve follows anchors, aliases and tags to the node that holds the
// value. It returns nil for an absent value.
func (d *decoder) resolve(n ast.Node) ast.Node {
	for range 64 {
		if n == nil || !d.step(posOf(n)) {
			return nil
		}
		switch v := n.(type) {
		case *ast.AnchorNode:
			n = v.Value
		case *ast.TagNode:
			n = v.Value
		case *ast.AliasNode:
			if v.Value == nil {
				return nil
			}
			name := v.Value.GetToken().Value
			target, ok := d.anchors[name]
			if !ok {
				d.errorf(posOf(v), "alias *%s names no anchor; define &%s before using it", name, name)
				return nil
			}
			n = target
		default:
			return n
		}
	}
	d.errorf(posOf(n), "aliases nest too deeply; write the value out")
	return nil
}

// field is one key: value entry of a mapping.
type field struct {
	key   string
	keyAt pos
	value ast.Node // resolved; nil or *ast.NullNode when empty
	bad   bool     // the value could not be resolved (reported already)
}

// object is a decoded mapping whose keys have been checked.
type object struct {
	d      *decoder
	at     pos
	what   string
	fields map[string]field
	// broken is set when the value was not a mapping (already reported),
	// so that missing keys are not reported again.
	broken bool
}

// object decodes n as a mapping with the given keys; unknown keys are
// reported with a suggestion. what names the mapping in messages. A nil or
// null n yields an empty object; a value that is not a mapping yields an
// empty object and a problem.
func (d *decoder) object(n ast.Node, at pos, what string, keys ...string) *object {
	o := &object{d: d, at: at, what: what, fields: map[string]field{}}
	if n == nil {
		return o
	}
	n = d.resolve(n)
	if n == nil {
		o.broken = true // an alias without anchor, reported by resolve
		return o
	}
	if _, ok := n.(*ast.NullNode); ok {
		return o
	}
	m, ok := n.(*ast.MappingNode)
	if !ok {
		d.errorf(posOf(n), "%s must be a mapping of key: value lines, not %s", what, describe(n))
		o.broken = true
		return o
	}
	o.at = posOf(m)
	d.mergeInto(o, m, keys, 0)
	return o
}

func (d *decoder) mergeInto(o *object, m *ast.MappingNode, keys []string, depth int) {
	var merges []ast.Node
	for _, mv := range m.Values {
		if mv == nil || mv.Key == nil {
			continue
		}
		if !d.step(posOf(mv)) {
			return
		}
		if mv.Key.IsMergeKey() {
			merges = append(merges, mv.Value)
			continue
		}
		k := d.resolve(mv.Key)
		if k == nil {
			continue
		}
		name := scalarText(k)
		at := posOf(mv.Key)
		if _, ok := k.(*ast.MappingNode); ok {
			d.errorf(at, "a key of %s must be a plain word, not a mapping", o.what)
			continue
		}
		if !contains(keys, name) {
			d.errorf(at, "unknown key %q in %s; %s", name, o.what, suggest(name, keys))
			continue
		}
		if _, dup := o.fields[name]; dup {
			d.errorf(at, "key %q appears twice in %s; keep one", name, o.what)
			continue
		}
		v := d.resolve(mv.Value)
		o.fields[name] = field{key: name, keyAt: at, value: v, bad: v == nil && mv.Value != nil}
	}
	// Merged keys (<<: *anchor) fill in what the mapping does not set itself.
	if depth > 8 {
		d.errorf(posOf(m), "merge keys (<<) nest too deeply; write the keys out")
		return
	}
	for _, mn := range merges {
		mn = d.resolve(mn)
		var srcs []ast.Node
		switch v := mn.(type) {
		case *ast.MappingNode:
			srcs = []ast.Node{v}
		case *ast.SequenceNode:
			srcs = v.Values
		default:
			d.errorf(posOf(m), "<< must merge a mapping or a list of mappings (<<: *anchor)")
			continue
		}
		for _, s := range srcs {
			sm, ok := d.resolve(s).(*ast.MappingNode)
			if !ok {
				d.errorf(posOf(m), "<< must merge a mapping or a list of mappings (<<: *anchor)")
				continue
			}
			sub := &object{d: d, what: o.what, fields: map[string]field{}}
			d.mergeInto(sub, sm, keys, depth+1)
			for k, f := range sub.fields {
				if _, ok := o.fields[k]; !ok {
					o.fields[k] = f
				}
			}
		}
	}
}

// sub decodes key's value as a nested mapping with the given keys.
func (o *object) sub(key, what string, keys ...string) *object {
	f, ok := o.fields[key]
	if f.bad {
		return &object{d: o.d, at: f.keyAt, what: what, fields: map[string]field{}, broken: true}
	}
	at := o.at
	if ok {
		at = f.keyAt
	}
	return o.d.object(f.value, at, what, keys...)
}

// has reports whether key is present (possibly with an empty value).
func (o *object) has(key string) bool { _, ok := o.fields[key]; return ok }

// valueAt is where key's value is, or the mapping when key is absent.
func (o *object) valueAt(key string) pos {
	f, ok := o.fields[key]
	if !ok {
		return o.at
	}
	if f.value == nil {
		return f.keyAt
	}
	if _, null := f.value.(*ast.NullNode); null {
		return f.keyAt
	}
	return posOf(f.value)
}

// keyAt is where key is written, or the mapping when key is absent.
func (o *object) keyAt(key string) pos {
	if f, ok := o.fields[key]; ok {
		return f.keyAt
	}
	return o.at
}

// scalar returns key's value as a scalar node, or nil when absent. An empty
// value or a mapping/list is reported with example, which shows what to
// write.
func (o *object) scalar(key, example string) ast.Node {
	f, ok := o.fields[key]
	if !ok || f.bad {
		return nil
	}
	switch v := f.value.(type) {
	case nil, *ast.NullNode:
		o.d.errorf(f.keyAt, "%s has no value; write e.g. `%s: %s`", key, key, example)
		return nil
	case *ast.MappingNode, *ast.SequenceNode:
		o.d.errorf(posOf(v), "%s must be a single value such as `%s: %s`, not %s", key, key, example, describe(v))
		return nil
	}
	return f.value
}

// str returns key's string value; ok is false when absent or invalid.
func (o *object) str(key, example string) (string, bool) {
	n := o.scalar(key, example)
	if n == nil {
		return "", false
	}
	return scalarText(n), true
}

// num returns key's numeric value.
func (o *object) num(key, example string) (float64, bool) {
	n := o.scalar(key, example)
	if n == nil {
		return 0, false
	}
	f, ok := number(n)
	if !ok {
		o.d.errorf(posOf(n), "%s must be a number such as %s, not %s", key, example, describe(n))
	}
	return f, ok
}

// integer returns key's whole-number value.
func (o *object) integer(key, example string) (int64, bool) {
	n := o.scalar(key, example)
	if n == nil {
		return 0, false
	}
	f, ok := number(n)
	if !ok || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		o.d.errorf(posOf(n), "%s must be a whole number such as %s, not %s", key, example, describe(n))
		return 0, false
	}
	return int64(f), true
}

// boolean returns key's true/false value.
func (o *object) boolean(key string) (bool, bool) {
	n := o.scalar(key, "true")
	if n == nil {
		return false, false
	}
	b, ok := n.(*ast.BoolNode)
	if !ok {
		o.d.errorf(posOf(n), "%s must be true or false, not %s", key, describe(n))
		return false, false
	}
	return b.Value, true
}

// list returns key's list items (resolved), or nil when absent or empty. A
// single scalar where a list is expected is reported.
func (o *object) list(key, example string) ([]ast.Node, bool) {
	f, ok := o.fields[key]
	if !ok || f.bad {
		return nil, false
	}
	switch v := f.value.(type) {
	case nil, *ast.NullNode:
		return nil, true
	case *ast.SequenceNode:
		out := make([]ast.Node, 0, len(v.Values))
		for _, it := range v.Values {
			r := o.d.resolve(it)
			if r == nil {
				r = it
			}
			out = append(out, r)
		}
		return out, true
	default:
		o.d.errorf(posOf(v), "%s must be a list such as %s, not %s", key, example, describe(v))
		return nil, false
	}
}

// number converts a scalar to a float64. go-yaml reads 1e-6 as a string, so
// strings that parse as numbers count too.
func number(n ast.Node) (float64, bool) {
	switch v := n.(type) {
	case *ast.IntegerNode:
		switch x := v.Value.(type) {
		case int64:
			return float64(x), true
		case uint64:
			return float64(x), true
		}
	case *ast.FloatNode:
		return v.Value, true
	case *ast.InfinityNode:
		return v.Value, true
	case *ast.NanNode:
		return math.NaN(), true
	case *ast.StringNode:
		s := strings.TrimSpace(v.Value)
		if s == "" || strings.ContainsAny(s, "iInN_xXoObB") { // no inf/nan/hex spellings
			return 0, false
		}
		f, err := strconv.ParseFloat(s, 64)
		return f, err == nil
	}
	return 0, false
}

// scalarText is a scalar's text as written (quotes removed).
func scalarText(n ast.Node) string {
	switch v := n.(type) {
	case *ast.StringNode:
		return v.Value
	case *ast.LiteralNode:
		if v.Value != nil {
			return v.Value.Value
		}
		return ""
	case *ast.NullNode:
		return ""
	}
	if tk := n.GetToken(); tk != nil {
		return tk.Value
	}
	return ""
}

// describe names a value for a message: a quoted scalar, "a list" or "a mapping".
func describe(n ast.Node) string {
	switch n.(type) {
	case *ast.MappingNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case nil, *ast.NullNode:
		return "nothing"
	}
	s := scalarText(n)
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return strconv.Quote(s)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// suggest proposes the closest of options to s, or lists them all.
func suggest(s string, options []string) string {
	if best, ok := closest(s, options); ok {
		return fmt.Sprintf("did you mean %q?", best)
	}
	sorted := append([]string(nil), options...)
	sort.Strings(sorted)
	return "valid keys: " + strings.Join(sorted, ", ")
}

// closest returns the option within edit distance 2 (or a third of its
// length) of s.
func closest(s string, options []string) (string, bool) {
	best, bestD := "", math.MaxInt
	for _, o := range options {
		if d := editDistance(strings.ToLower(s), o); d < bestD {
			best, bestD = o, d
		}
	}
	limit := max(2, len(best)/3)
	return best, best != "" && bestD <= limit
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return math.MaxInt
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
