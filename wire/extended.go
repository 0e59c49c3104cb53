package wire

import (
	"encoding/binary"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dpproxy/dpproxy/pgerror"
	"github.com/dpproxy/dpproxy/policy"
	"github.com/dpproxy/dpproxy/rewrite"
)

// prepared is a statement named by Parse.
type prepared struct {
	sql       string
	stmt      *rewrite.Statement
	paramOIDs []uint32
	fields    []pgproto3.FieldDescription // nil: NoData
	described bool
	// planned is the policy stmt was planned under. Every reload and every
	// change of catalog facts installs a new *Policy, so comparing pointers
	// tells whether the plan is current without any work per Execute.
	planned *policy.Policy
}

// replan plans a prepared statement again when the policy (or a catalog
// fact, such as a unique privacy unit) changed since it was parsed, so an
// Execute never runs a plan the policy in force would not make. A plan
// whose result columns would change is refused, as Postgres refuses a
// cached plan that would change its result type.
func (sess *session) replan(prep *prepared) error {
	pol := sess.srv.Policy()
	if prep.planned == pol {
		return nil
	}
	stmts, err := sess.classify(prep.sql)
	if err != nil {
		return err
	}
	st := &rewrite.Statement{Kind: rewrite.KindEmpty}
	if len(stmts) == 1 {
		st = stmts[0]
	}
	if st.Kind != prep.stmt.Kind || (st.Kind == rewrite.KindDP && !sameFields(dpFields(st.Plan, nil), dpFields(prep.stmt.Plan, nil))) {
		return pgerror.Newf(pgerror.CodeFeatureNotSupported, "cached plan must not change result type").
			WithHint("the policy changed since the statement was prepared; prepare it again")
	}
	prep.stmt, prep.planned = st, pol
	return nil
}

func sameFields(a, b []pgproto3.FieldDescription) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if string(a[i].Name) != string(b[i].Name) || a[i].DataTypeOID != b[i].DataTypeOID || a[i].TypeModifier != b[i].TypeModifier {
			return false
		}
	}
	return true
}

// portal is a prepared statement bound to parameters.
type portal struct {
	prep *prepared
	seq  uint64 // when Bind opened it: ROLLBACK TO closes the portals opened after its savepoint
	args execArgs
	// A passthrough result fetched in parts (Execute with a row limit):
	// the rows not sent yet and the command tag, kept until the portal is
	// closed, as Postgres keeps a suspended portal.
	started bool
	rest    [][][]byte
	tag     string
}

func (sess *session) parse(m *pgproto3.Parse) error {
	name := m.Name
	if _, exists := sess.prepared[name]; exists && name != "" {
		return pgerror.Newf("42P05", "prepared statement %q already exists", name)
	}
	if name != "" && len(sess.prepared) >= maxPrepared {
		return pgerror.Newf(pgerror.CodeProgramLimitExceeded, "too many prepared statements: dpproxy keeps at most %d per session", maxPrepared).
			WithHint("close prepared statements no longer needed (Close, DEALLOCATE), or lower the driver's statement cache")
	}
	sql := m.Query
	pol := sess.srv.Policy()
	stmts, err := sess.classify(sql)
	if err != nil {
		sess.logStatement(sql, "refused", err)
		return err
	}
	if len(stmts) > 1 {
		return pgerror.Newf(pgerror.CodeSyntaxError, "cannot insert multiple commands into a prepared statement")
	}
	st := &rewrite.Statement{Kind: rewrite.KindEmpty}
	if len(stmts) == 1 {
		st = stmts[0]
	}
	planned := pol
	if sess.srv.Policy() != pol { // reloaded while planning: replan at Execute
		planned = nil
	}
	sess.prepared[name] = &prepared{sql: sql, stmt: st, paramOIDs: append([]uint32(nil), m.ParameterOIDs...), planned: planned}
	sess.be.Send(&pgproto3.ParseComplete{})
	return nil
}

