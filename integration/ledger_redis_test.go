package integration

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/dpproxy/dpproxy/internal/testenv"
)

// TestLedgerRedisServe: dpproxy serving with a Redis ledger charges DP
// queries in Redis; once Redis is gone, DP queries are refused with DP007
// (SQLSTATE 58000) and no rows.
func TestLedgerRedisServe(t *testing.T) {
	ctx := testContext(t)
	raddr := testenv.StartRedis(t)
	rc := redis.NewClient(&redis.Options{Addr: raddr})
	t.Cleanup(func() { rc.Close() })

	addr := freeAddr(t)
	p := startLedgerProxy(t, addr, redisLedgerPolicy(t, addr, 0, raddr))
	conn := p.connect(t, ctx, "alice", alicePassword, false)
	if _, err := queryCount(ctx, conn, countQuery); err != nil {
		t.Fatal(err)
	}
	acct, err := rc.HGetAll(ctx, "dpledger:{alice}:acct").Result()
	if err != nil {
		t.Fatal(err)
	}
	spent, _ := strconv.ParseInt(acct["spent_eps"], 10, 64)
	if spent != 500_000_000 || acct["queries"] != "1" { // default epsilon 0.5, in 1e-9 units
		t.Fatalf("alice's Redis account after one query: %v", acct)
	}
	entries, err := rc.XRange(ctx, "dpledger:{alice}:log", "-", "+").Result()
	if err != nil || len(entries) != 1 {
		t.Fatalf("audit stream: %v, %v", entries, err)
	}
	var body struct{ Statement string }
	raw, _ := entries[0].Values["body"].(string)
	if err := json.Unmarshal([]byte(raw), &body); err != nil || body.Statement != countQuery {
		t.Fatalf("audit entry body %q lacks the statement (%v)", raw, err)
	}

	// Redis goes away: fail closed with DP007.
	_ = rc.ShutdownNoSave(ctx).Err()
	rows, err := conn.Query(ctx, countQuery)
	n := 0
	if err == nil {
		for rows.Next() {
			n++
		}
		err = rows.Err()
		rows.Close()
	}
	if got := sqlstate(err); got != "58000" || n != 0 {
		t.Fatalf("with Redis down: %d rows, error %v (SQLSTATE %q), want no rows and 58000", n, err, got)
	}
	if !strings.Contains(err.Error(), "ledger") {
		t.Fatalf("error %v does not mention the ledger", err)
	}
}

// TestLedgerRedisVolatileRefused: dpproxy refuses to start on a Redis
// without persistence unless the policy allows it.
func TestLedgerRedisVolatileRefused(t *testing.T) {
	raddr := testenv.StartRedis(t, "--appendonly", "no")
	addr := freeAddr(t)
	text := redisLedgerPolicy(t, addr, 0, raddr)
	out, err := runBinary(t, text)
	if err == nil || !strings.Contains(out, "volatile") {
		t.Fatalf("dpproxy started on a volatile Redis: %v\n%s", err, out)
	}
	allowed := strings.Replace(text, "  redis:\n", "  redis:\n    allow_volatile: true\n", 1)
	p := startLedgerProxy(t, addr, allowed)
	if !strings.Contains(p.logs.String(), "allow_volatile") {
		t.Fatalf("allow_volatile not logged:\n%s", p.logs.String())
	}
}
