package rewrite

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/dpproxy/dpproxy/pgerror"
	"github.com/dpproxy/dpproxy/policy"
)

// relation is one table of a query's FROM under the name the query uses.
type relation struct {
	table    *policy.Table
	alias    string
	joinCols []string // public tables: the columns it is joined on
	// joinedTo are, beside joinCols, the columns of earlier tables they
	// equal (alias and column; the alias is the private table's for a
	// column of it).
	joinedTo [][2]string
	qualSQL  string // public tables: the ON condition
	left     bool   // public tables: LEFT JOIN
}

// scope is what column references in a query can resolve to: exactly one
// private table (table, alias) and any number of public tables joined to it.
type scope struct {
	table  *policy.Table
	alias  string
	public []*relation
	// from is the FROM clause as the rewritten SQL writes it: public tables
	// replaced by a DISTINCT ON their join columns, so that a join can
	// never multiply a private row.
	from string
	pol  *policy.Policy
	ctes map[string]*pg_query.SelectStmt
	// A view: the private table is read through FROM (SELECT cols FROM t
	// [WHERE ...]) AS alias or a CTE of that form. visible lists the
	// columns it exposes (nil: all); viewAlias and viewWhere are the inner
	// name and condition, kept in the rewritten SQL.
	visible   map[string]bool
	view      bool
	viewAlias string
	viewWhere string
	shadow    bool // read the private table's pre-bounded shadow copy
	// noSampling keeps useSampling from choosing row sampling
	// (errSampledParamOrder).
	noSampling bool
	// proven are the private columns the verifier accepts unclamped (set
	// by verifyRewritten from the plan's guarded proofs).
	proven map[string]bool
	// params are the statement's bound parameters' comparisons, shared
	// with the scopes of its subqueries (noteParams); nil where the check
	// is not made (the verifier, copies of conditions).
	params *paramUses
}

func (sc *scope) relations() []*relation {
	return append([]*relation{{table: sc.table, alias: sc.alias}}, sc.public...)
}

func resolveFrom(from []*pg_query.Node, pol *policy.Policy, ctes map[string]*pg_query.SelectStmt) (*scope, error) {
	if len(from) != 1 {
		return nil, pgerror.RefuseUnsupported.New("comma joins are not supported").
			WithHint("join a public table explicitly: FROM visits v JOIN departments d ON v.department = d.name")
	}
	sc := &scope{pol: pol, ctes: ctes, params: newParamUses()}
	if err := sc.addFromItem(from[0], pol, true); err != nil {
		return nil, err
	}
	if sc.table == nil {
		return nil, pgerror.RefuseUnsupported.New("queries over public tables alone are not supported yet").
			WithHint("dpproxy answers aggregates over a private table, optionally joined to public tables")
	}
	return sc, nil
}

// addFromItem adds a FROM item. Joins must keep the private table on the
// left: private [INNER|LEFT] JOIN public ON equalities.
func (sc *scope) addFromItem(n *pg_query.Node, pol *policy.Policy, leftmost bool) error {
	switch v := n.Node.(type) {
	case *pg_query.Node_RangeVar:
		return sc.addTable(v.RangeVar, pol, leftmost)
	case *pg_query.Node_JoinExpr:
		j := v.JoinExpr
		if j.Jointype != pg_query.JoinType_JOIN_INNER && j.Jointype != pg_query.JoinType_JOIN_LEFT {
			return pgerror.RefuseUnsupported.New("only INNER and LEFT joins of a private table to public tables are supported")
		}
		if j.IsNatural || len(j.UsingClause) > 0 || j.Quals == nil {
			return pgerror.RefuseUnsupported.New("joins need an explicit ON condition").
				WithHint("write JOIN d ON v.department = d.name")
		}
		if j.Alias != nil {
			return pgerror.RefuseUnsupported.New("aliases on joins are not supported")
		}
		if err := sc.addFromItem(j.Larg, pol, leftmost); err != nil {
			return err
		}
		rv := j.Rarg.GetRangeVar()
		if rv == nil {
			return pgerror.RefuseUnsupported.New("the right side of a join must be a table")
		}
		if err := sc.addTable(rv, pol, false); err != nil {
			return err
		}
		pub := sc.public[len(sc.public)-1]
		sc.shortenNames(j.Quals)
		if err := sc.checkJoinQuals(j.Quals, pub); err != nil {
			return err
		}
		q, err := exprSQL(j.Quals)
		if err != nil {
			return err
		}
		pub.qualSQL, pub.left = q, j.Jointype == pg_query.JoinType_JOIN_LEFT
		return nil
	case *pg_query.Node_RangeSubselect:
		rs := v.RangeSubselect
		if rs.Lateral || rs.Alias == nil || len(rs.Alias.Colnames) > 0 || !leftmost {
			return pgerror.RefuseUnsupported.New("a subquery in FROM must come first, have an alias, and not be LATERAL")
		}
		return sc.addView(rs.Subquery.GetSelectStmt(), rs.Alias.Aliasname, pol, "")
	case *pg_query.Node_RangeFunction:
		return pgerror.RefuseFunction.New("set-returning functions in FROM are not allowed")
	}
	return pgerror.RefuseUnsupported.New("unsupported FROM item")
}