func (sess *session) bind(m *pgproto3.Bind) error {
	prep, ok := sess.prepared[m.PreparedStatement]
	if !ok {
		return pgerror.Newf(pgerror.CodeInvalidPreparedStatement, "prepared statement %q does not exist", m.PreparedStatement)
	}
	if _, exists := sess.portals[m.DestinationPortal]; exists && m.DestinationPortal != "" {
		return pgerror.Newf("42P03", "cursor %q already exists", m.DestinationPortal)
	}
	// pgproto3 reuses its buffers on the next Receive: copy what we keep.
	params := make([][]byte, len(m.Parameters))
	for i, p := range m.Parameters {
		if p != nil {
			params[i] = append([]byte{}, p...)
		}
	}
	if _, exists := sess.portals[m.DestinationPortal]; !exists && len(sess.portals) >= maxPortals {
		return pgerror.Newf(pgerror.CodeProgramLimitExceeded, "too many open portals: dpproxy keeps at most %d per session", maxPortals).
			WithHint("close portals with Close, or end the transaction, which closes them")
	}
	sess.portalSeq++
	sess.portals[m.DestinationPortal] = &portal{prep: prep, seq: sess.portalSeq, args: execArgs{
		params:        params,
		paramFormats:  append([]int16(nil), m.ParameterFormatCodes...),
		paramOIDs:     prep.paramOIDs,
		resultFormats: append([]int16(nil), m.ResultFormatCodes...),
	}}
	sess.be.Send(&pgproto3.BindComplete{})
	return nil
}

func (sess *session) describe(m *pgproto3.Describe) error {
	switch m.ObjectType {
	case 'S':
		prep, ok := sess.prepared[m.Name]
		if !ok {
			return pgerror.Newf(pgerror.CodeInvalidPreparedStatement, "prepared statement %q does not exist", m.Name)
		}
		if err := sess.describeStatement(prep); err != nil {
			return err
		}
		sess.be.Send(&pgproto3.ParameterDescription{ParameterOIDs: prep.paramOIDs})
		sess.sendRowDescription(prep.fields, nil)
	case 'P':
		p, ok := sess.portals[m.Name]
		if !ok {
			return pgerror.Newf(pgerror.CodeInvalidCursorName, "portal %q does not exist", m.Name)
		}
		if err := sess.describeStatement(p.prep); err != nil {
			return err
		}
		sess.sendRowDescription(p.prep.fields, p.args.resultFormats)
	default:
		return pgerror.RefuseProtocol.New("invalid DESCRIBE message subtype %d", m.ObjectType)
	}
	return nil
}

func (sess *session) sendRowDescription(fields []pgproto3.FieldDescription, formats []int16) {
	if fields == nil {
		sess.be.Send(&pgproto3.NoData{})
		return
	}
	out := make([]pgproto3.FieldDescription, len(fields))
	for i, f := range fields {
		f.Format = formatFor(formats, i)
		out[i] = f
	}
	sess.be.Send(&pgproto3.RowDescription{Fields: out})
}

// describeStatement fills in a prepared statement's parameter types and
// result columns, without charging anything: DP answers are described from
// the plan, passthrough statements by upstream.
func (sess *session) describeStatement(prep *prepared) error {
	if prep.described {
		return nil
	}
	st := prep.stmt
	switch st.Kind {
	case rewrite.KindDP:
		prep.fields = dpFields(st.Plan, nil)
		if strings.Contains(st.Plan.SQL, "$") {
			// Parameter types: upstream infers them from the rewritten SQL
			// (the rewriter keeps $n as they are). Preparing runs nothing.
			oids, err := sess.upstreamParamTypes(st.Plan.SQL, prep.paramOIDs)
			if err != nil {
				return err
			}
			prep.paramOIDs = oids
		}
	case rewrite.KindPassthrough:
		desc, err := sess.upstreamDescribe(st.SQL, prep.paramOIDs)
		if err != nil {
			return err
		}
		prep.paramOIDs = desc.ParamOIDs
		if len(desc.Fields) > 0 {
			prep.fields = toFields(desc.Fields)
		}
	case rewrite.KindExplain:
		prep.fields = []pgproto3.FieldDescription{textField("QUERY PLAN")}
	case rewrite.KindSession:
		if st.Session.Op == rewrite.OpShow {
			prep.fields = []pgproto3.FieldDescription{textField(showColumn(st.Session.Name))}
		}
	}
	if prep.paramOIDs == nil {
		prep.paramOIDs = []uint32{}
	}
	prep.described = true
	return nil
}

func (sess *session) execute(m *pgproto3.Execute) error {
	p, ok := sess.portals[m.Portal]
	if !ok {
		return pgerror.Newf(pgerror.CodeInvalidCursorName, "portal %q does not exist", m.Portal)
	}
	if p.started {
		return sess.resume(p, m.MaxRows)
	}
	if err := sess.replan(p.prep); err != nil {
		return err
	}
	// Row limits (MaxRows) are honoured for passthrough results and DP
	// answers: the result is fetched (or computed and charged) whole, then
	// sent in parts, each part that fills the limit ending in
	// PortalSuspended. Session commands are sent whole.
	if m.MaxRows > 0 && p.prep.stmt.Kind == rewrite.KindDP {
		args := p.args
		args.keep = p
		if err := sess.execute1(p.prep.stmt, args); err != nil {
			return err
		}
		if p.started {
			return sess.resume(p, m.MaxRows)
		}
		return nil
	}
	if m.MaxRows > 0 && p.prep.stmt.Kind == rewrite.KindPassthrough && !(sess.txStatus == 'E') {
		rows, tag, err := sess.fetchPassthrough(p.prep.stmt, p.args)
		if err != nil {
			return err
		}
		p.started, p.rest, p.tag = true, rows, tag
		return sess.resume(p, m.MaxRows)
	}
	return sess.execute1(p.prep.stmt, p.args)
}

