package rewrite

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"

	"github.com/dpproxy/dpproxy/policy"
)

// verifyRewritten re-parses a rewritten statement and checks, without the
// planner's help, that it can only release bounded aggregates: one SELECT
// whose outputs are the plan's group keys followed by aggregates that are
// counts, or sums of values clamped to constant bounds; that reads only the
// scope's table, filtered by predicates on the allowlist; and, for tables
// with a privacy unit, that per-unit totals are clamped and groups per unit
// are limited before the final aggregation.
func verifyRewritten(sql string, sc *scope, plan *Plan) error {
	raws, err := parse(sql)
	if err != nil {
		return fmt.Errorf("does not re-parse: %w", err)
	}
	if len(raws) != 1 || raws[0].Stmt.GetSelectStmt() == nil {
		return fmt.Errorf("is not one SELECT")
	}
	top := raws[0].Stmt.GetSelectStmt()
	sc.proven = provenColumns(plan, sc)
	// The rewritten SQL may repeat a condition (sampled joins): the
	// statement's parameters were checked as the analyst wrote them.
	params := sc.params
	sc.params = nil
	defer func() { sc.proven, sc.params = nil, params }()
	nk, nq := len(plan.Keys), plan.Columns()
	if !plan.UnitLevel {
		if plan.Sampled > 0 {
			if top, err = unwrapSampled(top, sc, plan.Sampled); err != nil {
				return err
			}
		}
		if err := verifyRowLevel(top, sc, nk, nq); err != nil {
			return err
		}
		return verifyCentred(top, plan, sc)
	}
	for _, q := range plan.Quantities {
		if q.Centre != nil {
			return fmt.Errorf("a per-unit plan centres a sum after the query")
		}
	}
	if err := verifyPlainSelect(top); err != nil {
		return err
	}
	if len(top.TargetList) != nk+nq {
		return fmt.Errorf("has %d outputs, want %d", len(top.TargetList), nk+nq)
	}
	for i, t := range top.TargetList[:nk] {
		if columnName(t.GetResTarget().GetVal()) != fmt.Sprintf("k%d", i) {
			return fmt.Errorf("output %d is not the group key k%d", i, i)
		}
	}
	for i, t := range top.TargetList[nk:] {
		if err := verifyOuterAggregate(t.GetResTarget().GetVal()); err != nil {
			return fmt.Errorf("output %d: %w", nk+i, err)
		}
	}
	if nk > 0 {
		if err := verifyGroupPositions(top.GroupClause, nk); err != nil {
			return err
		}
	}
	if len(top.FromClause) != 1 || top.FromClause[0].GetRangeSubselect() == nil {
		return fmt.Errorf("outer query does not read a subquery")
	}
	sub := top.FromClause[0].GetRangeSubselect().Subquery.GetSelectStmt()
	if sub == nil || verifyPlainSelect(sub) != nil {
		return fmt.Errorf("malformed bounding subquery")
	}
	perUnit := sub
	if nk > 0 && top.WhereClause == nil && isPerUnit(sub) {
		// No random choice of groups: sound only if the per-unit query's
		// own WHERE lets a unit reach at most MaxGroups key combinations.
		n, err := keyCombinations(sub, nk)
		if err != nil {
			return err
		}
		if n > plan.MaxGroups {
			return fmt.Errorf("keys allow %d groups per unit without a choice of groups, more than %d", n, plan.MaxGroups)
		}
		return verifyPerUnit(sub, sc, nk)
	}
	if nk > 0 {
		// dp_bounded: row_number() OVER (PARTITION BY dp_unit ORDER BY random()),
		// and the outer WHERE keeps rank <= max groups.
		if err := verifyRankFilter(top.WhereClause, rankCol, plan.MaxGroups); err != nil {
			return err
		}
		if err := verifyRanking(sub); err != nil {
			return err
		}
		if len(sub.FromClause) != 1 || sub.FromClause[0].GetRangeSubselect() == nil {
			return fmt.Errorf("bounding layer does not read the per-unit subquery")
		}
		perUnit = sub.FromClause[0].GetRangeSubselect().Subquery.GetSelectStmt()
		if perUnit == nil {
			return fmt.Errorf("missing per-unit subquery")
		}
	} else if top.WhereClause != nil || len(top.GroupClause) > 0 {
		return fmt.Errorf("ungrouped outer query has WHERE or GROUP BY")
	}
	return verifyPerUnit(perUnit, sc, nk)
}

func verifyPlainSelect(s *pg_query.SelectStmt) error {
	if s.Op != pg_query.SetOperation_SETOP_NONE || s.WithClause != nil || s.IntoClause != nil || len(s.ValuesLists) > 0 ||
		len(s.LockingClause) > 0 || len(s.DistinctClause) > 0 || s.HavingClause != nil || len(s.WindowClause) > 0 ||
		len(s.SortClause) > 0 || s.LimitCount != nil || s.LimitOffset != nil {
		return fmt.Errorf("has a clause the rewriter never emits")
	}
	return nil
}