func (sc *scope) addTable(rv *pg_query.RangeVar, pol *policy.Policy, leftmost bool) error {
	if q, ok := sc.ctes[rv.Relname]; ok && rv.Schemaname == "" {
		if !leftmost {
			return pgerror.RefuseUnsupported.New("a common table expression must come first in FROM")
		}
		alias := rv.Relname
		if rv.Alias != nil {
			alias = rv.Alias.Aliasname
		}
		return sc.addView(q, alias, pol, rv.Relname)
	}
	if rv.Catalogname != "" {
		return pgerror.RefuseUnsupported.New("cross-database references are not supported")
	}
	if !rv.Inh {
		return pgerror.RefuseUnsupported.New("FROM ONLY is not supported")
	}
	t := pol.Table(rv.Schemaname, rv.Relname)
	if t == nil {
		name := rv.Relname
		if rv.Schemaname != "" {
			name = rv.Schemaname + "." + name
		}
		if strings.HasPrefix(rv.Schemaname, "pg_") || rv.Schemaname == "information_schema" || strings.HasPrefix(rv.Relname, "pg_") {
			return pgerror.RefuseCatalog.New("catalog relation %s is not allowed in this query", name)
		}
		return pgerror.RefuseUnknownTable.New("relation %q is not declared in the dpproxy policy", name)
	}
	if why := pol.TypeProblem(t); why != "" {
		return pgerror.RefuseTypeMismatch.New("table %s cannot be queried: %s", t.QualifiedName(), why)
	}
	alias := t.Name
	if rv.Alias != nil {
		if len(rv.Alias.Colnames) > 0 {
			return pgerror.RefuseUnsupported.New("column aliases in FROM are not supported")
		}
		alias = rv.Alias.Aliasname
	}
	for _, r := range sc.relations() {
		if r.table != nil && r.alias == alias {
			return pgerror.Newf("42712", "table name %q specified more than once", alias).
				WithHint("give each table in FROM its own alias, e.g. JOIN departments d2")
		}
	}
	if t.IsPrivate() {
		switch {
		case sc.table != nil && !leftmost && sc.table.Privacy == policy.PrivacyUnit && t.Privacy == policy.PrivacyUnit && !sc.view:
			// Private ⋈ private on the privacy unit (checkJoinQuals insists
			// on it): one unit's rows on both sides stay one unit, and the
			// per-unit bounds of the first table are applied after the join.
			sc.public = append(sc.public, &relation{table: t, alias: alias})
			return nil
		case sc.table != nil:
			return pgerror.RefuseUnsupported.New("joins of two private tables (%s and %s) are supported only between tables with a privacy unit, on that unit", sc.table.QualifiedName(), t.QualifiedName()).
				WithHint("join on the privacy unit, e.g. ON v.patient_id = p.patient_id, or query one private table joined to public lookup tables")
		case !leftmost || len(sc.public) > 0:
			return pgerror.RefuseUnsupported.New("the private table %s must come first in FROM", t.QualifiedName()).
				WithHint("write FROM <private table> JOIN <public table> ON ...")
		}
		sc.table, sc.alias = t, alias
		return nil
	}
	sc.public = append(sc.public, &relation{table: t, alias: alias})
	return nil
}

// checkJoinQuals accepts an AND of equalities between a column of the newly
// joined table and a column of a table before it. A private table must be
// joined on the privacy units of both sides.
func (sc *scope) checkJoinQuals(q *pg_query.Node, pub *relation) error {
	if err := sc.checkJoinEqualities(q, pub); err != nil {
		return err
	}
	if pub.table.IsPrivate() && !joinsUnits(q, sc, pub) {
		return pgerror.RefuseUnsupported.New("private table %s must be joined on its privacy unit %s = %s.%s",
			pub.table.QualifiedName(), pub.alias+"."+pub.table.Unit, sc.alias, sc.table.Unit)
	}
	return nil
}

