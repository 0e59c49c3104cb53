package integration

import (
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestZZRTEncodeRace(t *testing.T) {
	binary = "/tmp/rtcache_zz/dpproxy-race"
	ctx := testContext(t)
	queries := []string{
		"SELECT avg(age) FROM patients",
		"SELECT date_trunc('month', visit_date) AS m, count(*) FROM patients GROUP BY 1",
		"SELECT visit_date, count(*) FROM visits GROUP BY visit_date",
		"SELECT round(avg(income), 1) FROM patients",
	}
	for iter := 0; iter < 3; iter++ {
		p := startProxy(t, proxyOptions{carolBudget: 1000})
		var conns []*pgx.Conn
		for i := 0; i < 6; i++ {
			conns = append(conns, p.connect(t, ctx, "carol", carolPassword, false))
		}
		for _, q := range queries {
			// prepare on every connection first (Describe), so the barrier releases Bind/Execute only
			for _, c := range conns {
				if _, err := c.Prepare(ctx, "q", q); err != nil {
					t.Logf("prepare %s: %v", q, err)
				}
			}
			var start, wg sync.WaitGroup
			start.Add(1)
			for _, c := range conns {
				wg.Add(1)
				go func(c *pgx.Conn) {
					defer wg.Done()
					start.Wait()
					rows, err := c.Query(ctx, "q")
					if err == nil {
						for rows.Next() {
						}
						err = rows.Err()
						rows.Close()
					}
					if err != nil {
						t.Logf("%s: %v", q, err)
					}
				}(c)
			}
			start.Done()
			wg.Wait()
			for _, c := range conns {
				c.Deallocate(ctx, "q")
			}
		}
		for _, c := range conns {
			c.Close(ctx)
		}
		p.stop(t)
		logs := p.logs.String()
		if i := strings.Index(logs, "WARNING: DATA RACE"); i >= 0 {
			t.Logf("iteration %d: DATA RACE:\n%s", iter, logs[i:min(len(logs), i+6000)])
			return
		}
		t.Logf("iteration %d: no race reported", iter)
	}
}