func verifyTableRef(from []*pg_query.Node, sc *scope) error {
	if len(from) != 1 {
		return fmt.Errorf("reads %d relations", len(from))
	}
	return verifyFromItem(from[0], sc, true)
}

// verifyFromItem accepts the private table, leftmost, joined to public
// tables each read through SELECT DISTINCT ON (its join columns) * and
// joined on equalities of columns.
func verifyFromItem(n *pg_query.Node, sc *scope, leftmost bool) error {
	if rv := n.GetRangeVar(); rv != nil {
		if !leftmost || !sc.isPrivateTable(rv) {
			return fmt.Errorf("reads a relation other than %s", sc.table.QualifiedName())
		}
		return nil
	}
	if rs := n.GetRangeSubselect(); rs != nil && leftmost {
		// A view of the private table: SELECT * FROM t [WHERE allowed].
		q := rs.Subquery.GetSelectStmt()
		if rs.Lateral || renamesColumns(rs.Alias) || q == nil || verifyPlainSelect(q) != nil || len(q.GroupClause) > 0 || len(q.TargetList) != 1 || len(q.FromClause) != 1 {
			return fmt.Errorf("reads a subquery other than a view of %s", sc.table.QualifiedName())
		}
		if cr := q.TargetList[0].GetResTarget().GetVal().GetColumnRef(); cr == nil || len(cr.Fields) != 1 || cr.Fields[0].GetAStar() == nil {
			return fmt.Errorf("view does not select *")
		}
		rv := q.FromClause[0].GetRangeVar()
		if rv == nil || !sc.isPrivateTable(rv) {
			return fmt.Errorf("view reads a relation other than %s", sc.table.QualifiedName())
		}
		if q.WhereClause != nil {
			inner := &scope{table: sc.table, alias: rv.Relname, pol: sc.pol, proven: sc.proven}
			if rv.Alias != nil {
				inner.alias = rv.Alias.Aliasname
			}
			if err := verifyPredicate(q.WhereClause, inner); err != nil {
				return fmt.Errorf("view condition fails validation: %w", err)
			}
		}
		return nil
	}
	j := n.GetJoinExpr()
	if j == nil || (j.Jointype != pg_query.JoinType_JOIN_INNER && j.Jointype != pg_query.JoinType_JOIN_LEFT) || j.Quals == nil {
		return fmt.Errorf("has an unexpected FROM item")
	}
	if err := verifyFromItem(j.Larg, sc, leftmost); err != nil {
		return err
	}
	if rv := j.Rarg.GetRangeVar(); rv != nil {
		// Private ⋈ private: both with a privacy unit, joined on it.
		var priv *relation
		for _, r := range sc.public {
			if rv.Alias != nil && r.alias == rv.Alias.Aliasname && r.table.IsPrivate() {
				priv = r
			}
		}
		if priv == nil || priv.table.Name != rv.Relname || priv.table.Schema != rv.Schemaname || !rv.Inh || renamesColumns(rv.Alias) ||
			sc.table.Privacy != "unit" || priv.table.Privacy != "unit" || !joinsUnits(j.Quals, sc, priv) {
			return fmt.Errorf("joins a private table other than on the privacy unit")
		}
		return nil
	}
	rs := j.Rarg.GetRangeSubselect()
	if rs == nil || rs.Alias == nil || rs.Lateral || renamesColumns(rs.Alias) {
		return fmt.Errorf("joins something other than a deduplicated public table")
	}
	var pub *relation
	for _, r := range sc.public {
		if r.alias == rs.Alias.Aliasname {
			pub = r
		}
	}
	sub := rs.Subquery.GetSelectStmt()
	if pub == nil || sub == nil || len(sub.FromClause) != 1 || sub.WhereClause != nil || len(sub.GroupClause) > 0 || len(sub.DistinctClause) == 0 ||
		sub.Op != pg_query.SetOperation_SETOP_NONE || sub.WithClause != nil || sub.IntoClause != nil || len(sub.ValuesLists) > 0 ||
		len(sub.LockingClause) > 0 || sub.HavingClause != nil || len(sub.WindowClause) > 0 || len(sub.SortClause) > 0 ||
		sub.LimitCount != nil || sub.LimitOffset != nil || len(sub.TargetList) != 1 {
		return fmt.Errorf("joins an undeclared or undeduplicated relation")
	}
	if cr := sub.TargetList[0].GetResTarget().GetVal().GetColumnRef(); sub.TargetList[0].GetResTarget().Name != "" || cr == nil ||
		len(cr.Fields) != 1 || cr.Fields[0].GetAStar() == nil {
		return fmt.Errorf("the deduplicated public table selects something other than its rows")
	}
	prv := sub.FromClause[0].GetRangeVar()
	if prv == nil || prv.Relname != pub.table.Name || prv.Schemaname != pub.table.Schema || pub.table.IsPrivate() || renamesColumns(prv.Alias) {
		return fmt.Errorf("joins a relation other than the public table %s", pub.table.QualifiedName())
	}
	distinct := map[string]bool{}
	for _, d := range sub.DistinctClause {
		cr := d.GetColumnRef()
		if cr == nil || len(cr.Fields) != 1 {
			return fmt.Errorf("DISTINCT ON is not over columns")
		}
		distinct[cr.Fields[0].GetString_().GetSval()] = true
	}
	joined := map[string]bool{}
	if err := verifyJoinQuals(j.Quals, pub, sc, distinct, joined); err != nil {
		return err
	}
	// DISTINCT ON more columns than the join's would leave several rows
	// per join key: a private row could match each of them.
	for c := range distinct {
		if !joined[c] {
			return fmt.Errorf("DISTINCT ON column %s is not a join column", c)
		}
	}
	return nil
}

