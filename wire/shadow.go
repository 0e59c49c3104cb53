package wire

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dpproxy/dpproxy/pgerror"
	"github.com/dpproxy/dpproxy/policy"
	"github.com/dpproxy/dpproxy/rewrite"
)

// checkShadow refuses, before anything is charged, a plan that reads a
// table's pre-bounded copy when that copy does not exist upstream (the DBA
// set `shadow: true` but has not run `dpproxy shadow refresh`), or was
// bounded under another unit or max_rows_per_unit than the policy in force
// says (its comment, policy.Table.ShadowComment). The first sighting of a
// copy also re-reads the catalog facts (proven bounds of the copy,
// wire/bounds.go).
func (sess *session) checkShadow(plan *rewrite.Plan, pol *policy.Policy) error {
	if !plan.Shadow || len(plan.Tables) == 0 {
		return nil
	}
	name := plan.Tables[0]
	schema, table, _ := strings.Cut(name, ".")
	t := pol.Table(schema, table)
	if t == nil {
		return nil
	}
	// Checked with every statement, not once: a refresh under a policy
	// with a larger max_rows_per_unit, run before the proxy reloads it,
	// must not be read under the old bound. One catalog round trip,
	// against a statement that scans the copy.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var exists bool
	var comment *string
	err := sess.srv.cfg.Upstream.QueryRow(ctx, "SELECT c IS NOT NULL, obj_description(c, 'pg_class') FROM to_regclass($1) AS c",
		pgx.Identifier{policy.ShadowSchema, t.ShadowName()}.Sanitize()).Scan(&exists, &comment)
	if err != nil {
		return pgerror.Wrapf(err, pgerror.CodeCannotConnectNow, "cannot reach the upstream database")
	}
	if !exists {
		return pgerror.RefuseUnsupported.New("table %s is answered from its pre-bounded copy %s.%s, which does not exist yet (nothing was charged)",
			name, policy.ShadowSchema, t.ShadowName()).
			WithHint("ask the DBA to run `dpproxy shadow refresh`, or to remove `shadow: true` from the policy")
	}
	if comment == nil || *comment != plan.ShadowBound {
		// A copy bounded by a larger max_rows_per_unit, or per another
		// unit, would let one unit contribute more than the plan's
		// sensitivities allow.
		made := "no record of how it was bounded"
		if comment != nil {
			made = fmt.Sprintf("%q", *comment)
		}
		return pgerror.RefuseUnsupported.New("the pre-bounded copy %s.%s of table %s was not made under the policy in force (it says %s; the policy needs %q); nothing was charged",
			policy.ShadowSchema, t.ShadowName(), name, made, plan.ShadowBound).
			WithHint("ask the DBA to run `dpproxy shadow refresh` with the current policy")
	}
	if _, seen := sess.srv.shadowSeen.LoadOrStore(name, true); !seen {
		// The copy may be new since the catalog was read: its CHECK
		// constraints let later statements sum it unclamped.
		sess.srv.learnCatalog()
	}
	return nil
}
