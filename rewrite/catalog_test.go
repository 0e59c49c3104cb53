package rewrite

import (
	"os"
	"strings"
	"testing"

	"github.com/dpproxy/dpproxy/pgerror"
)

// TestCatalogAllowed: what psql's meta-commands and drivers' metadata calls
// send runs upstream as it is.
func TestCatalogAllowed(t *testing.T) {
	pol := demoPolicy(t)
	data, err := os.ReadFile("testdata/catalog_allowed.sql")
	if err != nil {
		t.Fatal(err)
	}
	extra := []string{
		"SELECT current_schemas(false)",
		"SELECT es.stxname FROM pg_catalog.pg_statistic_ext es WHERE pg_catalog.pg_statistics_obj_is_visible(es.oid)",
		"SELECT pg_catalog.getdatabaseencoding()",
		"SELECT 'patients'::regclass::oid",
		"select relname from pg_class c join pg_namespace n on n.oid=c.relnamespace where pg_catalog.pg_table_is_visible(c.oid) and relname='patients'",
		"SELECT t.oid, typarray FROM pg_type t JOIN pg_namespace ns ON typnamespace = ns.oid WHERE typname = 'hstore'",
		"SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = $1 ORDER BY ordinal_position",
		"SELECT * FROM information_schema.tables",
		"SELECT * FROM pg_attribute",
		"SELECT count(*) FROM pg_class",
		"WITH RECURSIVE t AS (SELECT oid, typbasetype FROM pg_type WHERE oid = $1 UNION ALL SELECT p.oid, p.typbasetype FROM pg_type p JOIN t ON p.oid = t.typbasetype) SELECT * FROM t",
		"SELECT n.nspname, c.relname FROM pg_namespace n, pg_class c WHERE c.relnamespace = n.oid AND (information_schema._pg_expandarray(ARRAY[1,2])).n = 1",
		"SELECT a.attname, row_number() OVER (PARTITION BY a.attrelid ORDER BY a.attnum) FROM pg_attribute a",
		"SELECT * FROM (SELECT c.relname, a.attname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid) c WHERE c.relname LIKE 'p%'",
		"SELECT relname FROM pg_class UNION SELECT nspname FROM pg_namespace ORDER BY 1 LIMIT 5",
	}
	for _, sql := range append(strings.Split(string(data), "\n----\n"), extra...) {
		sts, err := Classify(sql, pol)
		if err != nil {
			t.Errorf("refused: %v\n%s", err, sql)
			continue
		}
		if len(sts) != 1 || sts[0].Kind != KindPassthrough {
			t.Errorf("got %+v, want one passthrough statement\n%s", sts, sql)
		}
	}
}

