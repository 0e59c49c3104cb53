package wire

import (
	"context"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dpproxy/dpproxy/pgerror"
	"github.com/dpproxy/dpproxy/policy"
	"github.com/dpproxy/dpproxy/rewrite"
)

// checkShadow refuses, before anything is charged, a plan that reads a
// table's pre-bounded copy when that copy does not exist upstream (the DBA
// set `shadow: true` but has not run `dpproxy shadow refresh`). A copy once
// seen is remembered: refreshes swap it atomically, never drop it. The
// first sighting also re-reads the catalog facts (proven bounds of the
// copy, wire/bounds.go).
func (sess *session) checkShadow(plan *rewrite.Plan, pol *policy.Policy) error {
	if !plan.Shadow || len(plan.Tables) == 0 {
		return nil
	}
	name := plan.Tables[0]
	if _, ok := sess.srv.shadowSeen.Load(name); ok {
		return nil
	}
	schema, table, _ := strings.Cut(name, ".")
	t := pol.Table(schema, table)
	if t == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var exists bool
	err := sess.srv.cfg.Upstream.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL",
		pgx.Identifier{policy.ShadowSchema, t.ShadowName()}.Sanitize()).Scan(&exists)
	if err != nil {
		return pgerror.Wrapf(err, pgerror.CodeCannotConnectNow, "cannot reach the upstream database")
	}
	if !exists {
		return pgerror.RefuseUnsupported.New("table %s is answered from its pre-bounded copy %s.%s, which does not exist yet (nothing was charged)",
			name, policy.ShadowSchema, t.ShadowName()).
			WithHint("ask the DBA to run `dpproxy shadow refresh`, or to remove `shadow: true` from the policy")
	}
	if _, seen := sess.srv.shadowSeen.LoadOrStore(name, true); !seen {
		// The copy may be new since the catalog was read: its CHECK
		// constraints let later statements sum it unclamped.
		sess.srv.learnCatalog()
	}
	return nil
}
