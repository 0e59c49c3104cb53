package rewrite

import (
	"maps"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/dpproxy/dpproxy/pgerror"
	"github.com/dpproxy/dpproxy/policy"
)

// Catalog (introspection) queries are what psql's \d commands, JDBC's
// DatabaseMetaData, SQLAlchemy's inspector and the drivers' type loaders
// send. They read only schema metadata, which is not private: they run
// upstream as they are (KindPassthrough), parameters included.
//
// What may be read is a typed allowlist, checked by a walk over the whole
// statement (set operations, CTEs, joins, subqueries, sublinks) whose
// default refuses:
//   - relations: the pg_catalog relations in catalogRelations and the
//     information_schema views (except the user-mapping ones), and CTEs in
//     scope. A user table anywhere in the statement is refused.
//   - columns: every column of an allowed relation except the statistics
//     in statisticColumns (pg_class.reltuples/relpages/relallvisible, …).
//     `*` and whole-row references are refused when a relation with such a
//     column is read.
//   - functions: catalogFuncs (format_type, pg_get_expr, has_*_privilege,
//     …). Size functions and pg_stat_* functions are refused as statistics
//     (DP014); anything else not listed as DP012.
//
// Statistics relations (pg_stats, pg_statistic, pg_stat_*, pg_statio_*,
// pg_class's row and page estimates, size functions) are refused with
// DP014 naming the relation, column or function.
//
// Tables absent from the policy are visible as schema: \dt lists them and
// \d describes them. Their rows stay unreachable (DP004). Schema is not
// private under dpproxy's trust model; hiding it would need rewriting every
// introspection query and would break drivers.

// readsCatalog reports whether a SELECT reads a system catalog relation
// (pg_catalog.*, information_schema.*, or an unqualified pg_*) anywhere: in
// FROM, joins, subqueries, CTEs or set operations.
func readsCatalog(sel *pg_query.SelectStmt) bool {
	found := false
	var visit func(n *pg_query.Node)
	visit = func(n *pg_query.Node) {
		if n == nil || found {
			return
		}
		switch x := n.Node.(type) {
		case *pg_query.Node_RangeVar:
			found = isCatalogRelation(x.RangeVar)
		case *pg_query.Node_JoinExpr:
			visit(x.JoinExpr.Larg)
			visit(x.JoinExpr.Rarg)
		case *pg_query.Node_RangeSubselect:
			visit(x.RangeSubselect.Subquery)
		case *pg_query.Node_SelectStmt:
			visitSelect(x.SelectStmt, visit)
		case *pg_query.Node_RangeFunction:
			for _, f := range x.RangeFunction.Functions {
				for _, item := range f.GetList().GetItems() {
					if fc := item.GetFuncCall(); fc != nil && catalogFuncs[funcName(fc)] {
						found = true
					}
				}
			}
		}
	}
	visitSelect(sel, visit)
	return found
}

func visitSelect(sel *pg_query.SelectStmt, visit func(*pg_query.Node)) {
	if sel == nil {
		return
	}
	for _, n := range sel.FromClause {
		visit(n)
	}
	if sel.WithClause != nil {
		for _, c := range sel.WithClause.Ctes {
			visit(c.GetCommonTableExpr().GetCtequery())
		}
	}
	if sel.Larg != nil {
		visitSelect(sel.Larg, visit)
	}
	if sel.Rarg != nil {
		visitSelect(sel.Rarg, visit)
	}
}

func isCatalogRelation(rv *pg_query.RangeVar) bool {
	return rv.Schemaname == "pg_catalog" || rv.Schemaname == "information_schema" ||
		(rv.Schemaname == "" && strings.HasPrefix(rv.Relname, "pg_"))
}

// classifyCatalog decides whether an introspection query may run upstream
// as it is: only when every relation, column and function it names is on
// the allowlist.
func classifyCatalog(sel *pg_query.SelectStmt, text string, _ *policy.Policy) (*Statement, error) {
	w := &catalogWalker{}
	if err := w.selectStmt(sel, &catalogScope{}); err != nil {
		return nil, err
	}
	return &Statement{Kind: KindPassthrough, SQL: text}, nil
}