// joinsUnits reports whether q contains the equality of the private
// table's unit and the joined table's unit.
func joinsUnits(q *pg_query.Node, sc *scope, pub *relation) bool {
	if b := q.GetBoolExpr(); b != nil && b.Boolop == pg_query.BoolExprType_AND_EXPR {
		for _, a := range b.Args {
			if joinsUnits(a, sc, pub) {
				return true
			}
		}
		return false
	}
	a := q.GetAExpr()
	if a == nil || operatorName(a.Name) != "=" {
		return false
	}
	var left, right bool
	for _, side := range []*pg_query.Node{a.Lexpr, a.Rexpr} {
		cr := side.GetColumnRef()
		if cr == nil {
			return false
		}
		c, rel, err := sc.resolve(cr)
		if err != nil {
			return false
		}
		switch {
		case rel == pub && c.Name == pub.table.Unit:
			right = true
		case rel.table == sc.table && rel.alias == sc.alias && c.Name == sc.table.Unit:
			left = true
		}
	}
	return left && right
}

func (sc *scope) checkJoinEqualities(q *pg_query.Node, pub *relation) error {
	if b := q.GetBoolExpr(); b != nil && b.Boolop == pg_query.BoolExprType_AND_EXPR {
		for _, a := range b.Args {
			if err := sc.checkJoinEqualities(a, pub); err != nil {
				return err
			}
		}
		return nil
	}
	a := q.GetAExpr()
	if a == nil || a.Kind != pg_query.A_Expr_Kind_AEXPR_OP || operatorName(a.Name) != "=" ||
		a.Lexpr.GetColumnRef() == nil || a.Rexpr.GetColumnRef() == nil {
		return pgerror.RefuseUnsupported.New("join conditions must be equalities between columns, joined by AND")
	}
	var pubCol string
	var other [2]string
	otherSide := 0
	var cols [2]*policy.Column
	var rels [2]*relation
	for i, side := range []*pg_query.Node{a.Lexpr, a.Rexpr} {
		c, rel, err := sc.resolve(side.GetColumnRef())
		if err != nil {
			return err
		}
		cols[i], rels[i] = c, rel
		if rel == pub {
			pubCol = c.Name
		} else {
			other = [2]string{rel.alias, c.Name}
			otherSide++
		}
	}
	if pubCol == "" || otherSide != 1 {
		return pgerror.RefuseUnsupported.New("each join condition must equate a column of %s with a column of an earlier table", pub.alias)
	}
	if err := sameCollation("", []*pg_query.Node{a.Lexpr, a.Rexpr}, sc); err != nil {
		return err
	}
	if !comparableJoinKeys(cols[0], cols[1]) {
		return pgerror.RefuseUnsupported.New("join keys %s (%s) and %s (%s) do not compare without converting one of them, which can fail on some rows' values",
			cols[0].Name, cols[0].Type, cols[1].Name, cols[1].Type).
			WithHint("join on columns of the same type, or of integer and numeric types")
	}
	if sc.pol != nil && sc.pol.BlankPadded(rels[0].table, cols[0].Name) != sc.pol.BlankPadded(rels[1].table, cols[1].Name) {
		// char = varchar compares as char, ignoring trailing spaces, while
		// the lookup's DISTINCT ON keeps 'x' and 'x ' apart: one private
		// row would match both.
		return pgerror.RefuseUnsupported.New("join keys %s and %s compare differently: one is character(n) upstream, whose trailing spaces do not count, the other is not", cols[0].Name, cols[1].Name).
			WithHint("join on columns that are both character(n), or neither")
	}
	pub.joinCols = append(pub.joinCols, pubCol)
	pub.joinedTo = append(pub.joinedTo, other)
	return nil
}

// comparableJoinKeys reports whether PostgreSQL compares two join keys
// without a conversion that can fail: the same type, or types with
// cross-type equality operators (integers of any width, real with double
// precision, dates with timestamps since PostgreSQL 13; NewServer
// requires 14), or an integer beside numeric, which widens exactly. A numeric
// beside a real or double precision column would be converted to double
// precision, which fails beyond ~1.8e308: an error that depends on a row.
// timestamptz joins only timestamptz: beside a timestamp or a date it
// compares in local time, where a spring-forward gap makes one instant
// equal to two local times, and a joined lookup table's DISTINCT ON would
// keep both.
func comparableJoinKeys(a, b *policy.Column) bool {
	family := func(c *policy.Column) string {
		switch {
		case c.IsInteger():
			return "integer"
		case isFloat(c.Type):
			return "float"
		case c.Type == "date", c.Type == "timestamp":
			return "datetime"
		}
		return c.Type
	}
	fa, fb := family(a), family(b)
	return fa == fb || (fa == "integer" && fb == "numeric") || (fa == "numeric" && fb == "integer")
}

