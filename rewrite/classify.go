package rewrite

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/dpproxy/dpproxy/pgerror"
	"github.com/dpproxy/dpproxy/policy"
)

// Classify parses sql (which may hold several statements, as a simple Query
// message can) and classifies and plans each one under pol. It returns the
// statements in order; the first refusal ends the list with its error, as
// Postgres stops a multi-statement query at the first error.
func Classify(sql string, pol *policy.Policy) ([]*Statement, error) {
	raws, err := parse(sql)
	if err != nil {
		return nil, err
	}
	if len(raws) == 0 {
		return []*Statement{{Kind: KindEmpty}}, nil
	}
	out := make([]*Statement, 0, len(raws))
	for _, raw := range raws {
		text := statementText(sql, raw)
		st, err := classifyOne(raw.Stmt, text, pol)
		if err != nil {
			return out, err
		}
		out = append(out, st)
	}
	return out, nil
}

func statementText(sql string, raw *pg_query.RawStmt) string {
	start := int(raw.StmtLocation)
	end := len(sql)
	if raw.StmtLen > 0 {
		end = start + int(raw.StmtLen)
	}
	if start < 0 || start > len(sql) || end > len(sql) || start > end {
		return strings.TrimSpace(sql)
	}
	return strings.TrimSpace(sql[start:end])
}

func classifyOne(n *pg_query.Node, text string, pol *policy.Policy) (*Statement, error) {
	switch s := n.Node.(type) {
	case *pg_query.Node_SelectStmt:
		return classifySelect(s.SelectStmt, text, pol)
	case *pg_query.Node_VariableSetStmt:
		return sessionSet(s.VariableSetStmt, text)
	case *pg_query.Node_VariableShowStmt:
		return &Statement{Kind: KindSession, SQL: text, Session: &Session{Op: OpShow, Name: strings.ToLower(s.VariableShowStmt.Name), Tag: "SHOW"}}, nil
	case *pg_query.Node_TransactionStmt:
		return transaction(s.TransactionStmt, text)
	case *pg_query.Node_DiscardStmt:
		return &Statement{Kind: KindSession, SQL: text, Session: &Session{Op: OpDiscard, Tag: discardTag(s.DiscardStmt)}}, nil
	case *pg_query.Node_DeallocateStmt:
		return &Statement{Kind: KindSession, SQL: text, Session: &Session{Op: OpDeallocate, Name: s.DeallocateStmt.Name, Tag: deallocateTag(s.DeallocateStmt)}}, nil
	case *pg_query.Node_InsertStmt, *pg_query.Node_UpdateStmt, *pg_query.Node_DeleteStmt, *pg_query.Node_MergeStmt,
		*pg_query.Node_CreateStmt, *pg_query.Node_DropStmt, *pg_query.Node_AlterTableStmt, *pg_query.Node_TruncateStmt,
		*pg_query.Node_CreateTableAsStmt, *pg_query.Node_IndexStmt, *pg_query.Node_ViewStmt, *pg_query.Node_GrantStmt,
		*pg_query.Node_CreateFunctionStmt, *pg_query.Node_DoStmt, *pg_query.Node_CreateSchemaStmt, *pg_query.Node_RenameStmt,
		*pg_query.Node_CreateRoleStmt, *pg_query.Node_AlterRoleStmt, *pg_query.Node_VacuumStmt, *pg_query.Node_ClusterStmt,
		*pg_query.Node_ReindexStmt, *pg_query.Node_CommentStmt, *pg_query.Node_CreateSeqStmt, *pg_query.Node_LockStmt,
		*pg_query.Node_RefreshMatViewStmt, *pg_query.Node_CreateExtensionStmt, *pg_query.Node_CallStmt:
		return nil, pgerror.RefuseWrite.New("cannot execute %s through dpproxy: it only answers read-only queries", statementVerb(text))
	case *pg_query.Node_CopyStmt:
		return nil, pgerror.RefuseWrite.New("COPY is not allowed through dpproxy").
			WithHint("export aggregates with SELECT instead; raw rows of private tables are never returned")
	case *pg_query.Node_ExplainStmt:
		return classifyExplain(s.ExplainStmt, text, pol)
	}
	return nil, pgerror.RefuseUnsupported.New("%s statements are not supported by dpproxy", statementVerb(text))
}

func statementVerb(text string) string {
	f := strings.Fields(text)
	if len(f) == 0 {
		return "this"
	}
	return strings.ToUpper(f[0])
}