func verifyJoinQuals(q *pg_query.Node, pub *relation, sc *scope, distinct, joined map[string]bool) error {
	if b := q.GetBoolExpr(); b != nil && b.Boolop == pg_query.BoolExprType_AND_EXPR {
		for _, a := range b.Args {
			if err := verifyJoinQuals(a, pub, sc, distinct, joined); err != nil {
				return err
			}
		}
		return nil
	}
	a := q.GetAExpr()
	if a == nil || a.Kind != pg_query.A_Expr_Kind_AEXPR_OP || operatorName(a.Name) != "=" || a.Lexpr.GetColumnRef() == nil || a.Rexpr.GetColumnRef() == nil {
		return fmt.Errorf("join condition is not an equality of columns")
	}
	onPub := 0
	for _, side := range []*pg_query.Node{a.Lexpr, a.Rexpr} {
		c, rel, err := sc.resolve(side.GetColumnRef())
		if err != nil {
			return err
		}
		if rel == pub {
			if !distinct[c.Name] {
				return fmt.Errorf("join column %s is not deduplicated", c.Name)
			}
			joined[c.Name] = true
			onPub++
		}
	}
	if onPub != 1 {
		return fmt.Errorf("join condition does not link the public table to an earlier one")
	}
	return nil
}

// verifyReads checks the query that reads the private table: no clause the
// rewriter never emits, only the scope's relations, an allowed WHERE.
func verifyReads(s *pg_query.SelectStmt, sc *scope) error {
	if err := verifyPlainSelect(s); err != nil {
		return err
	}
	if err := verifyTableRef(s.FromClause, sc); err != nil {
		return err
	}
	if s.WhereClause != nil {
		if err := verifyPredicate(s.WhereClause, sc); err != nil {
			return fmt.Errorf("WHERE fails validation: %w", err)
		}
	}
	return nil
}

func verifyRowLevel(s *pg_query.SelectStmt, sc *scope, nk, nq int) error {
	if err := verifyReads(s, sc); err != nil {
		return err
	}
	if len(s.TargetList) != nk+nq {
		return fmt.Errorf("has %d outputs, want %d", len(s.TargetList), nk+nq)
	}
	for i, t := range s.TargetList {
		v := t.GetResTarget().GetVal()
		if i < nk {
			if err := verifyKeyExpr(v, sc); err != nil {
				return err
			}
			continue
		}
		if err := verifyRowAggregate(v, sc); err != nil {
			return fmt.Errorf("output %d: %w", i, err)
		}
	}
	return verifyGroupPositions(s.GroupClause, nk)
}

