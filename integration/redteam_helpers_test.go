package integration

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dpproxy/dpproxy/demo"
)

// The red-team suite plants one canary privacy unit in a copy of the demo
// database and checks that no response — rows, errors (message, detail,
// hint), notices — ever carries one of its values. Each value is chosen so
// that it cannot occur by chance in a noisy number or in the demo data.
const (
	canaryIncome    = "987654321" // patients.income, far above the bounds
	canaryZip       = "ZQXJ7"     // patients.zip, no public domain
	canaryDiagnosis = "canary-disease"
	canaryClinic    = "canary-clinic" // visits.clinic, no public domain
	canaryPatientID = 99_999_001
)

var canaryMarkers = []string{canaryIncome, canaryZip, canaryDiagnosis, canaryClinic}

// redteamDB creates the database name as a copy of demo (demoCopy), plants
// the canary patient and its visits, and returns the reader DSN for
// dpproxy upstream.
func redteamDB(t *testing.T, ctx context.Context, name string) string {
	t.Helper()
	db := demoCopy(t, ctx, name)
	defer db.Close(ctx)
	plant := fmt.Sprintf(`
		INSERT INTO patients (patient_id, age, sex, zip, diagnosis, income, visit_date)
		VALUES (%[1]d, 100, 'F', '%[2]s', '%[3]s', %[4]s, '2025-06-01');
		INSERT INTO visits (visit_id, patient_id, visit_date, department, cost, clinic)
		SELECT 9000000000 + g, %[1]d, '2025-06-01', 'oncology', 4999.99, '%[5]s' FROM generate_series(1, 10) g;
		ANALYZE patients; ANALYZE visits`,
		canaryPatientID, canaryZip, canaryDiagnosis, canaryIncome, canaryClinic)
	if _, err := db.Exec(ctx, plant); err != nil {
		t.Fatalf("planting the canary: %v", err)
	}
	return strings.Replace(pg.ReaderDSN(), "dbname=demo", "dbname="+name, 1)
}

// demoCopy creates the database name as a copy of demo (CREATE DATABASE
// ... TEMPLATE demo), drops it when the test ends, and returns a superuser
// connection to it. The shared demo database is never written to.
func demoCopy(t *testing.T, ctx context.Context, name string) *pgx.Conn {
	t.Helper()
	admin, err := pgx.Connect(ctx, pg.Cluster.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name)
	// TEMPLATE needs demo to have no other sessions; a proxy of a previous
	// test may still be closing its pool.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err = admin.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE demo")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CREATE DATABASE %s TEMPLATE demo: %v", name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), pg.Cluster.DSN("postgres"))
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	db, err := pgx.Connect(ctx, pg.Cluster.DSN(name))
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// attempt is one bypass attempt and what must happen to it.
type attempt struct {
	cat string
	sql string
	// want is the SQLSTATE the attempt must be refused with, or one of
	//   "dp"     answered with DP noise (a cost NOTICE is present),
	//   "public" answered without charge: reads no private rows,
	//   "safe"   answered with DP noise or refused by the rewriter, never
	//            failing upstream (DP008): an allowed expression must not
	//            raise a data-dependent error,
	//   "any"    either refused or answered; only the canary check applies.
	want string
}

// outcome is everything a client saw for one statement.
type outcome struct {
	rows    [][]string
	err     *pgconn.PgError
	other   error
	notices []string
}

// text is every string a client could read from the outcome.
func (o outcome) text() string {
	var b strings.Builder
	for _, r := range o.rows {
		b.WriteString(strings.Join(r, "|"))
		b.WriteByte('\n')
	}
	if o.err != nil {
		fmt.Fprintf(&b, "%s %s %s %s %s %s\n", o.err.Code, o.err.Message, o.err.Detail, o.err.Hint, o.err.Where, o.err.ColumnName)
	}
	if o.other != nil {
		b.WriteString(o.other.Error())
	}
	for _, n := range o.notices {
		b.WriteString(n)
		b.WriteByte('\n')
	}
	return b.String()
}

func (o outcome) charged() bool {
	for _, n := range o.notices {
		if strings.HasPrefix(n, "dp: spent") || strings.HasPrefix(n, "dp: repeated") {
			return true
		}
	}
	return false
}

// rtConn is a low-level connection that records notices.
type rtConn struct {
	mu      sync.Mutex
	conn    *pgconn.PgConn
	notices []string
}

func dialRT(t *testing.T, ctx context.Context, dsn string) *rtConn {
	t.Helper()
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	c := &rtConn{}
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		c.mu.Lock()
		c.notices = append(c.notices, fmt.Sprintf("%s %s %s", n.Message, n.Detail, n.Hint))
		c.mu.Unlock()
	}
	c.conn, err = pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	t.Cleanup(func() { c.conn.Close(context.Background()) })
	return c
}