// catalogRelations are the pg_catalog relations a catalog query may read.
var catalogRelations = setOf(
	"pg_aggregate", "pg_am", "pg_amop", "pg_amproc", "pg_attrdef", "pg_attribute", "pg_auth_members",
	"pg_cast", "pg_class", "pg_collation", "pg_constraint", "pg_conversion", "pg_database",
	"pg_db_role_setting", "pg_default_acl", "pg_depend", "pg_description", "pg_enum", "pg_event_trigger",
	"pg_extension", "pg_foreign_data_wrapper", "pg_foreign_server", "pg_foreign_table", "pg_index",
	"pg_inherits", "pg_init_privs", "pg_language", "pg_namespace", "pg_opclass", "pg_operator",
	"pg_opfamily", "pg_parameter_acl", "pg_partitioned_table", "pg_policy", "pg_proc", "pg_publication",
	"pg_publication_namespace", "pg_publication_rel", "pg_range", "pg_rewrite", "pg_seclabel",
	"pg_sequence", "pg_shdepend", "pg_shdescription", "pg_shseclabel", "pg_statistic_ext", "pg_tablespace",
	"pg_transform", "pg_trigger", "pg_ts_config", "pg_ts_config_map", "pg_ts_dict", "pg_ts_parser",
	"pg_ts_template", "pg_type",
	// views
	"pg_available_extensions", "pg_available_extension_versions", "pg_config", "pg_group", "pg_indexes",
	"pg_matviews", "pg_policies", "pg_publication_tables", "pg_roles", "pg_rules", "pg_seclabels",
	"pg_settings", "pg_tables", "pg_timezone_abbrevs", "pg_timezone_names", "pg_user", "pg_views",
)

// refusedInformationSchema are the information_schema views that are not
// schema metadata (user mappings can hold passwords).
var refusedInformationSchema = setOf("user_mapping_options", "user_mappings", "_pg_user_mappings")

// statisticColumns are columns of allowed relations that reveal how many
// rows or pages a table has, or how much it was written to.
var statisticColumns = map[string]string{
	"reltuples": "pg_class", "relpages": "pg_class", "relallvisible": "pg_class",
	"relfrozenxid": "pg_class", "relminmxid": "pg_class",
	"datfrozenxid": "pg_database", "datminmxid": "pg_database",
}