// TestCatalogRefused: statistics, user tables and functions off the
// allowlist are refused, whatever the construct that hides them.
func TestCatalogRefused(t *testing.T) {
	pol := demoPolicy(t)
	tests := []struct {
		sql, id, names string
	}{
		{"SELECT * FROM pg_stats", "DP014", "pg_stats"},
		{"SELECT attname, null_frac FROM pg_catalog.pg_stats WHERE tablename = 'patients'", "DP014", "pg_stats"},
		{"SELECT * FROM pg_catalog.pg_statistic", "DP014", "pg_statistic"},
		{"SELECT relname, n_live_tup FROM pg_stat_user_tables", "DP014", "pg_stat_user_tables"},
		{"SELECT * FROM pg_statio_user_tables", "DP014", "pg_statio_user_tables"},
		{"SELECT relname, reltuples FROM pg_class", "DP014", "reltuples"},
		{"SELECT c.relpages FROM pg_catalog.pg_class c", "DP014", "relpages"},
		{"SELECT relname FROM pg_class WHERE relallvisible > 0", "DP014", "relallvisible"},
		{"SELECT datname, datfrozenxid FROM pg_database", "DP014", "datfrozenxid"},
		{"SELECT * FROM pg_class", "DP014", "*"},
		{"SELECT c.* FROM pg_class c", "DP014", "*"},
		{"SELECT x.* FROM (SELECT * FROM pg_catalog.pg_class) x", "DP014", "*"},
		{"SELECT c FROM pg_class c", "DP014", "c"},
		{"SELECT row_to_json(c) FROM pg_class c", "DP014", "c"},
		{"SELECT (SELECT c FROM pg_namespace n LIMIT 1) FROM pg_class c", "DP014", "c"},
		{"SELECT t.* FROM (pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace) AS t", "DP014", "*"},
		{"SELECT t FROM (pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace) AS t", "DP014", "t"},
		{"SELECT p FROM pg_catalog.pg_class AS c(a, b, c, d, e, f, g, h, i, p)", "DP014", "pg_catalog.pg_class"},
		{"SELECT j FROM (pg_class c JOIN pg_namespace n ON true) AS t(a, b, c, d, e, f, g, h, i, j)", "DP014", "join"},
		{"SELECT (SELECT c.* FROM pg_namespace n LIMIT 1) FROM pg_class c", "DP014", "*"},
		{"SELECT (c).reltuples FROM pg_class c", "DP014", ""},
		{"SELECT pg_relation_size('patients')", "DP014", "pg_relation_size"},
		{"SELECT pg_size_pretty(pg_total_relation_size('patients'))", "DP014", "pg_total_relation_size"},
		{"SELECT pg_total_relation_size(oid) FROM pg_class", "DP014", "pg_total_relation_size"},
		{"SELECT pg_catalog.pg_size_pretty(pg_catalog.pg_table_size(c.oid)) FROM pg_catalog.pg_class c", "DP014", "pg_table_size"},
		{"SELECT pg_stat_get_live_tuples(c.oid) FROM pg_class c", "DP014", "pg_stat_get_live_tuples"},
		{"SELECT last_value FROM pg_sequences", "DP014", "pg_sequences"},
		{"SELECT count(*) FROM pg_catalog.pg_locks", "DP014", "pg_locks"},
		{"SELECT * FROM pg_authid", "DP014", "pg_authid"},
		{"SELECT * FROM information_schema.user_mapping_options", "DP014", "user_mapping_options"},
		{"SELECT relname FROM pg_class WHERE EXISTS (SELECT 1 FROM patients)", "DP003", "patients"},
		{"SELECT relname FROM pg_class, patients", "DP003", "patients"},
		{"SELECT count(*) FROM patients UNION SELECT count(*) FROM pg_class", "DP003", "patients"},
		{"SELECT relname FROM pg_class c JOIN LATERAL (SELECT age FROM public.patients) p ON true", "DP003", "patients"},
		// A CTE named like a table shadows it only in its own scope.
		{"SELECT (WITH patients AS (SELECT 1) SELECT 1), (SELECT count(*) FROM patients) FROM pg_class", "DP003", "patients"},
		{"WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT relname FROM a, pg_class", "DP003", "b"},
		{"SELECT relname FROM public.pg_class", "DP014", "public.pg_class"},
		{"SELECT pg_sleep(1) FROM pg_class", "DP012", "pg_sleep"},
		{"SELECT query_to_xml('select * from patients', true, true, '') FROM pg_class", "DP012", "query_to_xml"},
		{"SELECT relname FROM pg_class WHERE relname = pg_read_file('/etc/passwd')", "DP012", "pg_read_file"},
		{"SELECT currval('s') FROM pg_class", "DP014", "currval"},
		{"SELECT relname FROM pg_class FOR UPDATE", "DP002", ""},
		{"SELECT relname INTO t FROM pg_class", "DP002", ""},
		{"SELECT relname FROM pg_class WHERE relname OPERATOR(public.=) 'x'", "DP012", "public.="},
	}
	for _, tt := range tests {
		_, err := Classify(tt.sql, pol)
		if err == nil {
			t.Errorf("allowed, want %s: %s", tt.id, tt.sql)
			continue
		}
		pe := pgerror.As(err)
		if pe.ID != tt.id || !strings.Contains(pe.Message, tt.names) {
			t.Errorf("%s: got %s %q, want %s naming %q", tt.sql, pe.ID, pe.Message, tt.id, tt.names)
		}
	}
}