// addView accepts a subquery or CTE that is a row-level view of one private
// table: SELECT * or plain columns (aliases only repeating the column's own
// name), optionally filtered by an allowed condition, with nothing that
// aggregates, orders, limits or combines rows. Its rows are the table's own
// rows, so bounding and sensitivity are the table's. cte is the CTE's name
// when q is one's body ("" for a subquery in FROM).
func (sc *scope) addView(q *pg_query.SelectStmt, alias string, pol *policy.Policy, cte string) error {
	refuse := func(why string) error {
		return pgerror.RefuseUnsupported.New("subqueries in FROM must select columns of one private table, optionally with WHERE; %s", why).
			WithHint("move aggregates, joins and filters to the outer query")
	}
	if q == nil || checkSelectShape(q) != nil || q.WithClause != nil || len(q.GroupClause) > 0 || q.HavingClause != nil ||
		len(q.SortClause) > 0 || q.LimitCount != nil || q.LimitOffset != nil || len(q.DistinctClause) > 0 || len(q.FromClause) != 1 {
		return refuse("this one does more")
	}
	rv := q.FromClause[0].GetRangeVar()
	if rv == nil {
		return refuse("it does not read a table")
	}
	// A name of the statement's CTEs there would be read as the table
	// (PostgreSQL reads the CTE), losing its condition; a CTE's own name in
	// its body is the table.
	if _, ok := sc.ctes[rv.Relname]; ok && rv.Schemaname == "" && rv.Relname != cte {
		return refuse("it reads the common table expression " + rv.Relname)
	}
	inner := &scope{pol: pol, params: sc.params}
	if err := inner.addTable(rv, pol, true); err != nil {
		return err
	}
	if inner.table == nil {
		return refuse("it reads no private table")
	}
	inner.shortenNames(q.TargetList...)
	visible := map[string]bool{}
	for _, t := range q.TargetList {
		rt := t.GetResTarget()
		cr := rt.GetVal().GetColumnRef()
		if cr == nil {
			return refuse("it computes an expression")
		}
		if last := cr.Fields[len(cr.Fields)-1]; last.GetAStar() != nil {
			visible = nil
			break
		}
		c, err := inner.column(cr)
		if err != nil {
			return err
		}
		if rt.Name != "" && rt.Name != c.Name {
			return refuse("it renames a column")
		}
		visible[c.Name] = true
	}
	if q.WhereClause != nil {
		inner.shortenNames(q.WhereClause)
		if err := checkPredicate(q.WhereClause, inner); err != nil {
			return err
		}
		w, err := exprSQL(q.WhereClause)
		if err != nil {
			return err
		}
		sc.viewWhere = w
	}
	sc.table, sc.alias, sc.visible, sc.view, sc.viewAlias = inner.table, alias, visible, true, inner.alias
	return nil
}

// fromSQL writes the FROM clause of the rewritten query. Each public table
// is read through SELECT DISTINCT ON its join columns, so that a join
// matches a private row at most once and cannot multiply its contribution.
func (sc *scope) fromSQL() string {
	return sc.privateSQL() + sc.joinsSQL()
}

// privateSQL is the part of fromSQL that reads the private table, under
// the alias the rest of the statement uses.
func (sc *scope) privateSQL() string {
	schema, name := sc.table.Schema, sc.table.Name
	if sc.shadow {
		schema, name = policy.ShadowSchema, sc.table.ShadowName()
	}
	if !sc.view {
		return quoteIdent(schema) + "." + quoteIdent(name) + " AS " + quoteIdent(sc.alias)
	}
	// The view keeps every column (the privacy unit included); the outer
	// query sees only the ones it exposed, checked at planning.
	where := ""
	if sc.viewWhere != "" {
		where = " WHERE " + sc.viewWhere
	}
	return "(SELECT * FROM " + quoteIdent(schema) + "." + quoteIdent(name) + " AS " + quoteIdent(sc.viewAlias) + where + ") AS " + quoteIdent(sc.alias)
}