// catalogFuncs are the functions a catalog query may call: they read schema
// metadata or compute on their arguments only.
var catalogFuncs = setOf(
	// schema metadata
	"format_type", "pg_get_userbyid", "pg_get_expr", "pg_get_indexdef", "pg_get_constraintdef",
	"pg_get_triggerdef", "pg_get_viewdef", "pg_get_ruledef", "pg_get_function_arguments",
	"pg_get_function_identity_arguments", "pg_get_function_result", "pg_get_functiondef",
	"pg_get_function_arg_default", "pg_get_function_sqlbody", "pg_get_partkeydef",
	"pg_get_partition_constraintdef", "pg_get_statisticsobjdef", "pg_get_statisticsobjdef_columns",
	"pg_get_statisticsobjdef_expressions", "pg_get_serial_sequence", "pg_get_keywords",
	"pg_get_publication_tables", "pg_relation_is_publishable", "pg_partition_tree", "pg_partition_ancestors",
	"pg_partition_root", "pg_describe_object", "pg_identify_object", "pg_identify_object_as_address",
	"pg_encoding_to_char", "pg_char_to_encoding", "pg_tablespace_location", "obj_description",
	"col_description", "shobj_description", "pg_options_to_table", "pg_show_all_settings",
	"pg_settings_get_flags", "pg_indexam_has_property", "pg_index_column_has_property",
	"pg_index_has_property", "pg_get_object_address", "pg_typeof", "pg_collation_for",
	"oidvectortypes", "acldefault", "aclexplode", "pg_is_other_temp_schema", "pg_my_temp_schema",
	"pg_is_in_recovery", "pg_encoding_max_length", "pg_column_is_updatable", "pg_relation_is_updatable",
	"pg_get_viewdef_ext", "pg_get_replica_identity_index",
	"pg_table_is_visible", "pg_type_is_visible", "pg_function_is_visible", "pg_operator_is_visible",
	"pg_opclass_is_visible", "pg_opfamily_is_visible", "pg_collation_is_visible",
	"pg_conversion_is_visible", "pg_statistics_obj_is_visible", "pg_ts_config_is_visible",
	"pg_ts_dict_is_visible", "pg_ts_parser_is_visible", "pg_ts_template_is_visible",
	"to_regclass", "to_regtype", "to_regproc", "to_regprocedure", "to_regnamespace", "to_regrole",
	"to_regoper", "to_regoperator", "to_regcollation", "to_regtypemod",
	"has_table_privilege", "has_column_privilege", "has_any_column_privilege", "has_schema_privilege",
	"has_database_privilege", "has_function_privilege", "has_sequence_privilege", "has_type_privilege",
	"has_language_privilege", "has_tablespace_privilege", "has_foreign_data_wrapper_privilege",
	"has_server_privilege", "has_parameter_privilege", "pg_has_role", "row_security_active",
	"information_schema._pg_expandarray", "information_schema._pg_index_position",
	"information_schema._pg_truetypid", "information_schema._pg_truetypmod",
	"information_schema._pg_char_max_length", "information_schema._pg_char_octet_length",
	"information_schema._pg_numeric_precision", "information_schema._pg_numeric_precision_radix",
	"information_schema._pg_numeric_scale", "information_schema._pg_datetime_precision",
	"information_schema._pg_interval_type",
	// session
	"current_schema", "current_schemas", "current_database", "current_user", "session_user",
	"current_catalog", "current_role", "user", "version", "current_setting", "now",
	"pg_postmaster_start_time", "pg_conf_load_time",
	// computing on values
	"array_to_string", "array_length", "array_upper", "array_lower", "array_position", "array_positions",
	"array_dims", "array_ndims", "array_remove", "array_cat", "array_append", "array_prepend",
	"string_to_array", "cardinality", "unnest", "generate_series", "generate_subscripts",
	"quote_ident", "quote_literal", "quote_nullable", "lower", "upper", "length", "char_length",
	"octet_length", "substring", "substr", "replace", "concat", "concat_ws", "regexp_replace",
	"regexp_match", "regexp_matches", "regexp_split_to_array", "split_part", "btrim", "ltrim", "rtrim",
	"left", "right", "position", "strpos", "starts_with", "format", "translate", "lpad", "rpad",
	"textcat", "abs", "greatest", "least", "nullif", "sum", "avg", "getdatabaseencoding", "int2vectorout", "array_in", "row_number",
	"rank", "dense_rank", "count", "array_agg", "string_agg", "max", "min", "bool_and", "bool_or",
	"every", "json_agg", "jsonb_agg", "json_build_object", "jsonb_build_object", "json_build_array",
	"jsonb_build_array", "to_json", "to_jsonb", "row_to_json", "pg_size_pretty",
)

// statisticFunc reports whether a function reveals sizes or statistics.
func statisticFunc(name string) bool {
	name = strings.TrimPrefix(name, "pg_catalog.")
	return strings.HasPrefix(name, "pg_stat_") || strings.HasSuffix(name, "_size") ||
		name == "pg_relation_filenode" || name == "pg_relation_filepath" ||
		name == "pg_sequence_last_value" || name == "currval" || name == "lastval" || name == "nextval"
}