// verifyPerUnit checks the per-unit query's exact layout: the privacy unit,
// then the nk group keys k0.., then aggregates, grouped by exactly the unit
// and the keys; an extra output or group item would split a unit's
// contribution into more clamped pieces than the sensitivity allows for.
func verifyPerUnit(s *pg_query.SelectStmt, sc *scope, nk int) error {
	if err := verifyReads(s, sc); err != nil {
		return err
	}
	if len(s.TargetList) == 0 {
		return fmt.Errorf("per-unit query is empty")
	}
	first := s.TargetList[0].GetResTarget()
	cr := first.GetVal().GetColumnRef()
	if first.Name != unitCol || cr == nil {
		return fmt.Errorf("per-unit query does not start with the privacy unit")
	}
	last := cr.Fields[len(cr.Fields)-1].GetString_().GetSval()
	if last != sc.table.Unit {
		return fmt.Errorf("per-unit query groups by %q, not the privacy unit %q", last, sc.table.Unit)
	}
	if err := verifyGroupPositions(s.GroupClause, nk+1); err != nil {
		return fmt.Errorf("per-unit query: %w", err)
	}
	if len(s.TargetList) < 1+nk {
		return fmt.Errorf("per-unit query lacks its keys")
	}
	for i, t := range s.TargetList[1 : 1+nk] {
		rt := t.GetResTarget()
		if rt.Name != fmt.Sprintf("k%d", i) || verifyKeyExpr(rt.GetVal(), sc) != nil {
			return fmt.Errorf("per-unit output %d is not group key k%d", i+1, i)
		}
	}
	for _, t := range s.TargetList[1+nk:] {
		v := t.GetResTarget().GetVal()
		if c := v.GetAConst(); c != nil {
			continue
		}
		// COALESCE(sum, 0): a unit whose values are all NULL adds 0.
		if ce := v.GetCoalesceExpr(); ce != nil && len(ce.Args) == 2 {
			if z, ok := numConst(ce.Args[1]); ok && z == 0 {
				v = ce.Args[0]
			}
		}
		if verifyRowAggregate(v, sc) == nil {
			continue
		}
		return fmt.Errorf("per-unit query has an unexpected output")
	}
	return nil
}

func verifyGroupPositions(items []*pg_query.Node, nk int) error {
	if len(items) != nk {
		return fmt.Errorf("groups by %d items, want %d", len(items), nk)
	}
	for i, g := range items {
		if p, ok := intConst(g); !ok || int(p) != i+1 {
			return fmt.Errorf("GROUP BY item %d is not position %d", i, i+1)
		}
	}
	return nil
}

// verifyKeyExpr accepts a column or an allowed derived key.
func verifyKeyExpr(n *pg_query.Node, sc *scope) error {
	if cr := n.GetColumnRef(); cr != nil {
		_, err := sc.column(cr)
		return err
	}
	b := &planBuilder{sc: sc}
	if ce := n.GetCaseExpr(); ce != nil && ce.Arg == nil && ce.Defresult == nil && len(ce.Args) == 1 {
		// dateKeyGuard's CASE WHEN <allowed condition> THEN <derived key> END:
		// the condition only turns some keys into NULL.
		w := ce.Args[0].GetCaseWhen()
		if err := verifyPredicate(w.Expr, sc); err != nil {
			return err
		}
		if f := w.Result.GetFuncCall(); f != nil {
			_, _, err := b.derivedKey(f)
			return err
		}
	}
	if f := n.GetFuncCall(); f != nil {
		_, _, err := b.derivedKey(f)
		return err
	}
	return fmt.Errorf("group key is neither a column nor an allowed derived key")
}

// verifyRowAggregate accepts count(*), count(col), sum(clamp(col)) and
// sum(clamp(col) - c), each with an optional FILTER on the allowlist.
func verifyRowAggregate(n *pg_query.Node, sc *scope) error {
	f := n.GetFuncCall()
	if f == nil || f.Over != nil || f.AggDistinct || len(f.AggOrder) > 0 || f.AggWithinGroup {
		return fmt.Errorf("is not a plain aggregate")
	}
	if f.AggFilter != nil {
		conds := andArgs(f.AggFilter)
		// The planner's NULL filter on an aggregated expression (valueFilter):
		// whether a row's own bounded expression is NULL. Such an expression
		// raises no data-dependent error (isSafeInner), so testing it is as
		// safe as any allowed predicate.
		if nt := conds[len(conds)-1].GetNullTest(); nt != nil && nt.Nulltesttype == pg_query.NullTestType_IS_NOT_NULL && isSafeInner(nt.Arg, sc) {
			conds = conds[:len(conds)-1]
		}
		for _, c := range conds {
			if err := verifyPredicate(c, sc); err != nil {
				return err
			}
		}
	}
	switch funcName(f) {
	case "count":
		if f.AggStar {
			return nil
		}
		if len(f.Args) == 1 && f.Args[0].GetColumnRef() != nil {
			_, err := sc.column(f.Args[0].GetColumnRef())
			return err
		}
		if len(f.Args) == 1 && isSafeInner(f.Args[0], sc) {
			return nil
		}
	case "sum":
		if len(f.Args) == 1 && isClamped(f.Args[0], sc) {
			return nil
		}
	}
	return fmt.Errorf("is not a count or a sum of a clamped column")
}