// run sends sql as one simple Query and collects what came back.
func (c *rtConn) run(ctx context.Context, sql string) outcome {
	c.mu.Lock()
	c.notices = nil
	c.mu.Unlock()
	results, err := c.conn.Exec(ctx, sql).ReadAll()
	var o outcome
	for _, r := range results {
		for _, row := range r.Rows {
			s := make([]string, len(row))
			for i, v := range row {
				s[i] = string(v)
			}
			o.rows = append(o.rows, s)
		}
		if r.Err != nil && err == nil {
			err = r.Err
		}
	}
	if err != nil {
		if pe, ok := err.(*pgconn.PgError); ok {
			o.err = pe
		} else {
			o.other = err
		}
	}
	c.mu.Lock()
	o.notices = append([]string(nil), c.notices...)
	c.mu.Unlock()
	if c.conn.TxStatus() != 'I' && !c.conn.IsClosed() {
		_, _ = c.conn.Exec(ctx, "ROLLBACK").ReadAll()
	}
	return o
}

// leaks returns the canary values found in out that the attacker did not
// type in sql themselves (an error echoing the attacker's own literal is
// not a leak).
func leaks(sql, out string) []string {
	var found []string
	for _, m := range canaryMarkers {
		if strings.Contains(strings.ToLower(out), strings.ToLower(m)) && !strings.Contains(strings.ToLower(sql), strings.ToLower(m)) {
			found = append(found, m)
		}
	}
	return found
}

// check applies an attempt's expectation to its outcome.
func (a attempt) check(o outcome) error {
	if l := leaks(a.sql, o.text()); len(l) > 0 {
		return fmt.Errorf("LEAK of canary %v in %q", l, o.text())
	}
	if o.other != nil {
		return fmt.Errorf("non-Postgres error %v", o.other)
	}
	switch a.want {
	case "any":
		if o.err == nil && len(o.rows) > 0 && !o.charged() && a.readsPrivate() {
			return fmt.Errorf("answered %d rows without a DP charge", len(o.rows))
		}
		return nil
	case "safe":
		if o.err != nil && o.err.Code == "58000" {
			return fmt.Errorf("failed upstream (%s): a data-dependent error", o.err.Message)
		}
		if o.err == nil && !o.charged() {
			return fmt.Errorf("answered without a DP cost notice: %v", o.notices)
		}
		return nil
	case "dp":
		if o.err != nil {
			return fmt.Errorf("refused with %s %s, want a DP answer", o.err.Code, o.err.Message)
		}
		if !o.charged() {
			return fmt.Errorf("answered without a DP cost notice: %v", o.notices)
		}
		return nil
	case "public":
		if o.err != nil {
			return fmt.Errorf("refused with %s %s, want a public answer", o.err.Code, o.err.Message)
		}
		if o.charged() {
			return fmt.Errorf("a public statement was charged: %v", o.notices)
		}
		return nil
	}
	if o.err == nil {
		return fmt.Errorf("answered (%d rows, notices %v), want refusal %s", len(o.rows), o.notices, a.want)
	}
	if o.err.Code != a.want {
		return fmt.Errorf("refused with %s (%s), want %s", o.err.Code, o.err.Message, a.want)
	}
	return nil
}

// readsPrivate is a coarse test used only to flag uncharged rows: whether
// the attempt names a private table.
func (a attempt) readsPrivate() bool {
	s := strings.ToLower(a.sql)
	return strings.Contains(s, "patients") || strings.Contains(s, "visits")
}

// plantedProxy creates name as a copy of demo, runs setup there as its
// owner (tables and planted rows; the reader role may then read every
// table), and starts a proxy over it whose policy adds extraTables. It
// returns the owner's connection, for upstream controls, the proxy, and
// carol's connection to it (carol may spend epsilon 1000).
func plantedProxy(t *testing.T, ctx context.Context, name, setup, extraTables string) (*pgx.Conn, *proxy, *pgx.Conn) {
	t.Helper()
	db := demoCopy(t, ctx, name)
	t.Cleanup(func() { db.Close(context.Background()) })
	if _, err := db.Exec(ctx, setup+"; GRANT SELECT ON ALL TABLES IN SCHEMA public TO "+demo.ReaderRole); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, proxyOptions{upstreamDSN: strings.Replace(pg.ReaderDSN(), "dbname=demo", "dbname="+name, 1),
		extraTables: extraTables, carolBudget: 1000})
	return db, p, p.connect(t, ctx, "carol", carolPassword, false)
}

// refusedOracles checks statements whose upstream failure depends on a
// planted row: through the proxy (conn) each is refused before any charge
// with 0A000 and a message containing refusal; directly upstream (db) each
// fails as written and runs once without(sql) keeps the planted row from
// reaching the failing expression, so the plant still exercises it.
func refusedOracles(t *testing.T, ctx context.Context, conn, db *pgx.Conn, leaky []string, refusal string, without func(string) string) {
	t.Helper()
	for _, sql := range leaky {
		if _, err := queryCount(ctx, conn, sql); sqlstate(err) != "0A000" || !strings.Contains(err.Error(), refusal) {
			t.Errorf("%s: %v; want 0A000 refused (%s)", sql, err, refusal)
		}
		if _, err := queryCount(ctx, db, sql); err == nil {
			t.Errorf("directly upstream, %s answered: the planted row no longer exercises it", sql)
		}
		if _, err := queryCount(ctx, db, without(sql)); err != nil {
			t.Errorf("directly upstream, %s failed without the planted row: %v", without(sql), err)
		}
	}
}