func setOf(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// catalogWalker checks a catalog query. Its scope tracks which CTE names
// are visible, so a CTE cannot be used to smuggle a user table past the
// check, and which names denote a row of pg_class or pg_database, whose
// statistics columns `*` and whole-row references would expose.
type catalogWalker struct{}

type catalogScope struct {
	ctes map[string]bool
	// statRows are the aliases (and relation names) of pg_class and
	// pg_database in this SELECT's FROM and the enclosing ones.
	statRows map[string]bool
	// localStat: this SELECT's own FROM reads pg_class or pg_database, so
	// an unqualified `*` would include statistics.
	localStat bool
}

func (s *catalogScope) child() *catalogScope {
	c := &catalogScope{ctes: map[string]bool{}, statRows: map[string]bool{}}
	if s != nil {
		maps.Copy(c.ctes, s.ctes)
		maps.Copy(c.statRows, s.statRows)
	}
	return c
}

func (w *catalogWalker) selectStmt(sel *pg_query.SelectStmt, sc *catalogScope) error {
	return w.walkSelect(sel, sc)
}

func (w *catalogWalker) walkSelect(sel *pg_query.SelectStmt, outer *catalogScope) error {
	if sel == nil {
		return nil
	}
	ctes := outer.child()
	switch {
	case sel.IntoClause != nil:
		return pgerror.RefuseWrite.New("SELECT INTO creates a table and is not allowed through dpproxy")
	case len(sel.LockingClause) > 0:
		return pgerror.RefuseWrite.New("SELECT ... FOR UPDATE/SHARE locks rows and is not allowed")
	}
	if wc := sel.WithClause; wc != nil {
		if wc.Recursive {
			for _, c := range wc.Ctes {
				ctes.ctes[c.GetCommonTableExpr().GetCtename()] = true
			}
		}
		for _, c := range wc.Ctes {
			cte := c.GetCommonTableExpr()
			if cte == nil {
				return refuseCatalogShape()
			}
			if cte.SearchClause != nil || cte.CycleClause != nil {
				return pgerror.RefuseUnsupported.New("SEARCH and CYCLE clauses are not supported in catalog queries")
			}
			if err := w.node(cte.Ctequery, ctes); err != nil {
				return err
			}
			ctes.ctes[cte.Ctename] = true
		}
	}
	if sel.Op != pg_query.SetOperation_SETOP_NONE {
		if err := w.walkSelect(sel.Larg, ctes); err != nil {
			return err
		}
		if err := w.walkSelect(sel.Rarg, ctes); err != nil {
			return err
		}
	}
	// FROM first: it decides what `*` and whole-row references mean.
	if err := w.nodes(sel.FromClause, ctes); err != nil {
		return err
	}
	lists := [][]*pg_query.Node{sel.TargetList, sel.DistinctClause, sel.GroupClause,
		sel.WindowClause, sel.SortClause}
	for _, vl := range sel.ValuesLists {
		lists = append(lists, []*pg_query.Node{vl})
	}
	for _, l := range lists {
		for _, n := range l {
			if err := w.node(n, ctes); err != nil {
				return err
			}
		}
	}
	for _, n := range []*pg_query.Node{sel.WhereClause, sel.HavingClause, sel.LimitCount, sel.LimitOffset} {
		if err := w.node(n, ctes); err != nil {
			return err
		}
	}
	return nil
}

func refuseCatalogShape() error {
	return pgerror.RefuseUnsupported.New("unsupported construct in a catalog query")
}

func (w *catalogWalker) nodes(ns []*pg_query.Node, ctes *catalogScope) error {
	for _, n := range ns {
		if err := w.node(n, ctes); err != nil {
			return err
		}
	}
	return nil
}

// node checks one node of a catalog query. The default refuses.
func (w *catalogWalker) node(n *pg_query.Node, ctes *catalogScope) error {
	if n == nil || n.Node == nil {
		return nil
	}
	switch x := n.Node.(type) {
	case *pg_query.Node_SelectStmt:
		return w.walkSelect(x.SelectStmt, ctes)
	case *pg_query.Node_RangeVar:
		return w.relation(x.RangeVar, ctes)
	case *pg_query.Node_JoinExpr:
		j := x.JoinExpr
		if err := w.nodes([]*pg_query.Node{j.Larg, j.Rarg, j.Quals}, ctes); err != nil {
			return err
		}
		// (pg_class JOIN ...) AS t: t.* and t would include statistics.
		if j.Alias != nil && ctes.localStat {
			if len(j.Alias.Colnames) > 0 {
				return refuseColumnAliases("a join of pg_class or pg_database")
			}
			ctes.statRows[j.Alias.Aliasname] = true
		}
		return nil
	case *pg_query.Node_RangeSubselect:
		return w.node(x.RangeSubselect.Subquery, ctes)
	case *pg_query.Node_RangeFunction:
		for _, f := range x.RangeFunction.Functions {
			for _, item := range f.GetList().GetItems() {
				if item.GetList() != nil { // column definition list
					continue
				}
				if err := w.node(item, ctes); err != nil {
					return err
				}
			}
		}
		return nil
	case *pg_query.Node_ResTarget:
		return w.nodes(append([]*pg_query.Node{x.ResTarget.Val}, x.ResTarget.Indirection...), ctes)
	case *pg_query.Node_ColumnRef:
		return w.columnRef(x.ColumnRef, ctes)
	case *pg_query.Node_AConst, *pg_query.Node_ParamRef, *pg_query.Node_SqlvalueFunction, *pg_query.Node_AStar:
		return nil
	case *pg_query.Node_String_:
		if table, ok := statisticColumns[x.String_.Sval]; ok {
			return refuseStatColumn(table, x.String_.Sval)
		}
		return nil
	case *pg_query.Node_AExpr:
		a := x.AExpr
		if len(a.Name) == 2 && a.Name[0].GetString_().GetSval() != "pg_catalog" {
			return pgerror.RefuseFunction.New("operator %s is not allowed in a catalog query", operatorName(a.Name))
		}
		return w.nodes([]*pg_query.Node{a.Lexpr, a.Rexpr}, ctes)
	case *pg_query.Node_List:
		return w.nodes(x.List.Items, ctes)
	case *pg_query.Node_BoolExpr:
		return w.nodes(x.BoolExpr.Args, ctes)
	case *pg_query.Node_FuncCall:
		return w.funcCall(x.FuncCall, ctes)
	case *pg_query.Node_TypeCast:
		return w.node(x.TypeCast.Arg, ctes)
	case *pg_query.Node_CollateClause:
		return w.node(x.CollateClause.Arg, ctes)
	case *pg_query.Node_SubLink:
		return w.nodes([]*pg_query.Node{x.SubLink.Testexpr, x.SubLink.Subselect}, ctes)
	case *pg_query.Node_CaseExpr:
		c := x.CaseExpr
		return w.nodes(append([]*pg_query.Node{c.Arg, c.Defresult}, c.Args...), ctes)
	case *pg_query.Node_CaseWhen:
		return w.nodes([]*pg_query.Node{x.CaseWhen.Expr, x.CaseWhen.Result}, ctes)
	case *pg_query.Node_CoalesceExpr:
		return w.nodes(x.CoalesceExpr.Args, ctes)
	case *pg_query.Node_MinMaxExpr:
		return w.nodes(x.MinMaxExpr.Args, ctes)
	case *pg_query.Node_NullTest:
		return w.node(x.NullTest.Arg, ctes)
	case *pg_query.Node_BooleanTest:
		return w.node(x.BooleanTest.Arg, ctes)
	case *pg_query.Node_AArrayExpr:
		return w.nodes(x.AArrayExpr.Elements, ctes)
	case *pg_query.Node_AIndirection:
		return w.nodes(append([]*pg_query.Node{x.AIndirection.Arg}, x.AIndirection.Indirection...), ctes)
	case *pg_query.Node_AIndices:
		return w.nodes([]*pg_query.Node{x.AIndices.Lidx, x.AIndices.Uidx}, ctes)
	case *pg_query.Node_RowExpr:
		return w.nodes(x.RowExpr.Args, ctes)
	case *pg_query.Node_SortBy:
		return w.node(x.SortBy.Node, ctes)
	case *pg_query.Node_WindowDef:
		return w.nodes(append(append([]*pg_query.Node{}, x.WindowDef.PartitionClause...), x.WindowDef.OrderClause...), ctes)
	case *pg_query.Node_NamedArgExpr:
		return w.node(x.NamedArgExpr.Arg, ctes)
	}
	return refuseCatalogShape()
}

func (w *catalogWalker) relation(rv *pg_query.RangeVar, ctes *catalogScope) error {
	name := rv.Relname
	if rv.Schemaname != "" {
		name = rv.Schemaname + "." + rv.Relname
	}
	alias := rv.Relname
	if rv.Alias != nil {
		alias = rv.Alias.Aliasname
	}
	switch {
	case rv.Catalogname != "":
		return pgerror.RefuseUnsupported.New("cross-database references are not supported")
	case rv.Schemaname == "" && ctes.ctes[rv.Relname]:
		return nil
	case rv.Schemaname == "information_schema":
		if refusedInformationSchema[rv.Relname] {
			return pgerror.RefuseCatalog.New("information_schema.%s is not schema metadata and is not available through dpproxy", rv.Relname)
		}
		return nil
	case rv.Schemaname == "pg_catalog" || (rv.Schemaname == "" && strings.HasPrefix(rv.Relname, "pg_")):
		if catalogRelations[rv.Relname] {
			if rv.Relname == "pg_class" || rv.Relname == "pg_database" {
				if rv.Alias != nil && len(rv.Alias.Colnames) > 0 {
					return refuseColumnAliases(name)
				}
				ctes.localStat = true
				ctes.statRows[alias] = true
				ctes.statRows[rv.Relname] = true
			}
			return nil
		}
		if isStatisticRelation(rv.Relname) {
			return pgerror.RefuseCatalog.New("%s holds statistics that could reveal private rows", name).
				WithHint("schema metadata (pg_class names, pg_attribute, information_schema.columns) is allowed; statistics are not")
		}
		return pgerror.RefuseCatalog.New("catalog relation %s is not on dpproxy's allowlist of schema metadata", name)
	}
	return pgerror.RefuseUnsupported.New("a catalog query cannot also read table %s", name).
		WithHint("query catalog relations and private tables in separate statements")
}

func isStatisticRelation(rel string) bool {
	return rel == "pg_statistic" || rel == "pg_statistic_ext_data" || strings.HasPrefix(rel, "pg_stat") ||
		rel == "pg_sequences" || rel == "pg_locks" || rel == "pg_largeobject"
}

func (w *catalogWalker) columnRef(cr *pg_query.ColumnRef, sc *catalogScope) error {
	for _, f := range cr.Fields {
		if v := f.GetString_(); v != nil {
			if table, ok := statisticColumns[v.Sval]; ok {
				return refuseStatColumn(table, v.Sval)
			}
		}
	}
	last := cr.Fields[len(cr.Fields)-1]
	switch {
	case last.GetAStar() != nil && len(cr.Fields) == 1 && sc.localStat,
		last.GetAStar() != nil && len(cr.Fields) > 1 && sc.statRows[cr.Fields[len(cr.Fields)-2].GetString_().GetSval()]:
		return pgerror.RefuseCatalog.New("`*` over pg_class or pg_database would include statistics columns such as reltuples and relpages").
			WithHint("name the columns you need; row and page counts are not available through dpproxy")
	case len(cr.Fields) == 1 && last.GetString_() != nil && sc.statRows[last.GetString_().GetSval()]:
		return pgerror.RefuseCatalog.New("a whole-row reference to %s would include its statistics columns", last.GetString_().GetSval()).
			WithHint("name the columns you need")
	}
	return nil
}

// refuseColumnAliases refuses `pg_class AS c(a, b, ...)`: renaming columns
// by position would reach reltuples and relpages under other names.
func refuseColumnAliases(what string) error {
	return pgerror.RefuseCatalog.New("column aliases on %s could rename its statistics columns (reltuples, relpages)", what).
		WithHint("alias the columns you need in the select list instead: SELECT c.relname AS name FROM pg_class c")
}

func refuseStatColumn(table, col string) error {
	return pgerror.RefuseCatalog.New("column %s.%s is a statistic that could reveal private rows", table, col).
		WithHint("schema metadata is allowed; row counts, page counts and transaction ids are not")
}

func (w *catalogWalker) funcCall(f *pg_query.FuncCall, ctes *catalogScope) error {
	name := funcName(f)
	switch {
	case statisticFunc(name):
		return pgerror.RefuseCatalog.New("function %s reveals sizes or statistics that could depend on private rows", name).
			WithHint("schema metadata is allowed; sizes and statistics are not")
	case !catalogFuncs[name]:
		return pgerror.RefuseFunction.New("function %s is not allowed in a catalog query", name).
			WithHint("catalog queries may use the schema-metadata functions psql and drivers use (format_type, pg_get_expr, pg_table_is_visible, ...)")
	}
	if f.Over != nil {
		if err := w.node(&pg_query.Node{Node: &pg_query.Node_WindowDef{WindowDef: f.Over}}, ctes); err != nil {
			return err
		}
	}
	return w.nodes(append(append(append([]*pg_query.Node{}, f.Args...), f.AggOrder...), f.AggFilter), ctes)
}