// verifyOuterAggregate accepts count(col), sum(LEAST(col, c)) and
// sum(LEAST(GREATEST(col, c1), c2)) over per-unit columns.
func verifyOuterAggregate(n *pg_query.Node) error {
	f := n.GetFuncCall()
	if f == nil || f.Over != nil || f.AggDistinct || f.AggFilter != nil || len(f.Args) != 1 {
		return fmt.Errorf("is not a plain aggregate")
	}
	arg := f.Args[0]
	switch funcName(f) {
	case "count":
		if arg.GetColumnRef() != nil {
			return nil
		}
	case "sum":
		if isScaledCount(arg) {
			return nil
		}
		least := arg.GetMinMaxExpr()
		if least == nil || least.Op != pg_query.MinMaxOp_IS_LEAST || len(least.Args) != 2 || !isNumConst(least.Args[1]) {
			return fmt.Errorf("per-unit total is not clamped from above")
		}
		inner := least.Args[0]
		if g := inner.GetMinMaxExpr(); g != nil {
			if g.Op != pg_query.MinMaxOp_IS_GREATEST || len(g.Args) != 2 || !isNumConst(g.Args[1]) {
				return fmt.Errorf("per-unit total is not clamped from below")
			}
			inner = g.Args[0]
		}
		if inner.GetColumnRef() != nil {
			return nil
		}
	}
	return fmt.Errorf("is not a bounded aggregate of per-unit totals")
}

func verifyRankFilter(w *pg_query.Node, rank string, maxGroups int) error {
	a := w.GetAExpr()
	if a == nil || a.Kind != pg_query.A_Expr_Kind_AEXPR_OP || operatorName(a.Name) != "<=" || columnName(a.Lexpr) != rank ||
		len(a.Lexpr.GetColumnRef().GetFields()) != 1 {
		return fmt.Errorf("outer WHERE does not limit groups per unit")
	}
	if c, ok := intConst(a.Rexpr); !ok || c != int64(maxGroups) {
		return fmt.Errorf("outer WHERE limits groups per unit to the wrong number")
	}
	return nil
}

func verifyRanking(s *pg_query.SelectStmt) error {
	for _, t := range s.TargetList {
		rt := t.GetResTarget()
		f := rt.GetVal().GetFuncCall()
		if f == nil {
			continue
		}
		if rt.Name != rankCol || funcName(f) != "row_number" || f.Over == nil || len(f.Over.PartitionClause) != 1 || len(f.Over.OrderClause) != 1 ||
			columnName(f.Over.PartitionClause[0]) != unitCol || len(f.Over.PartitionClause[0].GetColumnRef().GetFields()) != 1 {
			return fmt.Errorf("bounding layer computes something other than a random rank per unit")
		}
		order := f.Over.OrderClause[0].GetSortBy().GetNode().GetFuncCall()
		if order == nil || funcName(order) != "random" {
			return fmt.Errorf("groups per unit are not chosen in random order")
		}
		return nil
	}
	return fmt.Errorf("bounding layer has no rank")
}

// isClamped matches LEAST(GREATEST(col[::numeric], c1), c2) [- c3], and the
// product of two such (centred) values, each optionally cast.
func isClamped(n *pg_query.Node, sc *scope) bool {
	if a := n.GetAExpr(); a != nil && a.Kind == pg_query.A_Expr_Kind_AEXPR_OP && operatorName(a.Name) == "*" {
		// Widened first: a product of two int4 values can overflow, an
		// error some rows would raise and others not.
		return castTo(a.Lexpr, "int8", "numeric") && castTo(a.Rexpr, "int8", "numeric") &&
			isClampedTerm(a.Lexpr, sc) && isClampedTerm(a.Rexpr, sc)
	}
	return isClampedTerm(n, sc)
}

// castTo reports whether n is a cast to one of types (their last name).
func castTo(n *pg_query.Node, types ...string) bool {
	tc := n.GetTypeCast()
	if tc == nil {
		return false
	}
	names := tc.TypeName.GetNames()
	return len(names) > 0 && slices.Contains(types, names[len(names)-1].GetString_().GetSval())
}

func isClampedTerm(n *pg_query.Node, sc *scope) bool {
	if tc := n.GetTypeCast(); tc != nil {
		if !castTo(n, "int8", "numeric") { // a narrowing cast can fail
			return false
		}
		n = tc.Arg
	}
	if a := n.GetAExpr(); a != nil {
		if a.Kind != pg_query.A_Expr_Kind_AEXPR_OP || operatorName(a.Name) != "-" || !isNumConst(a.Rexpr) {
			return false
		}
		n = a.Lexpr
	}
	if provenColumn(n, sc) {
		return true
	}
	least := n.GetMinMaxExpr()
	if least == nil || least.Op != pg_query.MinMaxOp_IS_LEAST || len(least.Args) != 2 || !isNumConst(least.Args[1]) {
		return false
	}
	greatest := least.Args[0].GetMinMaxExpr()
	if greatest == nil || greatest.Op != pg_query.MinMaxOp_IS_GREATEST || len(greatest.Args) != 2 || !isNumConst(greatest.Args[1]) {
		return false
	}
	col := greatest.Args[0]
	if tc := col.GetTypeCast(); tc != nil {
		if !castTo(col, "numeric") { // clampSQL casts to numeric only
			return false
		}
		col = tc.Arg
	}
	cr := col.GetColumnRef()
	if cr == nil {
		// An aggregated expression: bounded by this clamp, it need only be
		// free of data-dependent errors.
		return isSafeInner(col, sc)
	}
	c, err := sc.column(cr)
	return err == nil && c.Bounds != nil
}

