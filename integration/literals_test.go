package integration

import (
	"os"
	"strings"
	"testing"
)

// TestInvalidLiterals checks rewrite/testdata/literals.tsv, the quoted
// constants dpproxy judges before PostgreSQL reads them, against a real
// server: each line's verdict is PostgreSQL's own, and through the proxy a
// comparison with a column of the type is refused before the charge
// (22P02, DP023) exactly when the line says PostgreSQL fails and dpproxy
// does not leave the form to it; a constant PostgreSQL accepts is
// answered. So is the same value bound to a parameter.
func TestInvalidLiterals(t *testing.T) {
	ctx := testContext(t)
	columns := map[string]string{
		"integer": "i", "smallint": "s", "bigint": "b", "numeric": "n", "double precision": "d", "real": "r",
		"boolean": "flag", "date": "day", "timestamp": "ts", "timestamptz": "tz", "text": "txt",
	}
	var decls []string
	var policyCols strings.Builder
	for typ, col := range columns {
		decls = append(decls, col+" "+typ)
		policyCols.WriteString("      - {name: " + col + ", type: " + typ + "}\n")
	}
	owner, _, conn := plantedProxy(t, ctx, "literals", "CREATE TABLE lits (uid integer, "+strings.Join(decls, ", ")+
		"); INSERT INTO lits (uid) SELECT generate_series(1, 10)",
		"  - name: lits\n    privacy: unit\n    unit: uid\n    max_rows_per_unit: 1\n    columns:\n      - {name: uid, type: integer}\n"+policyCols.String())
	if _, err := conn.Exec(ctx, "SET dp.epsilon = 0.01"); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("../rewrite/testdata/literals.tsv")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, line := range strings.Split(string(data), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, "\t")
		typ, lit, fails, pass := f[0], strings.Trim(f[1], "|"), f[2] == "true", f[3] == "true"
		quoted := "'" + strings.ReplaceAll(lit, "'", "''") + "'"
		var ignored any
		_, upErr := owner.Exec(ctx, "SELECT "+quoted+"::"+typ)
		if (upErr != nil) != fails && !pass { // pass: forms newer servers may read
			t.Errorf("%s as %s: PostgreSQL says %v, the list says fails=%v", quoted, typ, upErr, fails)
		}
		err := conn.QueryRow(ctx, "SELECT count(*) FROM lits WHERE "+columns[typ]+" = "+quoted).Scan(&ignored)
		switch refused := sqlstate(err) == "22P02"; {
		case refused != (fails && !pass):
			t.Errorf("%s as %s: through dpproxy %v; want refused as invalid %v", quoted, typ, err, fails && !pass)
		case !fails && err != nil:
			t.Errorf("%s as %s: PostgreSQL reads it, but through dpproxy: %v", quoted, typ, err)
		}
		// The same value bound to a parameter: PostgreSQL reads it with the
		// same input function, when binding, after the charge.
		res := conn.PgConn().ExecParams(ctx, "SELECT count(*) FROM lits WHERE "+columns[typ]+" = $1", [][]byte{[]byte(lit)}, nil, nil, nil).Read()
		switch refused := sqlstate(res.Err) == "22P02"; {
		case refused != (fails && !pass):
			t.Errorf("$1 = %s as %s: through dpproxy %v; want refused as invalid %v", quoted, typ, res.Err, fails && !pass)
		case !fails && res.Err != nil:
			t.Errorf("$1 = %s as %s: PostgreSQL reads it, but through dpproxy: %v", quoted, typ, res.Err)
		}
		checked++
	}
	// JDBC's setDouble(2.0) and setBigDecimal(2.00) on an integer column:
	// the value is whole, so it is passed on as 2 and answered.
	for _, v := range []struct {
		text string
		oid  uint32
	}{{"2.0", 701}, {"2.00", 1700}} {
		res := conn.PgConn().ExecParams(ctx, "SELECT count(*) FROM lits WHERE i >= $1", [][]byte{[]byte(v.text)}, []uint32{v.oid}, nil, nil).Read()
		if res.Err != nil || len(res.Rows) != 1 {
			t.Errorf("%s (oid %d) for an integer column: %v; want an answer", v.text, v.oid, res.Err)
		}
	}
	if checked < 60 {
		t.Fatalf("checked %d literals; the list has more", checked)
	}
}