func sessionSet(v *pg_query.VariableSetStmt, text string) (*Statement, error) {
	s := &Session{Name: strings.ToLower(v.Name), Local: v.IsLocal, Tag: "SET"}
	switch s.Name {
	case "role", "session_authorization":
		// Settings are not applied upstream, so this would only pretend to
		// change the role; say so instead.
		return nil, pgerror.RefuseSetting.New("SET %s is not allowed through dpproxy", s.Name).
			WithHint("dpproxy runs every query upstream as the DBA's read-only role")
	}
	switch v.Kind {
	case pg_query.VariableSetKind_VAR_SET_VALUE:
		s.Op = OpSet
		vals := make([]string, 0, len(v.Args))
		for _, a := range v.Args {
			val, ok := constText(a)
			if !ok {
				return nil, pgerror.RefuseUnsupported.New("SET %s takes only constant values", v.Name)
			}
			vals = append(vals, val)
		}
		s.Value = strings.Join(vals, ", ")
	case pg_query.VariableSetKind_VAR_SET_DEFAULT, pg_query.VariableSetKind_VAR_RESET:
		s.Op = OpReset
		if v.Kind == pg_query.VariableSetKind_VAR_RESET {
			s.Tag = "RESET"
		}
	case pg_query.VariableSetKind_VAR_RESET_ALL:
		s.Op, s.Tag = OpResetAll, "RESET"
	case pg_query.VariableSetKind_VAR_SET_MULTI:
		// SET TRANSACTION ... / SET SESSION CHARACTERISTICS: all work is
		// read-only already, so accept and ignore.
		s.Op, s.Name = OpSet, ""
	default:
		return nil, pgerror.RefuseUnsupported.New("this form of SET is not supported")
	}
	return &Statement{Kind: KindSession, SQL: text, Session: s}, nil
}

func transaction(t *pg_query.TransactionStmt, text string) (*Statement, error) {
	s := &Session{}
	switch t.Kind {
	case pg_query.TransactionStmtKind_TRANS_STMT_BEGIN, pg_query.TransactionStmtKind_TRANS_STMT_START:
		s.Op, s.Tag = OpBegin, "BEGIN"
		if t.Kind == pg_query.TransactionStmtKind_TRANS_STMT_START {
			s.Tag = "START TRANSACTION"
		}
	case pg_query.TransactionStmtKind_TRANS_STMT_COMMIT:
		s.Op, s.Tag = OpCommit, "COMMIT"
	case pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK:
		s.Op, s.Tag = OpRollback, "ROLLBACK"
	case pg_query.TransactionStmtKind_TRANS_STMT_SAVEPOINT:
		s.Op, s.Tag, s.Name = OpSavepoint, "SAVEPOINT", t.SavepointName
	case pg_query.TransactionStmtKind_TRANS_STMT_RELEASE:
		s.Op, s.Tag, s.Name = OpRelease, "RELEASE", t.SavepointName
	case pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK_TO:
		s.Op, s.Tag, s.Name = OpRollbackTo, "ROLLBACK", t.SavepointName
	default:
		return nil, pgerror.RefuseUnsupported.New("two-phase commit and prepared transactions are not supported")
	}
	return &Statement{Kind: KindSession, SQL: text, Session: s}, nil
}

func discardTag(d *pg_query.DiscardStmt) string {
	switch d.Target {
	case pg_query.DiscardMode_DISCARD_PLANS:
		return "DISCARD PLANS"
	case pg_query.DiscardMode_DISCARD_SEQUENCES:
		return "DISCARD SEQUENCES"
	case pg_query.DiscardMode_DISCARD_TEMP:
		return "DISCARD TEMP"
	}
	return "DISCARD ALL"
}

func deallocateTag(d *pg_query.DeallocateStmt) string {
	if d.Isall {
		return "DEALLOCATE ALL"
	}
	return "DEALLOCATE"
}

// constText returns the text of a constant SET argument.
func constText(n *pg_query.Node) (string, bool) {
	switch c := n.Node.(type) {
	case *pg_query.Node_AConst:
		return aConstText(c.AConst)
	case *pg_query.Node_TypeCast:
		if c.TypeCast.Arg != nil {
			return constText(c.TypeCast.Arg)
		}
	}
	return "", false
}

func aConstText(c *pg_query.A_Const) (string, bool) {
	if c.Isnull {
		return "", false
	}
	switch v := c.Val.(type) {
	case *pg_query.A_Const_Ival:
		return itoa(int64(v.Ival.Ival)), true
	case *pg_query.A_Const_Fval:
		return v.Fval.Fval, true
	case *pg_query.A_Const_Sval:
		return v.Sval.Sval, true
	case *pg_query.A_Const_Boolval:
		if v.Boolval.Boolval {
			return "on", true
		}
		return "off", true
	}
	return "", false
}

// classifyExplain answers EXPLAIN of a DP query with dpproxy's own plan.
// Upstream EXPLAIN is never run: its plans and row estimates reveal data.
func classifyExplain(e *pg_query.ExplainStmt, text string, pol *policy.Policy) (*Statement, error) {
	for _, o := range e.Options {
		if d := o.GetDefElem(); d != nil && d.Defname != "format" && d.Defname != "verbose" && d.Defname != "costs" {
			return nil, pgerror.RefuseCatalog.New("EXPLAIN (%s) is not supported: dpproxy never runs EXPLAIN upstream", strings.ToUpper(d.Defname)).
				WithHint("plain EXPLAIN <query> shows dpproxy's plan, mechanisms and cost without running anything")
		}
	}
	inner, err := classifyOne(e.Query, text, pol)
	if err != nil {
		return nil, err
	}
	if inner.Kind != KindDP {
		return nil, pgerror.RefuseCatalog.New("EXPLAIN is only answered for DP queries; upstream plans and row estimates reveal data").
			WithHint("EXPLAIN an aggregate query over a private table")
	}
	return &Statement{Kind: KindExplain, SQL: text, Plan: inner.Plan}, nil
}
