package integration

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
)

// The client matrix: every client dpproxy claims to support, unchanged,
// against one proxy. Each gets noisy answers within tolerance and refusals
// where due. The clients are Debian packages installed by scripts/lib.sh
// (ensure_packages), except node-postgres, which `npm ci` installs from
// integration/clients/node/package-lock.json into a temporary directory.
//
// Tolerance. Noisy counts are asked at epsilon 1 (`SET dp.epsilon = 1`),
// discrete Laplace with scale 1: P(|noise| >= 20) = 2e^{-20}/(1+e^{-1})
// < 3.1e-9. At the default epsilon 0.5 (scale 2), P(|noise| >= 36) =
// 2e^{-18}/(1+e^{-0.5}) < 1.2e-8. The matrix checks fewer than 80 noisy
// answers, so it fails falsely with probability < 80 × 1.2e-8 < 1e-6.
const (
	tolEps1   = 19 // |noisy - exact| at epsilon 1
	tolEps05  = 35 // at epsilon 0.5
	countSQL  = "SELECT count(*) FROM patients WHERE age > 40"
	danaLimit = 10000
)

// clientProxy is the proxy the matrix talks to, with dana's large budget.
func clientProxy(t *testing.T) *proxy {
	return startProxy(t, proxyOptions{danaBudget: danaLimit})
}

func within(t *testing.T, what string, got, want, tol int64) {
	t.Helper()
	if d := got - want; d > tol || d < -tol {
		t.Errorf("%s: noisy %d is %d away from the exact %d (tolerance %d)", what, got, d, want, tol)
	}
}

// needTool skips when a client is missing outside CI; in CI (CI=true) the
// scripts install every client, so a missing one fails.
func needTool(t *testing.T, path string) string {
	t.Helper()
	p, err := exec.LookPath(path)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed; scripts/lib.sh ensure_packages should install it", path)
		}
		t.Skipf("%s is not installed (scripts/lib.sh ensure_packages installs it)", path)
	}
	return p
}

// keyValues parses the `key=value` lines the helper programs print.
func keyValues(out string) map[string][]string {
	kv := map[string][]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
			kv[k] = append(kv[k], v)
		}
	}
	return kv
}

func mustInt(t *testing.T, what, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		t.Fatalf("%s: %q is not a number", what, s)
	}
	return n
}

