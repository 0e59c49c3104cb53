package wire

import (
	"strconv"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dpproxy/dpproxy/answer"
	"github.com/dpproxy/dpproxy/pgerror"
	"github.com/dpproxy/dpproxy/rewrite"
)

// runExplain answers EXPLAIN of a DP query from the plan, like Postgres's
// one "QUERY PLAN" text column. Nothing runs upstream; nothing is charged.
func (sess *session) runExplain(st *rewrite.Statement, a execArgs) error {
	delta := 0.0
	if st.Plan.Selection != nil {
		delta = sess.queryDelta()
	}
	lines, err := answer.Explain(st.Plan, sess.queryEpsilon(), delta)
	if err != nil {
		return pgerror.RefuseSetting.Wrap(err, "cannot calibrate noise: %v", err)
	}
	if a.describe {
		sess.be.Send(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{textField("QUERY PLAN")}})
	}
	for _, l := range lines {
		sess.be.Send(&pgproto3.DataRow{Values: [][]byte{[]byte(l)}})
	}
	sess.complete("EXPLAIN " + strconv.Itoa(len(lines)))
	return nil
}