// resume sends up to maxRows (0: all) of a portal's remaining rows, then
// PortalSuspended if rows remain, else CommandComplete. A completed portal
// executed again completes with no rows, as in Postgres.
func (sess *session) resume(p *portal, maxRows uint32) error {
	n := len(p.rest)
	if maxRows > 0 && int(maxRows) < n {
		n = int(maxRows)
	}
	for _, r := range p.rest[:n] {
		sess.be.Send(&pgproto3.DataRow{Values: r})
	}
	p.rest = p.rest[n:]
	// Like Postgres: a fetch that filled its row limit suspends the
	// portal, even when no rows remain; the next one completes it.
	if maxRows > 0 && n == int(maxRows) {
		sess.be.Send(&pgproto3.PortalSuspended{})
		return nil
	}
	tag := p.tag
	if strings.HasPrefix(tag, "SELECT ") {
		// Like Postgres: the rows this Execute sent, not the whole result.
		tag = "SELECT " + strconv.Itoa(n)
	}
	sess.complete(tag)
	return nil
}

func (sess *session) closeObject(m *pgproto3.Close) error {
	switch m.ObjectType {
	case 'S':
		delete(sess.prepared, m.Name)
	case 'P':
		delete(sess.portals, m.Name)
	default:
		return pgerror.RefuseProtocol.New("invalid CLOSE message subtype %d", m.ObjectType)
	}
	sess.be.Send(&pgproto3.CloseComplete{})
	return nil
}

// upstreamDescribe prepares sql upstream (unnamed, executing nothing) to
// learn its parameter and result types.
func (sess *session) upstreamDescribe(sql string, paramOIDs []uint32) (*pgconn.StatementDescription, error) {
	ctx, done := sess.runContext()
	defer done()
	conn, err := sess.srv.cfg.Upstream.Acquire(ctx)
	if err != nil {
		return nil, pgerror.Wrapf(err, pgerror.CodeCannotConnectNow, "cannot reach the upstream database")
	}
	defer conn.Release()
	defer guardCancel(ctx, conn.Conn().PgConn())()
	desc, err := conn.Conn().PgConn().Prepare(ctx, "", sql, paramOIDs)
	if err != nil {
		if cerr := canceledError(ctx); cerr != nil {
			return nil, cerr
		}
		return nil, upstreamError(err)
	}
	return desc, nil
}

// upstreamParamTypes returns the parameter types of a rewritten DP
// statement. Preparing reads no rows, so its errors (type mismatches) depend
// on the schema only and are forwarded. The types are remembered per policy
// (version and catalog facts), statement and declared types, so a client
// that parses the same statement again (pgbench -M extended, drivers
// without statement caches) costs no upstream round trip.
func (sess *session) upstreamParamTypes(sql string, paramOIDs []uint32) ([]uint32, error) {
	pol := sess.srv.Policy()
	var declared []byte
	for _, oid := range paramOIDs {
		declared = binary.BigEndian.AppendUint32(declared, oid)
	}
	key := typeKey{version: pol.Version, catalog: pol.CatalogTag(), declared: string(declared), sql: sql}
	if oids, ok := sess.srv.paramTypes.get(key); ok {
		return append([]uint32(nil), oids...), nil // sessions must not share the slice
	}
	desc, err := sess.upstreamDescribe(sql, paramOIDs)
	if err != nil {
		return nil, err
	}
	sess.srv.paramTypes.put(key, desc.ParamOIDs)
	return desc.ParamOIDs, nil
}

// typeCache remembers inferred parameter types; it is emptied when full
// rather than tracking use, since its entries are cheap to recompute.
type typeCache struct {
	mu sync.RWMutex
	m  map[typeKey][]uint32
}

type typeKey struct{ version, catalog, declared, sql string }

const typeCacheMax = 4096

func (c *typeCache) get(key typeKey) ([]uint32, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	oids, ok := c.m[key]
	return oids, ok
}

func (c *typeCache) put(key typeKey, oids []uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= typeCacheMax {
		c.m = make(map[typeKey][]uint32)
	}
	c.m[key] = oids
}
