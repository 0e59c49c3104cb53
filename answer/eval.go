package answer

import (
	"math"
	"strconv"
	"strings"

	"github.com/dpproxy/dpproxy/rewrite"
)

// evaluator evaluates post-processing expressions for one group.
type evaluator struct {
	plan *rewrite.Plan
	keys []*string
	aggs []Value
}

func (ev *evaluator) eval(e *rewrite.Expr) Value {
	switch e.Kind {
	case rewrite.ExprAgg:
		return ev.aggs[e.Index]
	case rewrite.ExprKey:
		k := ev.keys[e.Index]
		if k == nil {
			return Value{Null: true}
		}
		t := ev.plan.Keys[e.Index].Type
		if t.IsNumber() {
			if f, err := strconv.ParseFloat(*k, 64); err == nil {
				return Value{Num: f}
			}
		}
		if t == rewrite.TypeBool {
			return Value{Num: boolNum(*k == "t")}
		}
		return Value{Str: *k, IsStr: true}
	case rewrite.ExprConst:
		return Value{Null: e.Null, Num: e.Num, Str: e.Str, IsStr: e.IsStr}
	case rewrite.ExprCast:
		return cast(ev.eval(e.Args[0]), e.Type)
	case rewrite.ExprIsNull:
		v := ev.eval(e.Args[0])
		return Value{Num: boolNum(v.Null != (e.Op == "not"))}
	case rewrite.ExprFunc:
		return ev.fn(e)
	case rewrite.ExprOp:
		return ev.op(e)
	}
	return Value{Null: true}
}

func (ev *evaluator) op(e *rewrite.Expr) Value {
	switch e.Op {
	case "AND", "OR":
		// SQL three-valued logic.
		sawNull := false
		for _, a := range e.Args {
			v := ev.eval(a)
			switch {
			case v.Null:
				sawNull = true
			case (v.Num != 0) == (e.Op == "OR"):
				return Value{Num: boolNum(e.Op == "OR")}
			}
		}
		if sawNull {
			return Value{Null: true}
		}
		return Value{Num: boolNum(e.Op == "AND")}
	case "NOT":
		v := ev.eval(e.Args[0])
		if v.Null {
			return v
		}
		return Value{Num: boolNum(v.Num == 0)}
	}
	l, r := ev.eval(e.Args[0]), ev.eval(e.Args[1])
	if l.Null || r.Null {
		return Value{Null: true}
	}
	switch e.Op {
	case "=", "<>", "<", "<=", ">", ">=":
		c := compare(l, r)
		var ok bool
		switch e.Op {
		case "=":
			ok = c == 0
		case "<>":
			ok = c != 0
		case "<":
			ok = c < 0
		case "<=":
			ok = c <= 0
		case ">":
			ok = c > 0
		case ">=":
			ok = c >= 0
		}
		return Value{Num: boolNum(ok)}
	}
	intMath := ev.isInt(e.Args[0]) && ev.isInt(e.Args[1])
	a, b := l.Num, r.Num
	if intMath {
		a, b = math.Round(a), math.Round(b)
	}
	switch e.Op {
	case "+":
		return Value{Num: a + b}
	case "-":
		return Value{Num: a - b}
	case "*":
		return Value{Num: a * b}
	case "/", "%":
		// Division by a noisy zero yields NULL rather than an error, so
		// the answer never fails on a value of the noise.
		if b == 0 {
			return Value{Null: true}
		}
		if e.Op == "%" {
			return Value{Num: math.Mod(a, b)}
		}
		if intMath {
			return Value{Num: math.Trunc(a / b)}
		}
		return Value{Num: a / b}
	}
	return Value{Null: true}
}