// isSafeInner accepts what boundedExpr emits inside the outer clamp: clamped
// numeric columns, numeric constants, + - * and division by a non-zero
// constant, searched CASE with allowed conditions, and COALESCE.
func isSafeInner(n *pg_query.Node, sc *scope) bool {
	if n == nil {
		return false
	}
	switch v := n.Node.(type) {
	case *pg_query.Node_MinMaxExpr:
		// Inside an expression a clamped column is numeric (boundedExpr), so
		// the arithmetic around it cannot overflow.
		if len(v.MinMaxExpr.Args) != 2 {
			return false
		}
		greatest := v.MinMaxExpr.Args[0].GetMinMaxExpr()
		return greatest != nil && len(greatest.Args) == 2 &&
			(castTo(greatest.Args[0], "numeric") || greatest.Args[0].GetColumnRef() == nil) && isClampedTerm(n, sc)
	case *pg_query.Node_AConst:
		return isNumConst(n)
	case *pg_query.Node_AExpr:
		a := v.AExpr
		op := operatorName(a.Name)
		if a.Kind != pg_query.A_Expr_Kind_AEXPR_OP {
			return false
		}
		switch op {
		case "+", "-", "*":
			return (a.Lexpr == nil || isSafeInner(a.Lexpr, sc)) && isSafeInner(a.Rexpr, sc)
		case "/":
			d, ok := numConst(a.Rexpr)
			return ok && d != 0 && isSafeInner(a.Lexpr, sc)
		}
	case *pg_query.Node_CaseExpr:
		if v.CaseExpr.Arg != nil {
			return false
		}
		for _, w := range v.CaseExpr.Args {
			cw := w.GetCaseWhen()
			if cw == nil || verifyPredicate(cw.Expr, sc) != nil || !isSafeInner(cw.Result, sc) {
				return false
			}
		}
		return v.CaseExpr.Defresult == nil || isSafeInner(v.CaseExpr.Defresult, sc)
	case *pg_query.Node_CoalesceExpr:
		for _, a := range v.CoalesceExpr.Args {
			if !isSafeInner(a, sc) {
				return false
			}
		}
		return true
	case *pg_query.Node_TypeCast:
		names := v.TypeCast.TypeName.GetNames()
		return len(names) > 0 && names[len(names)-1].GetString_().GetSval() == "numeric" && isSafeInner(v.TypeCast.Arg, sc)
	}
	return false
}

func isNumConst(n *pg_query.Node) bool {
	if n == nil {
		return false
	}
	c := n.GetAConst()
	if c == nil {
		return false
	}
	switch c.Val.(type) {
	case *pg_query.A_Const_Ival, *pg_query.A_Const_Fval:
		return true
	}
	return false
}

// isScaledCount matches col * LEAST(1, c::numeric / NULLIF(total, 0)): a
// unit's bucket count scaled so that its counts total at most c.
func isScaledCount(n *pg_query.Node) bool {
	a := n.GetAExpr()
	if a == nil || operatorName(a.Name) != "*" || a.Lexpr.GetColumnRef() == nil {
		return false
	}
	least := a.Rexpr.GetMinMaxExpr()
	if least == nil || least.Op != pg_query.MinMaxOp_IS_LEAST || len(least.Args) != 2 {
		return false
	}
	if one, ok := intConst(least.Args[0]); !ok || one != 1 {
		return false
	}
	div := least.Args[1].GetAExpr()
	if div == nil || operatorName(div.Name) != "/" {
		return false
	}
	cnum := div.Lexpr
	if tc := cnum.GetTypeCast(); tc != nil {
		cnum = tc.Arg
	}
	if c, ok := intConst(cnum); !ok || c < 1 {
		return false
	}
	nullif := div.Rexpr.GetAExpr()
	if nullif == nil || nullif.Kind != pg_query.A_Expr_Kind_AEXPR_NULLIF || nullif.Lexpr.GetColumnRef() == nil {
		return false
	}
	z, ok := intConst(nullif.Rexpr)
	return ok && z == 0
}

// columnPathOf is a column reference's names, or nil if it has a star or
// is not a column reference.
func columnPathOf(cr *pg_query.ColumnRef) []string {
	var names []string
	for _, f := range cr.GetFields() {
		if f.GetString_().GetSval() == "" {
			return nil
		}
		names = append(names, f.GetString_().GetSval())
	}
	return names
}