// joinsSQL is the part of fromSQL after the private table: its joins.
func (sc *scope) joinsSQL() string {
	var b strings.Builder
	for _, r := range sc.public {
		kw := " JOIN "
		if r.left {
			kw = " LEFT JOIN "
		}
		if r.table.IsPrivate() {
			b.WriteString(kw + quoteIdent(r.table.Schema) + "." + quoteIdent(r.table.Name) + " AS " + quoteIdent(r.alias) + " ON " + r.qualSQL)
			continue
		}
		cols := make([]string, len(r.joinCols))
		for i, c := range r.joinCols {
			cols[i] = quoteIdent(c)
		}
		b.WriteString(kw + "(SELECT DISTINCT ON (" + strings.Join(cols, ", ") + ") * FROM " +
			quoteIdent(r.table.Schema) + "." + quoteIdent(r.table.Name) + ") AS " + quoteIdent(r.alias) + " ON " + r.qualSQL)
	}
	return b.String()
}

// namesBySchema reports whether qual (schema.table) names r, the i-th of
// sc.relations(): as in PostgreSQL, only a table without an alias of its
// own (a view's alias is one).
func (sc *scope) namesBySchema(i int, r *relation, qual string) bool {
	return qual == r.table.QualifiedName() && r.alias == r.table.Name && !(i == 0 && sc.view)
}

// undeclaredVisible reports whether r has a column named col upstream that
// the policy does not declare: PostgreSQL resolves names against it all
// the same. So does a view that lists its columns, since the rewritten SQL
// reads it as SELECT * of its table (privateSQL).
func (sc *scope) undeclaredVisible(r *relation, col string) bool {
	return sc.pol != nil && r.table.Column(col) == nil && sc.pol.HasUpstreamColumn(r.table, col)
}

// column resolves a column reference against the scope.
func (sc *scope) column(cr *pg_query.ColumnRef) (*policy.Column, error) {
	c, _, err := sc.resolve(cr)
	return c, err
}

func (sc *scope) resolve(cr *pg_query.ColumnRef) (*policy.Column, *relation, error) {
	var names []string
	for _, f := range cr.Fields {
		if _, star := f.Node.(*pg_query.Node_AStar); star {
			return nil, nil, pgerror.RefusePrivateColumn.New("SELECT * would return the private rows of table %s", sc.table.QualifiedName())
		}
		names = append(names, f.GetString_().GetSval())
	}
	var qual, col string
	switch len(names) {
	case 1:
		col = names[0]
	case 2:
		qual, col = names[0], names[1]
	case 3:
		qual, col = names[0]+"."+names[1], names[2]
	default:
		return nil, nil, pgerror.RefuseUnknownColumn.New("improper qualified name %q", strings.Join(names, "."))
	}
	var found *relation
	for i, r := range sc.relations() {
		if r.table == nil {
			continue
		}
		switch {
		case qual == "":
			declared := r.table.Column(col) != nil
			if !declared && !sc.undeclaredVisible(r, col) {
				continue
			}
			if found != nil {
				err := pgerror.Newf("42702", "column reference %q is ambiguous", col)
				if !declared || found.table.Column(col) == nil {
					err = pgerror.Newf("42702", "column reference %q is ambiguous: %s and %s both have a column of that name upstream, declared in the dpproxy policy or not",
						col, found.alias, r.alias)
				}
				return nil, nil, err.WithHint("qualify it with a table name, e.g. %s.%s", r.alias, col)
			}
			found = r
		case qual == r.alias && len(names) == 2, len(names) == 3 && sc.namesBySchema(i, r, qual):
			found = r
		}
	}
	if found == nil {
		if qual != "" {
			return nil, nil, pgerror.RefuseUnknownColumn.New("missing FROM-clause entry for table %q", qual)
		}
		return nil, nil, pgerror.RefuseUnknownColumn.New("column %q of table %s is not declared in the dpproxy policy", col, sc.table.QualifiedName())
	}
	c := found.table.Column(col)
	if c != nil && found.table == sc.table && sc.visible != nil && !sc.visible[col] {
		return nil, nil, pgerror.RefuseUnknownColumn.New("column %q does not exist in %s", col, sc.alias)
	}
	if c == nil {
		return nil, nil, pgerror.RefuseUnknownColumn.New("column %q of table %s is not declared in the dpproxy policy", col, found.table.QualifiedName())
	}
	if c.Hidden {
		return nil, nil, pgerror.RefuseHiddenColumn.New("column %q of table %s is hidden by the policy", col, found.table.QualifiedName())
	}
	if sc.pol != nil {
		if why := sc.pol.ColumnTypeProblem(found.table, col); why != "" {
			return nil, nil, pgerror.RefuseTypeMismatch.New("column %s of table %s cannot be used: %s", col, found.table.QualifiedName(), why)
		}
	}
	return c, found, nil
}
