package main

import (
	"io"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dpproxy/dpproxy/ledger"
	"github.com/dpproxy/dpproxy/policy"
)

// openCache opens the answer cache beside the ledger: a bolt file next to
// the ledger file (never the ledger itself, which holds no results), or the
// same Redis, shared by every proxy node. A zero cache window disables it.
func openCache(pol *policy.Policy, log *slog.Logger) (ledger.AnswerCache, io.Closer, error) {
	if pol.Defaults.CacheWindow <= 0 {
		return nil, nil, nil
	}
	switch pol.Ledger.Backend {
	case "bolt":
		c, err := ledger.OpenBoltCache(pol.Ledger.Path+".answers", ledger.BoltCacheOptions{})
		if err != nil {
			return nil, nil, err
		}
		log.Info("answer cache: bolt", "path", pol.Ledger.Path+".answers", "window", pol.Defaults.CacheWindow)
		return c, c, nil
	case "redis":
		rc := pol.Ledger.Redis
		client := redis.NewUniversalClient(&redis.UniversalOptions{
			Addrs: rc.Addrs, MasterName: rc.MasterName, Username: rc.Username, Password: rc.Password,
			ContextTimeoutEnabled: true, DialTimeout: 2 * time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second,
		})
		c, err := ledger.NewRedisCache(client, "")
		if err != nil {
			client.Close()
			return nil, nil, err
		}
		log.Info("answer cache: redis", "window", pol.Defaults.CacheWindow)
		return c, client, nil
	}
	return nil, nil, nil
}