// isPrivateTable reports whether rv names the scope's private table, or its
// shadow copy when the plan reads it.
func (sc *scope) isPrivateTable(rv *pg_query.RangeVar) bool {
	if !rv.Inh || renamesColumns(rv.Alias) {
		return false
	}
	if sc.shadow {
		return rv.Schemaname == policy.ShadowSchema && rv.Relname == sc.table.ShadowName()
	}
	return rv.Relname == sc.table.Name && rv.Schemaname == sc.table.Schema
}

// renamesColumns reports whether an alias renames its relation's columns
// (t AS x(a, b)): every check here takes a column's name to be the
// policy's, which such a list could give another column (the unit's
// name to a row id, say).
func renamesColumns(a *pg_query.Alias) bool {
	return a != nil && len(a.Colnames) > 0
}

// isPerUnit reports whether s is the per-unit query itself (its first
// output is the privacy unit), not the ranking layer over it.
func isPerUnit(s *pg_query.SelectStmt) bool {
	if len(s.TargetList) == 0 {
		return false
	}
	return s.TargetList[0].GetResTarget().GetName() == unitCol
}

// keyCombinations counts the key combinations a unit can reach in the
// per-unit query s: each of its nk key outputs (after the unit) must be a
// column that a top-level conjunct of s's WHERE restricts to an IN list of
// constants; the count is the product of the lists' lengths.
func keyCombinations(s *pg_query.SelectStmt, nk int) (int, error) {
	if len(s.TargetList) < 1+nk {
		return 0, fmt.Errorf("per-unit query lacks its keys")
	}
	var conjuncts []*pg_query.Node
	if be := s.WhereClause.GetBoolExpr(); be != nil && be.Boolop == pg_query.BoolExprType_AND_EXPR {
		conjuncts = be.Args
	} else if s.WhereClause != nil {
		conjuncts = []*pg_query.Node{s.WhereClause}
	}
	n := 1
	for i := 1; i <= nk; i++ {
		keyNode := s.TargetList[i].GetResTarget().GetVal()
		key := columnPath(keyNode)
		if key == "" {
			return 0, fmt.Errorf("group key %d is not a column, so its groups are not limited", i)
		}
		size := 0
		for _, c := range conjuncts {
			e := c.GetAExpr()
			if e == nil || e.Kind != pg_query.A_Expr_Kind_AEXPR_IN || columnPath(e.Lexpr) != key {
				continue
			}
			if len(e.Name) != 1 || e.Name[0].GetString_().GetSval() != "=" {
				continue // NOT IN
			}
			list := e.Rexpr.GetList()
			if list == nil {
				continue
			}
			all := true
			for _, item := range list.Items {
				if item.GetAConst() == nil {
					all = false
				}
			}
			if all && (size == 0 || len(list.Items) < size) {
				size = len(list.Items)
			}
		}
		if size == 0 {
			return 0, fmt.Errorf("group key %q is not limited to a list of values", key)
		}
		n *= size
	}
	return n, nil
}

// columnPath is a column reference with all its qualifiers, or "".
func columnPath(n *pg_query.Node) string {
	return strings.Join(columnPathOf(n.GetColumnRef()), ".")
}

// columnName is the last name of a column reference, or "".
func columnName(n *pg_query.Node) string {
	cr := n.GetColumnRef()
	if cr == nil || len(cr.Fields) == 0 {
		return ""
	}
	return cr.Fields[len(cr.Fields)-1].GetString_().GetSval()
}