func runClient(t *testing.T, ctx context.Context, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestClientMatrix(t *testing.T) {
	ctx := testContext(t)
	p := clientProxy(t)
	want := exact(t, ctx, countSQL)
	wantF := exact(t, ctx, "SELECT count(*) FROM patients WHERE age > 40 AND sex = 'F'")
	host, port, _ := net.SplitHostPort(p.addr)

	t.Run("psql", func(t *testing.T) {
		needTool(t, "psql")
		psql := func(cmds ...string) (string, error) {
			args := []string{"-X", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose", "-h", host, "-p", port, "-U", "dana", "-d", "demo"}
			for _, c := range cmds {
				args = append(args, "-c", c)
			}
			cmd := exec.CommandContext(ctx, "psql", args...)
			cmd.Env = append(os.Environ(), "PGPASSWORD="+danaPassword, "PGSSLMODE=disable")
			out, err := cmd.CombinedOutput()
			return string(out), err
		}
		for _, c := range []struct{ cmd, want string }{
			{`\dt`, "patients"},
			{`\d`, "patients"},
			{`\d patients`, `"patients_pkey" PRIMARY KEY, btree (patient_id)`},
			{`\d+ patients`, "Storage"},
			{`\l`, "demo"},
			{`\dn`, "public"},
			{`\du`, "Role name"},
			{`\di`, "patients_pkey"},
			{`\df`, "List of functions"},
			{`\dT`, "List of data types"},
			{`SELECT current_schema(), version()`, "public"},
			{`SHOW transaction isolation level`, "read committed"},
			// ODBC's connection batch, as one Query message.
			{`SET DateStyle = 'ISO';SET extra_float_digits = 2;show transaction_isolation`, "read committed"},
		} {
			out, err := psql(c.cmd)
			if err != nil || !strings.Contains(out, c.want) {
				t.Errorf("psql %s (err %v): want %q in\n%s", c.cmd, err, c.want, out)
			}
		}
		// Every other describe command answers (those that list sizes aside).
		for _, c := range []string{`\dg`, `\df+`, `\dT+`, `\dv`, `\dm`, `\ds`, `\dx`, `\dx+`, `\dp`, `\z`, `\dD`, `\dc`, `\dC`,
			`\do`, `\dF`, `\dFd`, `\dFp`, `\dFt`, `\dL`, `\dRp`, `\des`, `\dew`, `\det`, `\dy`, `\da`, `\dA`, `\dAc`,
			`\db`, `\ddp`, `\dd`, `\dE`, `\dO`, `\dP`, `\dX`, `\dconfig`, `\drds`, `\dn+`} {
			if out, err := psql(c); err != nil || strings.Contains(out, "ERROR") {
				t.Errorf("psql %s (err %v):\n%s", c, err, out)
			}
		}
		// Sizes are statistics: refused, naming the function.
		for _, c := range []struct{ cmd, fn string }{
			{`\dt+`, "pg_table_size"}, {`\d+`, "pg_table_size"}, {`\di+`, "pg_table_size"},
			{`\l+`, "pg_database_size"}, {`\db+`, "pg_tablespace_size"}, {`\dP+`, "pg_table_size"},
		} {
			if out, err := psql(c.cmd); err == nil || !strings.Contains(out, "DP014") || !strings.Contains(out, c.fn) {
				t.Errorf("psql %s (err %v): want DP014 naming %s:\n%s", c.cmd, err, c.fn, out)
			}
		}
		out, err := psql("SET dp.epsilon = 1; SELECT count(*) FROM patients WHERE age > 40")
		if err != nil {
			t.Fatalf("psql count: %v\n%s", err, out)
		}
		m := regexp.MustCompile(`(?m)^\s+(\d+)\s*$`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no count in psql output:\n%s", out)
		}
		within(t, "psql", mustInt(t, "psql count", m[1]), want, tolEps1)
	})

	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe, pgx.QueryExecModeDescribeExec, pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
		t.Run("pgx/"+mode.String(), func(t *testing.T) {
			cfg, err := pgx.ParseConfig(p.dsn("dana", danaPassword))
			if err != nil {
				t.Fatal(err)
			}
			cfg.DefaultQueryExecMode = mode
			conn, err := pgx.ConnectConfig(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			if _, err := conn.Exec(ctx, "SET dp.epsilon = 1"); err != nil {
				t.Fatal(err)
			}
			if mode == pgx.QueryExecModeCacheStatement {
				// pgx's type loading reads pg_type with a recursive CTE.
				if _, err := conn.LoadTypes(ctx, []string{"text[]", "int4", "_date"}); err != nil {
					t.Errorf("LoadTypes: %v", err)
				}
			}
			for i := range 3 { // the statement cache serves the 2nd and 3rd
				rows, err := conn.Query(ctx, countSQL)
				if err != nil {
					t.Fatal(err)
				}
				var got int64
				for rows.Next() {
					if err := rows.Scan(&got); err != nil {
						t.Fatal(err)
					}
				}
				if err := rows.Err(); err != nil {
					t.Fatalf("query %d: %v", i, err)
				}
				if fd := rows.FieldDescriptions(); len(fd) != 1 || fd[0].DataTypeOID != 20 || fd[0].TableOID != 0 {
					t.Errorf("RowDescription %+v, want one int8 column with table OID 0", fd)
				}
				within(t, "pgx "+mode.String(), got, want, tolEps1)
			}
			var got int64
			if err := conn.QueryRow(ctx, "SELECT count(*) FROM patients WHERE age > $1 AND sex = $2", 40, "F").Scan(&got); err != nil {
				t.Fatalf("parameterised count: %v", err)
			}
			within(t, "pgx parameterised "+mode.String(), got, wantF, tolEps1)
			var tables []string
			rows, err := conn.Query(ctx, "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", "public")
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var s string
				_ = rows.Scan(&s)
				tables = append(tables, s)
			}
			if err := rows.Err(); err != nil || !slices.Contains(tables, "patients") {
				t.Errorf("information_schema.tables: %v %v", tables, err)
			}
			_, err = conn.Exec(ctx, "SELECT * FROM patients")
			var pge *pgconn.PgError
			if !errors.As(err, &pge) || pge.Code != "42501" {
				t.Errorf("SELECT *: got %v, want 42501", err)
			}
		})
	}

	t.Run("database/sql", func(t *testing.T) {
		db, err := sql.Open("pgx", p.dsn("dana", danaPassword))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		db.SetMaxOpenConns(1) // SET dp.epsilon is per session
		if _, err := db.ExecContext(ctx, "SET dp.epsilon = 1"); err != nil {
			t.Fatal(err)
		}
		stmt, err := db.PrepareContext(ctx, "SELECT count(*) FROM patients WHERE age > $1")
		if err != nil {
			t.Fatal(err)
		}
		defer stmt.Close()
		for range 2 {
			var got int64
			if err := stmt.QueryRowContext(ctx, 40).Scan(&got); err != nil {
				t.Fatal(err)
			}
			within(t, "database/sql prepared", got, want, tolEps1)
		}
		tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		var got int64
		if err := tx.QueryRowContext(ctx, countSQL).Scan(&got); err != nil {
			t.Fatal(err)
		}
		within(t, "database/sql in a transaction", got, want, tolEps1)
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		_, err = db.QueryContext(ctx, "SELECT age FROM patients")
		var pge *pgconn.PgError
		if !errors.As(err, &pge) || pge.Code != "42501" {
			t.Errorf("SELECT age: got %v, want 42501", err)
		}
	})

	t.Run("jdbc", func(t *testing.T) {
		javac := needTool(t, "javac")
		jar := "/usr/share/java/postgresql.jar"
		if _, err := os.Stat(jar); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s missing: install libpostgresql-jdbc-java", jar)
			}
			t.Skip("libpostgresql-jdbc-java is not installed")
		}
		dir := t.TempDir()
		src, _ := filepath.Abs("clients/java/ClientCheck.java")
		runClient(t, ctx, dir, javac, "-d", dir, src)
		url := fmt.Sprintf("jdbc:postgresql://%s:%s/demo?sslmode=disable", host, port)
		out := runClient(t, ctx, dir, "java", "-cp", jar+":"+dir, "ClientCheck", url, "dana", danaPassword)
		kv := keyValues(out)
		check := func(k, v string) {
			if got := strings.Join(kv[k], ";"); got != v {
				t.Errorf("jdbc %s = %q, want %q\n%s", k, got, v, out)
			}
		}
		if !slices.Contains(strings.Split(strings.Join(kv["tables"], ""), ","), "patients") {
			t.Errorf("jdbc getTables: %v", kv["tables"])
		}
		check("columns", "patient_id:int4,age:int4,sex:text,zip:text,diagnosis:text,income:int4,visit_date:date")
		check("pkey", "patient_id")
		check("fetched_columns", "patient_id,age,sex,zip,diagnosis,income,visit_date")
		check("count_type", "int8")
		check("current_schema", "public")
		check("refusal", "42501")
		for _, k := range []string{"count", "prepared_count", "param_count", "tx_count"} {
			if len(kv[k]) == 0 {
				t.Errorf("jdbc printed no %s:\n%s", k, out)
			}
			for _, v := range kv[k] {
				within(t, "jdbc "+k, mustInt(t, k, v), want, tolEps1)
			}
		}
		if len(kv["prepared_count"]) != 6 {
			t.Errorf("jdbc prepared_count: %v", kv["prepared_count"])
		}
	})

	t.Run("python", func(t *testing.T) {
		py := "/usr/bin/python3"
		if err := exec.CommandContext(ctx, py, "-c", "import psycopg2, sqlalchemy, pandas").Run(); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("python3-psycopg2, python3-sqlalchemy or python3-pandas missing: %v", err)
			}
			t.Skip("python3-psycopg2, python3-sqlalchemy or python3-pandas missing")
		}
		out := runClient(t, ctx, "clients/python", py, "client_check.py", host, port, "dana", danaPassword)
		kv := keyValues(out)
		check := func(k, v string) {
			if got := strings.Join(kv[k], ";"); got != v {
				t.Errorf("python %s = %q, want %q\n%s", k, got, v, out)
			}
		}
		check("psycopg2_refusal", "42501")
		if !slices.Contains(strings.Split(strings.Join(kv["sa_tables"], ""), ","), "patients") {
			t.Errorf("SQLAlchemy get_table_names: %v", kv["sa_tables"])
		}
		check("sa_columns", "patient_id:INTEGER,age:INTEGER,sex:TEXT,zip:TEXT,diagnosis:TEXT,income:INTEGER,visit_date:DATE")
		check("sa_pkey", "patient_id")
		check("sa_has_table", "True")
		check("pandas_columns", "count")
		check("pandas_refusal", "42501")
		for _, k := range []string{"psycopg2_count", "sa_core_count", "pandas_count"} {
			if len(kv[k]) != 1 {
				t.Fatalf("python printed no %s:\n%s", k, out)
			}
			within(t, "python "+k, mustInt(t, k, kv[k][0]), want, tolEps1)
		}
		if len(kv["psycopg2_param_count"]) != 1 {
			t.Fatalf("python printed no psycopg2_param_count:\n%s", out)
		}
		within(t, "psycopg2 parameterised", mustInt(t, "param", kv["psycopg2_param_count"][0]), wantF, tolEps1)
		if n := strings.Join(kv["notice"], ""); !strings.Contains(n, "dp: spent epsilon 1") {
			t.Errorf("psycopg2 notice %q", n)
		}
	})

	t.Run("node-postgres", func(t *testing.T) {
		needTool(t, "node")
		npm := needTool(t, "npm")
		dir := t.TempDir()
		for _, f := range []string{"package.json", "package-lock.json", "client_check.js"} {
			b, err := os.ReadFile(filepath.Join("clients/node", f))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		npmCtx, cancel := context.WithTimeout(ctx, 90*time.Second)
		defer cancel()
		// A cache of its own, so npm does not depend on $HOME in CI.
		t.Setenv("npm_config_cache", filepath.Join(os.TempDir(), "dpproxy-npm-cache"))
		t.Setenv("npm_config_update_notifier", "false")
		runClient(t, npmCtx, dir, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
		out := runClient(t, ctx, dir, "node", "client_check.js", host, port, "dana", danaPassword)
		kv := keyValues(out)
		check := func(k, v string) {
			if got := strings.Join(kv[k], ";"); got != v {
				t.Errorf("node %s = %q, want %q\n%s", k, got, v, out)
			}
		}
		check("count_type", "20")
		check("columns", "patient_id,age,sex,zip,diagnosis,income,visit_date")
		check("refusal", "42501")
		check("after_refusal", "1")
		for _, k := range []string{"simple_count", "named_count", "param_count"} {
			if len(kv[k]) == 0 {
				t.Errorf("node printed no %s:\n%s", k, out)
			}
			for _, v := range kv[k] {
				within(t, "node "+k, mustInt(t, k, v), want, tolEps1)
			}
		}
		if n := strings.Join(kv["notice"], ""); !strings.Contains(n, "dp: spent epsilon 1") {
			t.Errorf("node notice %q", n)
		}
	})

	t.Run("pgbench", func(t *testing.T) {
		pgbench := needTool(t, "pgbench")
		script := filepath.Join(t.TempDir(), "dp_count.sql")
		if err := os.WriteFile(script, []byte(countSQL+";\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		conn := p.connect(t, ctx, "dana", danaPassword, false)
		for _, mode := range []string{"simple", "extended", "prepared"} {
			before := spent(t, ctx, conn)
			cmd := exec.CommandContext(ctx, pgbench, "-n", "-t", "20", "-M", mode, "-f", script, "-h", host, "-p", port, "-U", "dana", "demo")
			cmd.Env = append(os.Environ(), "PGPASSWORD="+danaPassword, "PGSSLMODE=disable")
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "number of transactions actually processed: 20/20") {
				t.Errorf("pgbench -M %s: %v\n%s", mode, err, out)
				continue
			}
			// Each of the 20 executions is charged once at the default 0.5,
			// and nothing else (Parse and Describe are free).
			if d := spent(t, ctx, conn) - before; d < 9.999 || d > 10.001 {
				t.Errorf("pgbench -M %s spent epsilon %g, want 20 × 0.5 = 10", mode, d)
			}
		}
	})
}

// spent reads SHOW dp.budget ("<left> of <budget> left") and returns what
// was spent.
func spent(t *testing.T, ctx context.Context, conn *pgx.Conn) float64 {
	t.Helper()
	var s string
	if err := conn.QueryRow(ctx, "SHOW dp.budget").Scan(&s); err != nil {
		t.Fatal(err)
	}
	var left, budget float64
	if _, err := fmt.Sscanf(s, "%g of %g left", &left, &budget); err != nil {
		t.Fatalf("SHOW dp.budget = %q: %v", s, err)
	}
	return budget - left
}
