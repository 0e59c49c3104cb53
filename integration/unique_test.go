package integration

import (
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dpproxy/dpproxy/demo"
)

// membersTable is a privacy-unit table whose unit is its primary key.
const membersTable = `  - name: members
    privacy: unit
    unit: member_id
    max_rows_per_unit: 10
    max_groups_per_unit: 2
    columns:
      - {name: member_id, type: integer}
      - {name: plan, type: text, domain: [basic, plus]}
`

var countHalfWidth = regexp.MustCompile(`count ±(\d+) at 95%`)

// TestUniqueUnitSkipsBounding: a privacy-unit table whose unit column is
// the primary key upstream is answered row-level, with the noise of one
// row per unit rather than max_rows_per_unit. When the key stops proving
// one row per unit (dropped, or an inheritance child the parent's key does
// not cover), the next statement's guard sees it in the query's own
// snapshot, discards the answer with DP008, and the statements after it
// are bounded per unit again.
func TestUniqueUnitSkipsBounding(t *testing.T) {
	for _, tc := range []struct{ name, breaker string }{
		{"primary key dropped", "ALTER TABLE members DROP CONSTRAINT members_pkey"},
		{"inheritance child", "CREATE TABLE members_old () INHERITS (members); INSERT INTO members_old VALUES (1, 'basic'), (1, 'plus'); GRANT SELECT ON members_old TO " + demo.ReaderRole},
	} {
		t.Run(tc.name, func(t *testing.T) { testUniqueUnit(t, tc.breaker) })
	}
}

func testUniqueUnit(t *testing.T, breaker string) {
	ctx := testContext(t)
	db := demoCopy(t, ctx, "unique_units")
	defer db.Close(ctx)
	if _, err := db.Exec(ctx, `CREATE TABLE members (member_id integer PRIMARY KEY, plan text NOT NULL);
		INSERT INTO members SELECT g, CASE WHEN g % 3 = 0 THEN 'plus' ELSE 'basic' END FROM generate_series(1, 3000) g;
		GRANT SELECT ON members TO `+demo.ReaderRole); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, proxyOptions{upstreamDSN: strings.Replace(pg.ReaderDSN(), "dbname=demo", "dbname=unique_units", 1), extraTables: membersTable, danaBudget: 100})
	conn, log := p.connectWithNotices(t, ctx, "dana", danaPassword, false)

	halfWidth := func(sql string) (int, error) {
		var n int64
		if err := conn.QueryRow(ctx, sql).Scan(&n); err != nil {
			return 0, err
		}
		notices := log.all()
		m := countHalfWidth.FindStringSubmatch(notices[len(notices)-1])
		if m == nil {
			t.Fatalf("no count accuracy in %q", notices[len(notices)-1])
		}
		if n < 2000 || n > 4000 {
			t.Errorf("%s = %d, want about 3000", sql, n)
		}
		return strconv.Atoi(m[1])
	}
	// One prepared statement throughout: after the key stops holding, it
	// must be planned again (wire replans on the catalog change) rather
	// than fail its guard on every Execute.
	if _, err := conn.Prepare(ctx, "members_count", "SELECT count(*) FROM members"); err != nil {
		t.Fatal(err)
	}
	// ε 0.5 on sensitivity 1: about ±6; on 10 (bounded): about ±60.
	unique, err := halfWidth("members_count")
	if err != nil {
		t.Fatal(err)
	}
	if unique > 15 {
		t.Errorf("count over a unique unit: ±%d, want the noise of one row (about ±6)", unique)
	}

	if _, err := db.Exec(ctx, breaker); err != nil {
		t.Fatal(err)
	}
	_, err = halfWidth("members_count")
	var pge *pgconn.PgError
	if !errors.As(err, &pge) || pge.Code != "58000" || !regexp.MustCompile(`unique index on public\.members\(member_id\).*no longer holds upstream`).MatchString(pge.Message) {
		t.Fatalf("first statement after %q: %v, want DP008 saying the unique index no longer holds", breaker, err)
	}
	bounded, err := halfWidth("members_count")
	if err != nil {
		t.Fatal(err)
	}
	if bounded < 40 {
		t.Errorf("count after %q: ±%d, want per-unit bounding (about ±60)", breaker, bounded)
	}
}