// verifyCentred checks the quantities a row-level plan centres after the
// query (Quantity.Centre): the column is sum(x') beside its count column
// count(x) over the same rows, x' being x itself (proven bounds) or x
// clamped and filtered to x IS NOT NULL, as count(x) is (the clamp turns
// NULL into lo), so that Σx' - mid·n is the centred sum whose sensitivity
// the plan claims.
//
// Centring after the query also moves the bound on each row's term out of
// SQL, so the clamp's constants (or a proven column's policy bounds) are
// checked here too: every x' - mid lies within ±L1 sensitivity.
func verifyCentred(s *pg_query.SelectStmt, plan *Plan, sc *scope) error {
	nk := len(plan.Keys)
	output := func(q int) *pg_query.FuncCall {
		return s.TargetList[nk+plan.ColumnOffset(q)].GetResTarget().GetVal().GetFuncCall()
	}
	for i, q := range plan.Quantities {
		c := q.Centre
		if c == nil {
			continue
		}
		if q.Choice != nil || c.Count < 0 || c.Count >= len(plan.Quantities) || plan.Quantities[c.Count].Choice != nil {
			return fmt.Errorf("centred sum q%d has no count", i)
		}
		sum, cnt := output(i), output(c.Count)
		if sum == nil || cnt == nil || funcName(sum) != "sum" || funcName(cnt) != "count" || len(sum.Args) != 1 || len(cnt.Args) != 1 {
			return fmt.Errorf("centred sum q%d is not a sum beside a count", i)
		}
		col := columnPath(cnt.Args[0])
		x := uncast(sum.Args[0])
		sumFilter := andArgs(sum.AggFilter)
		if col == "" {
			return fmt.Errorf("centred sum q%d counts no column", i)
		}
		mid, err := strconv.ParseFloat(c.Mid, 64)
		if err != nil {
			return fmt.Errorf("centred sum q%d: midpoint %q", i, c.Mid)
		}
		within := func(lo, hi float64) error {
			// (a float's last bit of slack: the planner computes mid and
			// the sensitivity in float64 too)
			if !(lo <= mid && mid <= hi && math.Max(mid-lo, hi-mid) <= q.L1Sensitivity*(1+1e-12)) {
				return fmt.Errorf("centred sum q%d: values in [%v, %v] less %v exceed its sensitivity %v", i, lo, hi, mid, q.L1Sensitivity)
			}
			return nil
		}
		if columnPath(x) == col {
			if !provenColumn(x, sc) {
				return fmt.Errorf("centred sum q%d sums an unproven column unclamped", i)
			}
			column, _, err := sc.resolve(x.GetColumnRef())
			if err != nil || column.Bounds == nil {
				return fmt.Errorf("centred sum q%d sums a column without bounds", i)
			}
			if err := within(column.Bounds.Lower, column.Bounds.Upper); err != nil {
				return err
			}
		} else {
			least := x.GetMinMaxExpr()
			if least == nil || least.Op != pg_query.MinMaxOp_IS_LEAST || len(least.Args) != 2 {
				return fmt.Errorf("centred sum q%d sums neither its count's column nor its clamp", i)
			}
			greatest := least.Args[0].GetMinMaxExpr()
			if greatest == nil || greatest.Op != pg_query.MinMaxOp_IS_GREATEST || len(greatest.Args) != 2 || columnPath(uncast(greatest.Args[0])) != col {
				return fmt.Errorf("centred sum q%d clamps another column than its count counts", i)
			}
			lo, ok1 := numConst(greatest.Args[1])
			hi, ok2 := numConst(least.Args[1])
			if !ok1 || !ok2 {
				return fmt.Errorf("centred sum q%d clamps to non-constant bounds", i)
			}
			if err := within(lo, hi); err != nil {
				return err
			}
			if len(sumFilter) == 0 {
				return fmt.Errorf("centred sum q%d does not skip NULL as its count does", i)
			}
			nt := sumFilter[len(sumFilter)-1].GetNullTest()
			if nt == nil || nt.Nulltesttype != pg_query.NullTestType_IS_NOT_NULL || columnPath(nt.Arg) != col {
				return fmt.Errorf("centred sum q%d does not skip NULL as its count does", i)
			}
			sumFilter = sumFilter[:len(sumFilter)-1]
		}
		cntFilter := andArgs(cnt.AggFilter)
		if len(sumFilter) != len(cntFilter) {
			return fmt.Errorf("centred sum q%d does not filter as its count does", i)
		}
		for j := range sumFilter {
			a, err1 := exprSQL(sumFilter[j])
			b, err2 := exprSQL(cntFilter[j])
			if err1 != nil || err2 != nil || a != b {
				return fmt.Errorf("centred sum q%d does not filter as its count does", i)
			}
		}
	}
	return nil
}

func uncast(n *pg_query.Node) *pg_query.Node {
	if tc := n.GetTypeCast(); tc != nil {
		return tc.Arg
	}
	return n
}

// andArgs are the conjuncts of a FILTER condition (nil for none).
func andArgs(n *pg_query.Node) []*pg_query.Node {
	switch b := n.GetBoolExpr(); {
	case n == nil:
		return nil
	case b != nil && b.Boolop == pg_query.BoolExprType_AND_EXPR:
		return b.Args
	}
	return []*pg_query.Node{n}
}

// verifyPredicate accepts a condition of the rewritten SQL only as the
// planner leaves it: checkPredicate, which the planner runs, also makes
// arithmetic safe (a division by a column becomes one by NULLIF(col, 0)),
// so the verifier checks a copy and refuses a condition it would change.
func verifyPredicate(n *pg_query.Node, sc *scope) error {
	before, err := exprSQL(n)
	if err != nil {
		return err
	}
	cp := proto.Clone(n).(*pg_query.Node)
	if err := checkPredicate(cp, sc); err != nil {
		return err
	}
	if after, err := exprSQL(cp); err != nil || after != before {
		return fmt.Errorf("condition %s is not in the form the planner emits", before)
	}
	return nil
}