func (ev *evaluator) isInt(e *rewrite.Expr) bool {
	switch e.Kind {
	case rewrite.ExprAgg:
		return ev.plan.Aggs[e.Index].Type.IsInteger()
	case rewrite.ExprKey:
		return ev.plan.Keys[e.Index].Type.IsInteger()
	case rewrite.ExprConst, rewrite.ExprCast:
		return e.Type.IsInteger()
	case rewrite.ExprOp:
		return e.Op != "/" && ev.isInt(e.Args[0]) && ev.isInt(e.Args[1])
	}
	return false
}

func (ev *evaluator) fn(e *rewrite.Expr) Value {
	args := make([]Value, len(e.Args))
	for i, a := range e.Args {
		args[i] = ev.eval(a)
	}
	switch e.Op {
	case "coalesce":
		for _, a := range args {
			if !a.Null {
				return a
			}
		}
		return Value{Null: true}
	case "nullif":
		if !args[0].Null && !args[1].Null && compare(args[0], args[1]) == 0 {
			return Value{Null: true}
		}
		return args[0]
	case "greatest", "least":
		var best *Value
		for i := range args {
			if args[i].Null {
				continue
			}
			if best == nil || (e.Op == "greatest") == (compare(args[i], *best) > 0) {
				best = &args[i]
			}
		}
		if best == nil {
			return Value{Null: true}
		}
		return *best
	}
	if args[0].Null {
		return args[0]
	}
	x := args[0].Num
	switch e.Op {
	case "abs":
		return Value{Num: math.Abs(x)}
	case "ceil", "ceiling":
		return Value{Num: math.Ceil(x)}
	case "floor":
		return Value{Num: math.Floor(x)}
	case "round":
		d := 0.0
		if len(args) == 2 {
			if args[1].Null {
				return args[1]
			}
			d = math.Round(args[1].Num)
		}
		p := math.Pow(10, d)
		return Value{Num: math.Round(x*p) / p}
	}
	return Value{Null: true}
}

func cast(v Value, t rewrite.ResultType) Value {
	if v.Null {
		return v
	}
	switch {
	case t == rewrite.TypeText:
		if !v.IsStr {
			return Value{Str: strconv.FormatFloat(v.Num, 'f', -1, 64), IsStr: true}
		}
	case t.IsInteger():
		if v.IsStr {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v.Str), 64)
			return Value{Num: math.Round(f)}
		}
		return Value{Num: math.Round(v.Num)}
	case t.IsNumber() && v.IsStr:
		f, _ := strconv.ParseFloat(strings.TrimSpace(v.Str), 64)
		return Value{Num: f}
	}
	return v
}

func compare(a, b Value) int {
	if a.IsStr && b.IsStr {
		return strings.Compare(a.Str, b.Str)
	}
	x, y := a.Num, b.Num
	if a.IsStr {
		x, _ = strconv.ParseFloat(a.Str, 64)
	}
	if b.IsStr {
		y, _ = strconv.ParseFloat(b.Str, 64)
	}
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// compareForSort orders NULLs as ORDER BY ... NULLS FIRST/LAST says.
func compareForSort(a, b Value, nullsFirst bool) int {
	switch {
	case a.Null && b.Null:
		return 0
	case a.Null:
		if nullsFirst {
			return -1
		}
		return 1
	case b.Null:
		if nullsFirst {
			return 1
		}
		return -1
	}
	return compare(a, b)
}

func boolNum(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// format renders a value as Postgres's text output for the output's type.
func format(v Value, o rewrite.Output) (string, bool) {
	if v.Null {
		return "", true
	}
	if v.IsStr {
		return v.Str, false
	}
	switch {
	case o.Type.IsInteger():
		return strconv.FormatInt(int64(math.Round(v.Num)), 10), false
	case o.Type == rewrite.TypeNumeric:
		return strconv.FormatFloat(v.Num, 'f', o.Decimals, 64), false
	case o.Type == rewrite.TypeBool:
		if v.Num != 0 {
			return "t", false
		}
		return "f", false
	}
	return strconv.FormatFloat(v.Num, 'g', -1, 64), false
}
